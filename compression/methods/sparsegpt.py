"""SparseGPT (Frantar & Alistarh 2023): prune a Linear and update its surviving weights so that the layer's
output on calibration text changes as little as possible (optimal brain surgeon updates from the layer-wise
Hessian H = X^T X, applied lazily in blocks of columns).

Blocks of the model are pruned in order, each calibrated on the outputs of the blocks already pruned
before it, as in the paper.

OBC (Frantar, Singh & Alistarh 2022, "Optimal Brain Compression", its ExactOBS pruner) uses the same Hessians
but chooses each row's mask greedily instead of in one left-to-right pass: it removes the weights whose loss the
row's other weights can best make up for, a small batch at a time, re-solving the survivors exactly after each
batch. Slower (each row keeps its own inverse Hessian), and closer to the least-squares optimum.
"""
from __future__ import annotations

import torch

from ..families import family
from .hessian import CALIBRATION_TEXTS, forward_stages, layer_hessians

# OBC removes each row's weights in this many batches. Chosen on validation (Zen 4 seed-1 fine-tune, 50%): 8 gave
# -0.39 pts, 45 changed answers, KL 7.91e-3; 16 gave -1.25, 44, KL 6.68e-3 (closer outputs, a worse accuracy)
OBC_STEPS = 8
BLOCK = 128  # columns per lazy-update block, and the width over which the mask is chosen (the paper's Bs)
DAMP = 0.01  # dampening: this share of H's mean diagonal is added to the diagonal


def _damped(h: torch.Tensor, damp: float) -> torch.Tensor:
    """H in float64 with a dead input's diagonal set to 1 (an input that is always zero: its weight has no
    effect on calibration) and ``damp`` x its mean diagonal added."""
    h = h.double().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    idx = torch.arange(h.shape[0])
    h[idx, idx] += damp * torch.mean(torch.diag(h))
    return h


def _damped_inverse(h: torch.Tensor, damp: float, factor: bool = False) -> torch.Tensor:
    """H^-1 after dampening, in float64 for stability; with ``factor`` its upper Cholesky factor U instead
    (H^-1 = U^T U, float32, what SparseGPT's updates use). More dampening while H is not positive definite."""
    for _ in range(4):
        try:
            inv = torch.cholesky_inverse(torch.linalg.cholesky(_damped(h, damp)))
            return torch.linalg.cholesky(inv, upper=True).float() if factor else inv
        except RuntimeError:  # torch.linalg.LinAlgError: not positive definite yet
            damp *= 10
    raise RuntimeError("SparseGPT: the calibration Hessian stays singular even with strong dampening")


def refit_kept(weight: torch.Tensor, pruned: torch.Tensor, hessian: torch.Tensor, damp: float = DAMP) -> torch.Tensor:
    """The kept weights of ``pruned`` (its zeros are the mask) solved exactly: each row's kept weights w_S
    minimise (w - w0)^T H (w - w0) with the pruned ones held at zero, where w0 is the original row of ``weight``
    and H the (dampened) calibration Hessian, so w_S = (H_SS)^-1 (H w0)_S. SparseGPT's own updates reach this
    minimum only approximately (each pruned column's error goes to the columns after it, in one pass); the
    solve costs a (kept x kept) Cholesky per row.

    One matrix at a time on purpose: with torch 2.13's CPU build, batched ``torch.linalg.solve`` in float64
    returned garbage (MKL: "Parameter 6 was incorrect on entry to DLASWP") or hung once ``torch.set_num_threads``
    had been called, as the measurement protocol does, and batched Cholesky ran 4x slower than this loop.

    Example: ``refit_kept(lin.weight, sparsegpt_layer(lin.weight, H, 0.5), H)`` keeps the same zeros and
    its output on the calibration inputs is never further from the original's."""
    w0 = weight.detach().double()
    keep = pruned != 0
    for _ in range(4):
        h = _damped(hessian, damp)
        target = w0 @ h  # (H w0) for every row at once (H is symmetric)
        out = torch.zeros_like(w0)
        try:
            for r in range(w0.shape[0]):
                s = keep[r].nonzero().flatten()
                if len(s):
                    chol = torch.linalg.cholesky(h[s][:, s])
                    out[r, s] = torch.cholesky_solve(target[r, s, None], chol).flatten()
            return out.to(torch.float32)
        except RuntimeError:  # torch.linalg.LinAlgError: not positive definite yet
            damp *= 10
    raise RuntimeError("SparseGPT refit: the calibration Hessian stays singular even with strong dampening")


