"""The whole catalogue of methods on one screen: one entry per method, keyed by its name.

An entry names its spec class, its function as ``"module:function"`` under ``compression.methods``
(imported on first use, so the dashboard can list methods without importing torch), whether it needs
no training (post-training), the knob the dashboard's live slider drives, and a mild and an
aggressive example that the tests run. Adding a method is one spec class, one function, one entry.

Example::

    >>> entry("quant").apply_fn()        # compression.methods.quant.quantize
    >>> entry("pickle")                  # SpecError: unknown method 'pickle': choose one of quant, cast, ...
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from .specs import (CastSpec, DistillSpec, HeadsSpec, LayersSpec, LowRankSpec, NeuronsSpec, PruneSpec, QuantSpec,
                    RuntimeSpec, Spec, SpecError)


@dataclass(frozen=True)
class Method:
    """One catalogue entry. The plain words (label, explain, describe) stay on the spec class."""

    spec: type[Spec]
    apply: str  # "module:function" under compression.methods: (model, spec, workload) -> CompressedModel
    post_training: bool  # needs no training: one setting lands in seconds
    live_knob: str | None  # the knob the dashboard's live slider drives, or None
    examples: tuple[Spec, Spec]  # (mild, aggressive): the tests run both
    lossless: bool = False  # the same numbers on another runtime: no example changes the outputs

    @property
    def explain(self) -> str:
        """One line for non-engineers."""
        return self.spec.explain

    def apply_fn(self) -> Callable:
        """The method's function, imported now (method modules import torch)."""
        module, name = self.apply.split(":")
        return getattr(importlib.import_module(f"compression.methods.{module}"), name)


# The order here is the order of the CLI's --method help and the dashboard's lists.
CATALOGUE: dict[str, Method] = {
    "quant": Method(QuantSpec, "quant:quantize", post_training=True, live_knob="bits",
                    # mild: 4 bits on ONNX Runtime's MatMulNBits; aggressive: 3 bits, GPTQ-rounded (act-order, clipped
                    # ranges), decoded in torch, and the embedding rows of tokens the train split never uses dropped
                    examples=(QuantSpec(bits=4, kernel="nbits", group_size=32),
                              QuantSpec(bits=3, kernel="rtn", algorithm="gptq", act_order="on", clip="mse",
                                        unseen="drop"))),
    "cast": Method(CastSpec, "cast:cast", post_training=True, live_knob="dtype",
                   examples=(CastSpec(dtype="fp16"), CastSpec(dtype="bf16"))),  # bf16 keeps fewer digits
    "runtime": Method(RuntimeSpec, "ort_graph:run_on_ort", post_training=True, live_knob="engine",
                      # lossless for these examples; engine=openvino runs bf16 where the CPU has it, so it is none
                      examples=(RuntimeSpec(engine="ort"), RuntimeSpec(engine="ort-fused")), lossless=True),
    "prune": Method(PruneSpec, "prune:prune", post_training=True, live_knob="sparsity",
                    examples=(PruneSpec(sparsity=0.2, criterion="sparsegpt", calibration="sequential", refit="on",
                                        allocation="owl"), PruneSpec(sparsity=0.95))),
    "lowrank": Method(LowRankSpec, "lowrank:factorize", post_training=True, live_knob="rank_fraction",
                      examples=(LowRankSpec(energy=0.999), LowRankSpec(rank=1))),
    "distill": Method(DistillSpec, "distill:distill", post_training=False, live_knob=None,
                      examples=(DistillSpec(student_layers=1, steps=4),
                                DistillSpec(student_layers=1, width=32, steps=2))),
    "heads": Method(HeadsSpec, "structured:prune_heads", post_training=False, live_knob=None,
                    examples=(HeadsSpec(fraction=0.25, importance="norm"),
                              HeadsSpec(fraction=0.75, importance="grad"))),
    "neurons": Method(NeuronsSpec, "structured:prune_neurons", post_training=False, live_knob=None,
                      examples=(NeuronsSpec(fraction=0.25, importance="norm"),
                                NeuronsSpec(fraction=0.9, importance="grad"))),
    "layers": Method(LayersSpec, "structured:drop_layers", post_training=False, live_knob=None,
                     examples=(LayersSpec(fraction=0.5, importance="norm"),
                               LayersSpec(fraction=0.5, importance="grad", recover_steps=3, recover_alpha=0.5,
                                          recover_hidden=0.5))),  # the kept layers' map, in every family
}


def entry(name: str) -> Method:
    """The catalogue entry of a method name; an unknown name lists the known ones."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise SpecError(f"unknown method {name!r}: choose one of {', '.join(CATALOGUE)}") from None


def method_for(spec: Spec) -> Callable:
    """The function that applies ``spec``: ``method_for(QuantSpec(bits=8))`` -> quant.quantize."""
    e = entry(spec.method)
    if type(spec) is not e.spec:
        raise SpecError(f"{type(spec).__name__} is not the spec the catalogue registers for {spec.method!r} "
                        f"({e.spec.__name__})")
    return e.apply_fn()
