"""The whole catalogue of methods on one screen: spec type -> function(model, spec, workload)."""
from __future__ import annotations

from .methods import quant
from .specs import QuantSpec, Spec

METHODS = {
    QuantSpec: quant.quantize,
}


def method_for(spec: Spec):
    try:
        return METHODS[type(spec)]
    except KeyError:
        known = ", ".join(t.method for t in METHODS)
        raise KeyError(f"no method registered for {type(spec).__name__}; known: {known}") from None