def sparsegpt_layer(weight: torch.Tensor, hessian: torch.Tensor, sparsity: float, pattern: str = "unstructured",
                    block: int = BLOCK, damp: float = DAMP, mask: str = "row", refit: bool = False) -> torch.Tensor:
    """The pruned and updated weight (out x in) of one Linear: its zeros are the pruned weights.

    Unstructured: within every block of ``block`` columns each output row drops the weights of lowest OBS
    saliency w^2 / [H^-1]_cc^2 (its exact share, so every row ends at ``sparsity``); with ``mask="block"`` one
    threshold per block across all rows instead, as the paper's reference code (rows then differ, the layer
    still ends at ``sparsity``). N:M patterns drop the
    M - N of lowest saliency in every M consecutive weights (a ragged tail of columns stays dense). Each
    pruned column's error is spread over the columns not yet visited. ``refit`` then solves the kept weights
    exactly for the mask SparseGPT chose (:func:`refit_kept`).

    Example: ``sparsegpt_layer(lin.weight, H, 0.5)`` has half of each row zero, and ``X @ W'.T`` stays
    closer to ``X @ W.T`` than magnitude pruning at the same sparsity.
    """
    w = weight.detach().float().clone()
    rows, cols = w.shape
    hinv = _damped_inverse(hessian, damp, factor=True)
    nm = tuple(int(x) for x in pattern.split(":")) if pattern != "unstructured" else None
    usable = cols - cols % nm[1] if nm else cols
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        h1 = hinv[i1:i2, i1:i2]
        d1 = torch.diag(h1)
        drop = torch.zeros_like(w1, dtype=torch.bool)
        if nm is None:
            k = int(round(sparsity * i2)) - int(round(sparsity * i1))  # sums to round(sparsity * cols) per row
            sal = w1 ** 2 / d1[None, :] ** 2
            if k > 0 and mask == "block":
                drop.view(-1)[sal.flatten().topk(k * rows, largest=False).indices] = True
            elif k > 0:
                drop.scatter_(1, sal.topk(k, dim=1, largest=False).indices, True)
        for i in range(i2 - i1):
            if nm is not None and i % nm[1] == 0 and i1 + i + nm[1] <= usable:
                sal = w1[:, i:i + nm[1]] ** 2 / d1[None, i:i + nm[1]] ** 2  # chosen on the updated weights
                drop.scatter_(1, i + sal.topk(nm[1] - nm[0], dim=1, largest=False).indices, True)
            col = w1[:, i]
            q = torch.where(drop[:, i], torch.zeros_like(col), col)
            e = (col - q) / h1[i, i]
            w1[:, i:] -= e[:, None] * h1[i, i:][None, :]
            w1[:, i] = q  # exactly zero where dropped, whatever rounding the update left
            err1[:, i] = e
        w[:, i1:i2] = w1
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return refit_kept(weight, w, hessian, damp) if refit else w


def obc_layer(weight: torch.Tensor, hessian: torch.Tensor, sparsity: float, damp: float = DAMP, steps: int = OBC_STEPS,
              check=None) -> torch.Tensor:
    """The pruned and updated weight (out x in) of one Linear by OBC's greedy OBS, row by row.

    Each row starts from the full inverse Hessian H^-1 and removes its weights in ``steps`` batches. A batch is
    the kept weights of lowest saliency w^2 / [H_S^-1]_cc for the row's current kept set S (the loss of
    removing one, after the rest are re-solved). The batch R is removed at once with the exact group update
    w_S' -= [H^-1]_S'R [H^-1]_RR^-1 w_R, and H_S^-1 is downdated to H_S'^-1 the same way, so after the last
    batch the kept weights are the least-squares optimum for the row's mask (what ``refit=on`` solves for
    SparseGPT's mask). Unstructured only: with N:M caps the batches fill groups early, and on a test layer
    SparseGPT with the refit came closer at 2:4 and 4:8. Float32: the same layer error as float64 to 4 digits
    on a test layer, 3x faster; a row whose float32 solve breaks down is redone in float64. The cost grows with
    rows x steps x cols^2, the cube of the model's width. ``check(done)`` is called every 64 rows with the share
    of rows done (a cancel, and the progress bar).

    Example: ``obc_layer(lin.weight, H, 0.5)`` has half of each row zero, and on the calibration inputs its
    output is closer to the original's than ``sparsegpt_layer(lin.weight, H, 0.5, refit=True)``'s.
    """
    w0 = weight.detach()
    rows, cols = w0.shape
    hinv = _damped_inverse(hessian, damp)  # float64 (more dampening if H is singular)
    hinv32 = hinv.float()
    total = int(round(sparsity * cols))
    out = torch.zeros(rows, cols, dtype=torch.float32)
    for r in range(rows):
        if check is not None and r % 64 == 0:
            check(r / rows)
        try:
            idx, w = _obc_row(w0[r].float(), hinv32, total, steps)
        except RuntimeError:  # float32 lost definiteness on this row: the whole row again in float64
            idx, w = _obc_row(w0[r].double(), hinv, total, steps)
        out[r, idx] = w.float()
    return out


