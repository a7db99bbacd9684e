"""Low-rank factorization: each selected Linear W (out x in) becomes B @ A with rank r (truncated SVD).

A layer is factorized only where that saves weights: r < out*in / (out + in).
"""
from __future__ import annotations

import torch

from ..artifacts import CompressedModel
from ..families import family
from ..runtimes import LowRankLinear
from ..specs import LowRankSpec, SpecError


def _rank_for(spec: LowRankSpec, s: torch.Tensor, out_f: int, in_f: int, name: str) -> int:
    full = min(out_f, in_f)
    if spec.rank:
        if spec.rank > full:
            raise SpecError(f"lowrank.rank={spec.rank} exceeds min(out, in)={full} of layer {name}")
        return spec.rank
    if spec.rank_fraction:
        return max(1, round(spec.rank_fraction * full))
    energy = torch.cumsum(s.double() ** 2, 0) / (s.double() ** 2).sum()
    return int(torch.searchsorted(energy, torch.tensor(spec.energy, dtype=energy.dtype)).item()) + 1


def factorize(model: torch.nn.Module, spec: LowRankSpec, workload) -> CompressedModel:
    kept, done = [], []
    for name, lin in family(model).linears(model):
        workload.cancel.check()  # between SVDs: a prefetched setting yields to a release here (engine.Yielding)
        w = lin.weight.detach().float()
        out_f, in_f = w.shape
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        r = min(_rank_for(spec, s, out_f, in_f, name), len(s))
        if r >= out_f * in_f / (out_f + in_f):
            kept.append(name)  # factorizing would not save weights
            continue
        low = LowRankLinear(in_f, r, out_f, bias=lin.bias is not None)
        root = s[:r].sqrt()
        with torch.no_grad():
            low.first.weight.copy_(root[:, None] * vh[:r])
            low.second.weight.copy_(u[:, :r] * root[None, :])
            if lin.bias is not None:
                low.second.bias.copy_(lin.bias)
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent), attr, low)
        done.append((name, r, out_f, in_f))
    cm = CompressedModel.fp32(model)
    ranks = sorted({r for _, r, _, _ in done})
    cm.notes.append(f"{len(done)} weight matrices replaced by two thin ones (ranks {ranks[0]}-{ranks[-1]})"
                    if done else "no layer factorized: at this rank it would not save weights")
    if kept:
        cm.notes.append(f"{len(kept)} layers left whole (factorizing them would not save weights)")
    cm.info.update(factorized_layers=len(done), ranks={n: r for n, r, _, _ in done})
    return cm
