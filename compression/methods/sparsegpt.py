"""SparseGPT (Frantar & Alistarh 2023): prune a Linear and update its surviving weights so that the layer's
output on calibration text changes as little as possible (optimal brain surgeon updates from the layer-wise
Hessian H = X^T X, applied lazily in blocks of columns).

Blocks of the model are pruned in order, each calibrated on the outputs of the blocks already pruned
before it, as in the paper.
"""
from __future__ import annotations

import torch

from ..families import family
from .hessian import CALIBRATION_TEXTS, forward_stages, layer_hessians

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


def _inverse_cholesky(h: torch.Tensor, damp: float) -> torch.Tensor:
    """The upper Cholesky factor of H^-1 (after dampening), in float64 for stability; more dampening if H
    is still not positive definite."""
    for _ in range(4):
        try:
            inv = torch.cholesky_inverse(torch.linalg.cholesky(_damped(h, damp)))
            return torch.linalg.cholesky(inv, upper=True).float()
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
    hinv = _inverse_cholesky(hessian, damp)
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


def _by_block(model, layers):
    """The Linears grouped by the block that holds them, in the order the forward pass runs the blocks."""
    prefix = family(model).blocks_at + "."
    groups: dict[str, list] = {}
    for name, module in layers:
        key = name[len(prefix):].split(".")[0] if name.startswith(prefix) else name
        groups.setdefault(key, []).append((name, module))
    return list(groups.values())


def sparsegpt_prune(model: torch.nn.Module, layers: list[tuple[str, torch.nn.Linear]], workload,
                    sparsity: float, pattern: str = "unstructured", progress=None, n_texts: int = CALIBRATION_TEXTS,
                    damp: float = DAMP, mask: str = "row", sequential: bool = False,
                    levels: dict[str, float] | None = None, refit: bool = False) -> None:
    """Prune ``layers`` of ``model`` in place with SparseGPT, block by block: each block's Hessians come from
    the train split's first ``n_texts`` calibration texts run through the model with every earlier block
    already pruned. ``damp`` and ``mask`` as in :func:`sparsegpt_layer`.

    ``sequential`` also orders the layers inside a block (the reference's --true-sequential): q/k/v, then the
    attention output, then the FFN's, each calibrated after the earlier ones are pruned. ``levels`` gives a
    layer its own sparsity (OWL's, by name); ``refit`` solves each layer's kept weights exactly for its mask."""
    groups = _by_block(model, layers)
    early = not family(model).shared  # ALBERT calls its one block at every depth: each pass runs to the end
    for g, group in enumerate(groups):
        if progress is not None:
            progress(g / len(groups), f"SparseGPT: block {g + 1} of {len(groups)} on calibration text")
        for stage in forward_stages(model, group, workload) if sequential else [group]:
            workload.cancel.check()
            hessians = layer_hessians(model, stage, workload, n_texts, stop_early=early)
            with torch.no_grad():
                for name, module in stage:
                    level = sparsity if levels is None else levels[name]
                    new = sparsegpt_layer(module.weight, hessians[name], level, pattern, damp=damp, mask=mask,
                                          refit=refit)
                    module.weight.copy_(new.to(module.weight.dtype))
