"""GPTQ (Frantar et al. 2023): round a layer's weights one input column at a time and push each column's
rounding error onto the columns not yet rounded, weighted by the inverse Hessian of the layer's inputs, so
that the layer's *output* on calibration text moves as little as possible (round-to-nearest only minimises
each weight's own error).

The grid is the round-to-nearest one of ``quant.rtn`` (the same scales, zero points and codes), so a GPTQ
layer is stored, decoded and packed for ONNX Runtime's MatMulNBits exactly like an RTN one.
"""
from __future__ import annotations

import torch

from ..specs import SpecError


def grid(g: torch.Tensor, bits: int, scheme: str,
         clip: str = "none") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The RTN grid of each row of ``g`` (rows, group): (rounding scale, stored fp16 scale, zero point).

    ``sym`` puts zero at 0 (codes -2^(b-1)..2^(b-1)-1, stored offset by 2^(b-1)); ``asym`` spans min..max
    with an integer zero point. Each is (rows, 1); the zero point is None for ``sym``. ``clip="mse"`` shrinks
    each row's range by the factor in :data:`SHRINKS` that rounds the row with the least squared error
    (a rare outlier then costs one clipped weight instead of a coarse step for all the others).
    Example: ``grid(torch.randn(8, 32), 4, "sym")``.
    """
    best = _grid(g, bits, scheme, 1.0)
    if clip == "none":
        return best
    err = _error(g, best, bits)
    for shrink in SHRINKS[1:]:
        cand = _grid(g, bits, scheme, shrink)
        e = _error(g, cand, bits)
        better = e < err
        err = torch.where(better, e, err)
        best = tuple(None if b is None else torch.where(better, c, b) for b, c in zip(best, cand))
    return best


# the range shrinks tried by clip="mse": 1.0 (plain min..max) down to 0.75, as GPTQ's reference quantizer
# searches (its ``mse`` option); below that the clipped weights cost more than the finer step saves at 2-4 bits
SHRINKS = tuple(1.0 - 0.01 * i for i in range(26))


def _grid(g: torch.Tensor, bits: int, scheme: str, shrink: float):
    levels = 2 ** bits
    if scheme == "sym":
        scale = (shrink * g.abs().amax(dim=1, keepdim=True) / (levels // 2 - 1)).clamp(min=1e-12)
        return scale, scale.half().float(), None
    lo, hi = shrink * g.amin(dim=1, keepdim=True), shrink * g.amax(dim=1, keepdim=True)
    scale = ((hi - lo) / (levels - 1)).clamp(min=1e-12)
    zero = torch.clamp(torch.round(-lo / scale), 0, levels - 1)
    return scale, scale.half().float(), zero


def _error(g: torch.Tensor, grid_: tuple, bits: int) -> torch.Tensor:
    return ((round_to_grid(g, *grid_, bits)[1] - g) ** 2).sum(dim=1, keepdim=True)


def round_to_grid(x: torch.Tensor, scale: torch.Tensor, stored: torch.Tensor, zero: torch.Tensor | None,
                  bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(unsigned codes 0..2^b-1, decoded values) of ``x`` on a grid from :func:`grid` (broadcast by row)."""
    levels = 2 ** bits
    if zero is None:
        q = torch.clamp(torch.round(x / scale), -(levels // 2), levels // 2 - 1)
        return (q + levels // 2).to(torch.uint8), q * stored
    q = torch.clamp(torch.round(x / stored) + zero, 0, levels - 1)
    return q.to(torch.uint8), (q - zero) * stored


def gptq(weight: torch.Tensor, hessian: torch.Tensor, bits: int, group: int, scheme: str,
         block: int = 128, damp: float = 0.01, act_order: bool = False, clip: str = "none") -> dict[str, torch.Tensor]:
    """GPTQ of one (out, in) weight given its inputs' (in, in) Hessian (see ``hessian.layer_hessians``).

    Columns are rounded left to right; each one's error, divided by its inverse-Hessian diagonal, updates
    the rest of its block at once and the later blocks lazily (the paper's "lazy batch" updates). A
    group's scale is fitted to the group's weights as they stand when its first column comes up.
    ``group`` 0 means one group per output row. ``damp`` adds that share of the mean diagonal to H.
    ``act_order`` rounds the columns in order of decreasing Hessian diagonal instead (the inputs that move
    the output most go first, while the most columns are left to absorb their error); every group's scale
    is then fitted up front on the weights as given (the reference's "static groups"), so the stored codes
    and scales keep the plain left-to-right layout. ``clip`` is :func:`grid`'s.

    Returns ``codes`` (out, in) uint8, ``scale`` (out, groups) fp32 holding fp16 values, ``zero`` (out,
    groups) uint8 for asym, and ``decoded`` (out, in): exactly the weights that will run.
    Example: ``gptq(lin.weight, H, bits=4, group=128, scheme="sym")["decoded"]``.
    """
    w = weight.detach().float().clone()
    rows, cols = w.shape
    group = group or cols
    if cols % group:
        raise SpecError(f"quant.group_size={group} does not divide the layer's input size {cols}")
    h = hessian.detach().float().clone()
    dead = h.diagonal() == 0  # an input that is always zero: its weights cannot matter
    h[dead, dead] = 1
    w[:, dead] = 0
    grids = {k // group: grid(w[:, k:k + group], bits, scheme, clip) for k in range(0, cols, group)} if act_order else {}
    order = torch.argsort(h.diagonal(), descending=True, stable=True) if act_order else torch.arange(cols)
    w, h = w[:, order], h[order][:, order]
    h.diagonal().add_(damp * h.diagonal().mean())
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    # a group never straddles two blocks, so its columns are up to date when its scale is fitted
    block = group if group > block else block - block % group

    codes = torch.zeros(rows, cols, dtype=torch.uint8)
    decoded = torch.zeros(rows, cols)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        w1, err1, hinv1 = w[:, i1:i2].clone(), torch.zeros(rows, i2 - i1), hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = int(order[i1 + i])
            if col % group == 0 and not act_order:
                span = w1[:, i:i + group] if i + group <= i2 - i1 else w[:, col:col + group]
                grids[col // group] = grid(span, bits, scheme, clip)
            c, q = round_to_grid(w1[:, i:i + 1], *grids[col // group], bits)
            codes[:, col], decoded[:, col] = c[:, 0], q[:, 0]
            err = (w1[:, i] - q[:, 0]) / hinv1[i, i]
            w1[:, i:] -= err[:, None] * hinv1[i, i:][None, :]
            err1[:, i] = err
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    out = {"codes": codes, "scale": torch.cat([grids[k][1] for k in range(cols // group)], dim=1),
           "decoded": decoded.to(weight.dtype)}
    if scheme == "asym":
        out["zero"] = torch.cat([grids[k][2] for k in range(cols // group)], dim=1).to(torch.uint8)
    return out
