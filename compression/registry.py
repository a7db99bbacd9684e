"""The whole catalogue of methods on one screen: spec type -> function(model, spec, workload).

``EXAMPLES`` gives each method a mild and an aggressive setting; the tests run every registered
method through both, so a new method is tested the moment it is registered here.
"""
from __future__ import annotations

from .methods import cast, distill, lowrank, prune, quant, structured
from .specs import (CastSpec, DistillSpec, HeadsSpec, LayersSpec, LowRankSpec, NeuronsSpec, PruneSpec, QuantSpec,
                    Spec)

METHODS = {
    QuantSpec: quant.quantize,
    CastSpec: cast.cast,
    PruneSpec: prune.prune,
    LowRankSpec: lowrank.factorize,
    DistillSpec: distill.distill,
    HeadsSpec: structured.prune_heads,
    NeuronsSpec: structured.prune_neurons,
    LayersSpec: structured.drop_layers,
}

# Methods that need no training: one setting lands in seconds, so the dashboard's live knob drives them.
POST_TRAINING = (QuantSpec, CastSpec, PruneSpec, LowRankSpec)

EXAMPLES: dict[type[Spec], tuple[Spec, Spec]] = {
    QuantSpec: (QuantSpec(bits=8), QuantSpec(bits=2, kernel="rtn")),
    CastSpec: (CastSpec(dtype="bf16"), CastSpec(dtype="fp16")),
    PruneSpec: (PruneSpec(sparsity=0.2), PruneSpec(sparsity=0.95)),
    LowRankSpec: (LowRankSpec(energy=0.999), LowRankSpec(rank=1)),
    DistillSpec: (DistillSpec(student_layers=1, steps=4), DistillSpec(student_layers=1, width=32, steps=2)),
    HeadsSpec: (HeadsSpec(fraction=0.25, importance="norm"), HeadsSpec(fraction=0.75, importance="grad")),
    NeuronsSpec: (NeuronsSpec(fraction=0.25, importance="norm"), NeuronsSpec(fraction=0.9, importance="grad")),
    LayersSpec: (LayersSpec(fraction=0.5, importance="norm"), LayersSpec(fraction=0.5, importance="grad",
                                                                         recover_steps=3)),
}


def method_for(spec: Spec):
    try:
        return METHODS[type(spec)]
    except KeyError:
        known = ", ".join(t.method for t in METHODS)
        raise KeyError(f"no method registered for {type(spec).__name__}; known: {known}") from None