def _obc_row(w: torch.Tensor, hi: torch.Tensor, total: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One row of :func:`obc_layer` in the dtype of ``w`` and ``hi`` (the row and the full H^-1): the columns it
    keeps and their values. Raises RuntimeError where a batch's [H_S^-1]_RR is not positive definite or the
    update is not finite, so that the caller can redo the row in float64."""
    idx, removed = torch.arange(len(w)), 0
    for t in range(1, steps + 1):
        need = int(round(total * t / steps)) - removed
        if need <= 0:
            continue
        drop = (w ** 2 / torch.diag(hi)).topk(need, largest=False).indices  # the OBS saliency
        keep = torch.ones(len(idx), dtype=torch.bool)
        keep[drop] = False
        kept = keep.nonzero().flatten()
        h_kr = hi.index_select(0, kept).index_select(1, drop)
        chol = torch.linalg.cholesky(hi.index_select(0, drop).index_select(1, drop))
        sol = torch.cholesky_solve(torch.cat([w[drop, None], h_kr.T], 1), chol)
        w = w[kept] - h_kr @ sol[:, 0]
        hi = torch.addmm(hi.index_select(0, kept).index_select(1, kept), h_kr, sol[:, 1:], alpha=-1)
        idx = idx[kept]
        removed += need
    if not torch.isfinite(w).all():
        raise RuntimeError("OBC: the row's update is not finite")
    return idx, w


def _ticker(workload, progress, block: tuple[int, int], label: str, name: str, start: float, share: float):
    """The ``check(done)`` that :func:`obc_layer` calls as its rows finish: a cancel, then the bar moved to
    ``start + done * share`` of block ``block[0]`` of ``block[1]``."""
    def check(done: float) -> None:
        workload.cancel.check()
        if progress is not None:
            progress((block[0] + start + done * share) / block[1],
                     f"{label}: block {block[0] + 1} of {block[1]}, {name}: {done:.0%} of its rows")
    return check


def _by_block(prefix: str, layers):
    """The Linears grouped by the block that holds them (``prefix``: the blocks' path and a dot), in the order
    the forward pass runs the blocks."""
    groups: dict[str, list] = {}
    for name, module in layers:
        key = name[len(prefix):].split(".")[0] if name.startswith(prefix) else name
        groups.setdefault(key, []).append((name, module))
    return list(groups.values())


def sparsegpt_prune(model: torch.nn.Module, layers: list[tuple[str, torch.nn.Linear]], workload,
                    sparsity: float, pattern: str = "unstructured", progress=None, n_texts: int = CALIBRATION_TEXTS,
                    damp: float = DAMP, mask: str = "row", sequential: bool = False,
                    levels: dict[str, float] | None = None, refit: bool = False, greedy: bool = False) -> None:
    """Prune ``layers`` of ``model`` in place with SparseGPT, block by block: each block's Hessians come from
    the train split's first ``n_texts`` calibration texts run through the model with every earlier block
    already pruned. ``damp`` and ``mask`` as in :func:`sparsegpt_layer`.

    ``sequential`` also orders the layers inside a block (the reference's --true-sequential): q/k/v, then the
    attention output, then the FFN's, each calibrated after the earlier ones are pruned. ``levels`` gives a
    layer its own sparsity (OWL's, by name); ``refit`` solves each layer's kept weights exactly for its mask;
    ``greedy`` prunes each layer with OBC's greedy per-row OBS (:func:`obc_layer`) instead."""
    prefix = family(model).blocks_at + "."
    groups = _by_block(prefix, layers)
    label = "OBC" if greedy else "SparseGPT"
    early = not family(model).shared  # ALBERT calls its one block at every depth: each pass runs to the end
    for g, group in enumerate(groups):
        if progress is not None:
            progress(g / len(groups), f"{label}: block {g + 1} of {len(groups)} on calibration text")
        # OBC's time per layer grows as rows x cols^2: the bar moves by that share of the block as its rows finish
        cost = {name: m.weight.shape[0] * m.weight.shape[1] ** 2 for name, m in group} if greedy else {}
        done = 0.0
        for stage in forward_stages(model, group, workload) if sequential else [group]:
            workload.cancel.check()
            hessians = layer_hessians(model, stage, workload, n_texts, stop_early=early)
            with torch.no_grad():
                for name, module in stage:
                    level = sparsity if levels is None else levels[name]
                    if greedy:
                        short = name[len(prefix):].split(".", 1)[-1] if name.startswith(prefix) else name
                        share = cost[name] / sum(cost.values())
                        new = obc_layer(module.weight, hessians[name], level, damp=damp,
                                        check=_ticker(workload, progress, (g, len(groups)), label, short, done, share))
                        done += share
                    else:
                        new = sparsegpt_layer(module.weight, hessians[name], level, pattern, damp=damp, mask=mask,
                                              refit=refit)
                    module.weight.copy_(new.to(module.weight.dtype))
