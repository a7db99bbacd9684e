"""The whole catalogue of methods on one screen: spec type -> function(model, spec, workload).

``EXAMPLES`` gives each method a mild and an aggressive setting; the tests run every registered
method through both, so a new method is tested the moment it is registered here.
"""
from __future__ import annotations

from .methods import cast, lowrank, prune, quant
from .specs import CastSpec, LowRankSpec, PruneSpec, QuantSpec, Spec

METHODS = {
    QuantSpec: quant.quantize,
    CastSpec: cast.cast,
    PruneSpec: prune.prune,
    LowRankSpec: lowrank.factorize,
}

EXAMPLES: dict[type[Spec], tuple[Spec, Spec]] = {
    QuantSpec: (QuantSpec(bits=8), QuantSpec(bits=2, kernel="rtn")),
    CastSpec: (CastSpec(dtype="bf16"), CastSpec(dtype="fp16")),
    PruneSpec: (PruneSpec(sparsity=0.2), PruneSpec(sparsity=0.95)),
    LowRankSpec: (LowRankSpec(energy=0.999), LowRankSpec(rank=1)),
}


def method_for(spec: Spec):
    try:
        return METHODS[type(spec)]
    except KeyError:
        known = ", ".join(t.method for t in METHODS)
        raise KeyError(f"no method registered for {type(spec).__name__}; known: {known}") from None
