"""One module per method family; each exposes plain functions ``(model, spec, workload) -> CompressedModel``.

All of them pick their layers with :func:`select_modules`. The catalogue (registry.py) names each
function as ``"module:function"`` and imports it on first use, so listing methods never imports torch.
"""
from __future__ import annotations

from fnmatch import fnmatch
from typing import Iterable

import torch

# The encoder's Linear layers: where compression is safe by default. Pruning every Linear globally
# wipes out the pooler and the classifier and collapses accuracy to the majority class.
ENCODER = ("*encoder.layer.*",)
HEAD = ("*classifier*", "*pooler*")


def select_modules(model: torch.nn.Module, include: Iterable[str] = ("*",), exclude: Iterable[str] = (),
                   types: tuple[type, ...] = (torch.nn.Linear,)) -> list[tuple[str, torch.nn.Module]]:
    """Modules of ``types`` whose names match an include pattern and no exclude pattern.

    Example: ``select_modules(model, include=ENCODER)`` -> the encoder's Linear layers.
    """
    inc, exc = tuple(include), tuple(exclude)
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, types) and any(fnmatch(n, p) for p in inc) and not any(fnmatch(n, p) for p in exc)]
