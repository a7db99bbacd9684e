"""Per-block sparsity from measured sensitivity (``prune(allocation=measured)``).

Layer-wise solvers (SparseGPT, OBC) give every block the same share of zeros, yet blocks differ in how much
their pruning changes the model's answers: on the embedded default at 50%, pruning block 0 alone changed 36
validation answers and block 1 alone 21. This module measures each block's cost on train-split text and
gives the sensitive blocks fewer zeros and the robust ones more, the overall share unchanged.

1. The unchanged model's layer Hessians come from the first ``CALIBRATION_TEXTS`` train texts (the pass the
   solvers use).
2. Each block alone is pruned with SparseGPT (no refit: a fast proxy for the chosen solver) at each level of a
   ladder around the target, and scored by the mean KL divergence of the model's answers from the unchanged
   model's on the *next* ``SCORE_TEXTS`` train texts (not those the Hessians came from, so a level is not
   rewarded for fitting its own calibration text). A level's cost is at least the cost of every lower level (a
   dip is noise). The block's weights are then restored.
3. A Lagrange multiplier trades the summed KL against the zeros: each block takes the level minimising
   KL − λ·(its weights)·level (λ: what a zero is worth), λ bisected until the share of zeros is closest to the
   target; then every level is shifted by one constant so that the share is met exactly.

A family that shares one block's weights across depth (ALBERT) has no blocks to trade between: it stays uniform.

Only the train split is read. The cost is one calibration pass, blocks x ladder SparseGPT prunes of one block and
as many scoring passes: about a minute for 6 layers of 384 on 2 cores.
"""
from __future__ import annotations

import torch

from ..families import family
from ..layerwise import by_block, layer_index
from .hessian import CALIBRATION_TEXTS, layer_hessians
from .sparsegpt import sparsegpt_layer

SCORE_TEXTS = 256  # train texts after the calibration ones, scored for each (block, level)
LADDER = (-0.3, -0.2, -0.1, 0.0, 0.1, 0.2)  # levels tried per block, as offsets from the target sparsity
TOP = 0.95  # no block is made sparser than this


def _answers(model, workload, texts: list[str]) -> torch.Tensor:
    """Log-probabilities of the model's answers on ``texts`` (eval mode, batches of 32)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), 32):
            workload.cancel.check()
            out.append(model(**workload.encode(texts[i:i + 32])).logits.double().log_softmax(-1))
    return torch.cat(out)


def _kl(base: torch.Tensor, new: torch.Tensor) -> float:
    return float((base.exp() * (base - new)).sum(-1).mean())


def block_costs(model, layers: list[tuple[str, torch.nn.Linear]], workload, sparsity: float,
                progress=None) -> tuple[dict[int, dict[float, float]], dict[int, int]]:
    """Per block index: {level: mean KL when that block alone is pruned to it}, and its weight count."""
    blocks = by_block(model, layers)
    texts = workload.train["text"].tolist()
    score = texts[CALIBRATION_TEXTS:CALIBRATION_TEXTS + SCORE_TEXTS] or texts[:SCORE_TEXTS]
    hessians = layer_hessians(model, [l for group in blocks.values() for l in group], workload,
                              stop_early=not family(model).shared)
    base = _answers(model, workload, score)
    ladder = sorted({round(min(TOP, max(0.0, sparsity + d)), 4) for d in LADDER})
    costs: dict[int, dict[float, float]] = {}
    for k, (b, group) in enumerate(sorted(blocks.items())):
        if progress is not None:
            progress(k / len(blocks), f"measuring block {b + 1} of {len(blocks)}: its answers at "
                                      f"{', '.join(f'{lv:.0%}' for lv in ladder)} zeros")
        saved = {n: m.weight.detach().clone() for n, m in group}
        costs[b] = {}
        try:
            for level in ladder:
                with torch.no_grad():
                    for n, m in group:
                        m.weight.copy_(sparsegpt_layer(saved[n], hessians[n], level).to(m.weight.dtype))
                costs[b][level] = 0.0 if level == 0 else _kl(base, _answers(model, workload, score))
            running = 0.0
            for level in ladder:  # more zeros never cost less: a dip is noise of the scoring texts
                running = costs[b][level] = max(running, costs[b][level])
        finally:
            with torch.no_grad():
                for n, m in group:
                    m.weight.copy_(saved[n])
    sizes = {b: sum(m.weight.numel() for _, m in group) for b, group in blocks.items()}
    return costs, sizes


def allocate(costs: dict[int, dict[float, float]], sizes: dict[int, int], sparsity: float) -> dict[int, float]:
    """Each block's level: the per-block minimum of KL − λ·size·level, λ bisected so that the size-weighted
    share of zeros comes closest to ``sparsity``, then shifted by one constant to meet it exactly (clipped to
    0..TOP). Example: two blocks with costs {0.4: 1, 0.5: 2, 0.6: 9} and {0.4: 1, 0.5: 1.2, 0.6: 1.5}, equal
    sizes, 0.5 -> {0: 0.4, 1: 0.6}."""
    total = sum(sizes.values())

    def pick(lam: float) -> dict[int, float]:
        return {b: min(c, key=lambda lv: (c[lv] - lam * sizes[b] / total * lv, lv)) for b, c in costs.items()}

    def share(levels: dict[int, float]) -> float:
        return sum(levels[b] * sizes[b] for b in levels) / total

    lo, hi = 0.0, 1.0
    while share(pick(hi)) < sparsity and hi < 1e12:  # a high enough worth drives every block to more zeros
        hi *= 10
    best = pick(hi)
    for _ in range(60):
        mid = (lo + hi) / 2
        got = pick(mid)
        if abs(share(got) - sparsity) < abs(share(best) - sparsity):
            best = got
        lo, hi = (mid, hi) if share(got) < sparsity else (lo, mid)
    shift = sparsity - share(best)
    for _ in range(8):  # one constant for all; clipping at the ends moves the share, so repeat
        levels = {b: min(TOP, max(0.0, lv + shift)) for b, lv in best.items()}
        gap = sparsity - share(levels)
        if abs(gap) < 1e-6:
            break
        shift += gap
    return levels


def measured_levels(model, layers: list[tuple[str, torch.nn.Linear]], workload, sparsity: float,
                    progress=None) -> tuple[dict[str, float], dict[int, float]]:
    """Module name -> its sparsity (a block's layers share their block's level; layers outside the blocks take
    ``sparsity``), and the levels by block index."""
    costs, sizes = block_costs(model, layers, workload, sparsity, progress)
    levels = allocate(costs, sizes, sparsity) if costs else {}
    return ({n: levels[i] if (i := layer_index(model, n)) in levels else sparsity for n, _ in layers}, levels)
