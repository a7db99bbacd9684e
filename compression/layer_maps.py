"""Per-layer maps in specs (``per_layer``): their canonical form and their plain words.

A map is keyed by the family adapter's layer index and stored as a sorted tuple of (index, level) pairs without
entries equal to the spec's main setting, so equal maps are one recipe key.

Example::

    >>> PruneSpec(sparsity=0.8, per_layer="5:0.5;4:0.5").per_layer
    ((4, 0.5), (5, 0.5))
"""
from __future__ import annotations


def canonical_per_layer(spec: "Spec", name: str, check_level) -> None:
    """Store ``spec.per_layer`` as a sorted tuple of (index, level) pairs, without entries equal to the main
    setting, so equal maps are one recipe key. Accepts pairs, a dict, or the text ``4:0.5;5:0.5``.

    ``check_level(level)`` returns the level in its canonical type or raises SpecError with one sentence.
    """
    from .spec_base import SpecError  # read at call time, as before the split (specs imports this module)

    raw = spec.per_layer
    where = f"{spec.method}.per_layer"
    if isinstance(raw, str):
        text = raw.strip().strip("()[]{}").strip()
        try:
            raw = [tuple(p.split(":")) for p in text.replace(" ", ";").split(";") if p.strip()]
        except ValueError:
            raw = None
    elif isinstance(raw, dict):
        raw = list(raw.items())
    pairs = {}
    try:
        for i, lv in raw:
            idx = float(i)
            if not idx.is_integer() or idx < 0:
                raise SpecError(f"{where} names layer {i!r}: a layer index is a whole number >= 0")
            if int(idx) in pairs:
                raise SpecError(f"{where} names layer {int(idx)} twice")
            pairs[int(idx)] = check_level(float(lv))
    except SpecError:
        raise
    except (TypeError, ValueError):
        raise SpecError(f"{where}={spec.per_layer!r} cannot be read: write index:level pairs, "
                        "e.g. 4:0.5;5:0.5") from None
    main = getattr(spec, name)
    canon = tuple(sorted((i, lv) for i, lv in pairs.items() if lv != main))
    object.__setattr__(spec, "per_layer", canon)


def per_layer_words(per_layer: tuple, unit: str) -> str:
    """``" (except layer 4 at 0.5 sparsity)"``, or nothing for an empty map."""
    if not per_layer:
        return ""
    words = ", ".join(f"layer {i} at {'fp32' if lv == 32 and unit == ' bits' else f'{lv:g}{unit}'}"
                      for i, lv in per_layer)
    return f" (except {words})"


def level_of(spec: "Spec", main: str, index: int):
    """The level one layer gets: its per-layer entry, else the spec's main setting."""
    return dict(spec.per_layer).get(index, getattr(spec, main))
