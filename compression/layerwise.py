"""Per-layer settings: which level each Linear layer gets when a spec carries a ``per_layer`` map.

A spec's map is keyed by the family adapter's layer index (``family(model).blocks(model)[i]``), never by
module names, so one recipe means the same on every family. Layers outside the blocks (an embedding
projection) take the spec's main setting.

Example::

    >>> levels(model, family(model).linears(model), PruneSpec(sparsity=0.8, per_layer="1:0.5"), "sparsity")
    {'bert.encoder.layer.0.attention.self.query': 0.8, ..., 'bert.encoder.layer.1.output.dense': 0.5}
"""
from __future__ import annotations

from typing import Callable

import torch

from .families import family
from .layer_maps import level_of
from .specs import SpecError


def layer_index(model, name: str) -> int | None:
    """The adapter's block index of a module name, or None outside the blocks."""
    prefix = family(model).blocks_at + "."
    if not name.startswith(prefix):
        return None
    head = name[len(prefix):].split(".", 1)[0]
    return int(head) if head.isdigit() else None


def by_block(model, layers: list[tuple[str, object]]) -> dict[int, list]:
    """The ``(name, module)`` pairs grouped by the adapter's block index; layers outside the blocks left out."""
    out: dict[int, list] = {}
    for n, m in layers:
        if (i := layer_index(model, n)) is not None:
            out.setdefault(i, []).append((n, m))
    return out


def check_layers(model, spec) -> int:
    """The model's layer count, after checking that ``spec.per_layer`` names only layers it has (one sentence
    otherwise)."""
    fam = family(model)
    n = fam.num_layers(model)
    if not spec.per_layer:
        return n
    if fam.shared:
        raise SpecError(f"{spec.method}.per_layer does not apply to {fam.name}: it shares one layer's weights "
                        "across depth, so every layer has the same setting")
    top = max(i for i, _ in spec.per_layer)
    if top >= n:
        raise SpecError(f"{spec.method}.per_layer names layer {top}, but this model has {n} layers "
                        f"(0..{n - 1})")
    return n


def levels(model, layers: list[tuple[str, object]], spec, main: str) -> dict[str, float]:
    """Module name -> the level its layer gets (``main`` names the spec's main knob, e.g. ``"bits"``)."""
    check_layers(model, spec)
    return {n: level_of(spec, main, i) if (i := layer_index(model, n)) is not None else getattr(spec, main)
            for n, _ in layers}


def grouped_masks(masks_for: Callable, layers: list[tuple[str, object]], by_name: dict[str, float],
                  main: float) -> Callable[[float], dict]:
    """A masks function over all ``layers`` in which each group of layers with its own level is pruned on its
    own; the layers at the main level follow the sparsity asked for (their threshold stays shared)."""
    groups: dict[float, list] = {}
    for n, m in layers:
        groups.setdefault(by_name[n], []).append((n, m))

    def masks(sparsity: float) -> dict:
        out = {}
        for level, group in groups.items():
            out.update(masks_for(group, sparsity if level == main else level))
        return out
    return masks


def owl_levels(model, layers: list[tuple[str, object]], norms: dict, sparsity: float, spread: float,
               outlier: float = 5.0) -> dict[str, float]:
    """OWL's layer sparsities (Yin et al. 2024, outlier-weighed layerwise sparsity): in each block, the share of
    its Linear weights whose Wanda score |W| * ||X|| exceeds ``outlier`` x the block's mean score; blocks with
    more such outliers are pruned less, the levels spanning a band 2 x ``spread`` wide (linear in the share) and
    their mean staying at ``sparsity``. Layers outside the blocks take ``sparsity``.

    Example: ``owl_levels(model, layers, input_norms(...), 0.5, 0.08)`` gives 0.43..0.59 by block, mean 0.5.
    """
    ratio = {}
    for i, group in by_block(model, layers).items():
        scores = [(m.weight.detach().abs() * norms[n][None, :]).flatten() for n, m in group]
        allsc = torch.cat(scores)
        ratio[i] = float((allsc > outlier * allsc.mean()).float().mean())
    lo, hi = min(ratio.values(), default=0.0), max(ratio.values(), default=0.0)
    scaled = {i: (r - lo) / (hi - lo) * 2 * spread if hi > lo else 0.0 for i, r in ratio.items()}
    mean = sum(scaled.values()) / max(len(scaled), 1)
    level = {i: min(0.99, max(0.0, sparsity - (d - mean))) for i, d in scaled.items()}
    return {n: level[i] if (i := layer_index(model, n)) is not None else sparsity for n, _ in layers}
