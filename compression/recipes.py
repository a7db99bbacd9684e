"""Recipes: chains of specs, their canonical keys, the text grammar and sweep grids.

Spec types are looked up through the catalogue (registry.py), so only catalogued methods parse.

Example::

    >>> Recipe.parse("prune(sparsity=0.5)>quant(bits=8)").key
    '[{"method":"prune",...},{"method":"quant",...}]'
    >>> expand(QuantSpec, {"bits": [4, 8]})            # two one-step recipes
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable

from .registry import entry
from .spec_base import Spec, SpecError, _decimals


def spec_type(name: str) -> type[Spec]:
    """The spec class of a catalogued method: ``spec_type("quant")`` -> QuantSpec; an unknown name lists the
    known ones."""
    return entry(name).spec


def spec_from_dict(d: dict[str, Any]) -> Spec:
    """Rebuild a spec from ``to_dict`` output; only catalogued types are rebuilt (the catalogue is the allowlist).

    Example: ``spec_from_dict({"method": "quant", "bits": 4})`` -> ``QuantSpec(bits=4)``.
    """
    d = dict(d)
    t = spec_type(str(d.pop("method", "")))
    names = {f.name for f in dataclasses.fields(t)}
    alias = {a: f.name for f in dataclasses.fields(t) for a in f.metadata.get("aliases", ())}
    kwargs = {}
    for k, v in d.items():
        k = alias.get(k, k)
        if k not in names:
            raise SpecError(f"{t.method} has no knob {k!r}: its knobs are {', '.join(sorted(names))}")
        kwargs[k] = v
    return t(**kwargs)


@dataclass(frozen=True)
class Recipe:
    """An ordered chain of specs, applied left to right. The empty recipe is the baseline itself."""

    steps: tuple[Spec, ...] = ()

    def __post_init__(self):
        for i, s in enumerate(self.steps[:-1]):
            if s.terminal:
                raise SpecError(f"{s.short()} produces a model that is no longer a torch module "
                                f"(step {i + 1} of {len(self.steps)}); it can only be the last step")

    @property
    def key(self) -> str:
        """Canonical JSON: sorted keys, rounded floats; two equal recipes have one key."""
        return json.dumps([s.to_dict() for s in self.steps], sort_keys=True, separators=(",", ":"))

    @property
    def name(self) -> str:
        return ">".join(s.short() for s in self.steps) or "baseline"

    @property
    def method(self) -> str:
        """The method label used for colouring: 'baseline', 'quant' or 'distill>quant'."""
        return ">".join(s.method for s in self.steps) or "baseline"

    @property
    def terminal(self) -> bool:
        return bool(self.steps) and self.steps[-1].terminal

    def describe(self) -> str:
        return "; then ".join(s.describe() for s in self.steps) or "the original model, unchanged"

    @classmethod
    def from_key(cls, key: str) -> "Recipe":
        return cls(tuple(spec_from_dict(d) for d in json.loads(key)))

    @classmethod
    def parse(cls, text: str) -> "Recipe":
        """Parse ``"distill(layers=3)>quant(bits=8)"``; ``"baseline"`` or ``""`` is the empty recipe."""
        text = text.strip()
        if text in ("", "baseline"):
            return cls(())
        steps = []
        for part in text.split(">"):
            m = re.fullmatch(r"\s*([a-z_0-9]+)\s*(?:\((.*)\))?\s*", part)
            if not m:
                raise SpecError(f"cannot read recipe step {part!r}: write it as method(knob=value,...)")
            args: dict[str, Any] = {"method": m.group(1)}
            for kv in filter(None, (a.strip() for a in _top_level(m.group(2) or ""))):
                if "=" not in kv:
                    raise SpecError(f"cannot read {kv!r} in {part!r}: write knob=value")
                k, v = (s.strip() for s in kv.split("=", 1))
                args[k] = _literal(v)
            steps.append(spec_from_dict(args))
        return cls(tuple(steps))


def _top_level(args: str) -> list[str]:
    """Split ``knob=value`` arguments at commas outside brackets: ``per_layer=((4, 0.5), (5, 0.5))`` is one."""
    out, depth, cur = [], 0, ""
    for ch in args:
        depth += (ch in "([{") - (ch in ")]}")
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return out + [cur]


def _literal(v: str):
    if v[:1] in "([{":  # a per-layer map written as pairs: ((4, 0.5), (5, 0.5))
        import ast

        try:
            return ast.literal_eval(v)
        except (ValueError, SyntaxError):
            raise SpecError(f"cannot read {v!r}: write pairs like ((4, 0.5), (5, 0.5)) or 4:0.5;5:0.5") from None
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v.strip("'\"")


def parse_values(text: str, typ: type) -> list:
    """Parse a knob's sweep values: ``"2,4,8"``, ``"0.3:0.9:0.1"`` (inclusive) or a single value."""
    out: list = []
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        if ":" in part and typ in (int, float):
            try:
                a, b, s = (float(x) for x in part.split(":"))
            except ValueError:
                raise SpecError(f"cannot read range {part!r}: write start:stop:step, e.g. 0.3:0.9:0.1") from None
            if s <= 0 or b < a:
                raise SpecError(f"range {part!r} is empty: the step must be > 0 and stop >= start")
            n = int(math.floor((b - a) / s + 1e-9)) + 1
            if n > 1000:
                raise SpecError(f"range {part!r} has {n} values; at most 1000")
            dec = _decimals(s) + 3
            out += [typ(round(a + i * s, dec)) for i in range(n)]
        elif typ is int:
            try:
                out.append(int(float(part)) if float(part).is_integer() else float(part))
            except ValueError:
                raise SpecError(f"{part!r} is not a number") from None
        elif typ is float:
            try:
                out.append(float(part))
            except ValueError:
                raise SpecError(f"{part!r} is not a number") from None
        else:
            out.append(part)
    return out


def expand(t: type[Spec], values: dict[str, Iterable]) -> list[Recipe]:
    """The grid of one-step recipes from per-knob value lists; duplicates collapse by key.

    Example: ``expand(QuantSpec, {"bits": [4, 8]})`` -> two recipes.
    """
    names = [n for n, vs in values.items() if vs is not None]
    grids = [list(values[n]) for n in names]
    seen: dict[str, Recipe] = {}
    for combo in itertools.product(*grids):
        r = Recipe((t(**dict(zip(names, combo))),))
        seen.setdefault(r.key, r)
    return list(seen.values())
