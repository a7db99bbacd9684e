"""What every spec is made of: the Spec base class, the knob() field with its metadata, SpecError, and the
knobs several specs share (per-layer maps, distillation-aware recovery). specs.py holds one class per method.

Example::

    >>> @dataclass(frozen=True)
    ... class ToySpec(Spec):
    ...     method: ClassVar[str] = "toy"
    ...     level: float = knob(0.5, lo=0.0, hi=1.0, step=0.1, help="how much")
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar


class SpecError(ValueError):
    """A knob value that cannot work. The message names the field and what is allowed."""


def knob(default, *, help: str, lo=None, hi=None, step=None, choices=None, unit: str = "",
         lo_open: bool = False, sweep: str = "", aliases: tuple[str, ...] = (), cost: bool = False):
    """A spec field with the metadata the CLI, the UI and the validator read.

    ``lo_open`` excludes ``lo`` itself (e.g. temperature > 0). ``sweep`` is a default sweep range
    for the UI ("0.3:0.9:0.1" or "2,4,8"). ``cost`` marks a knob that changes how long a job takes
    (prune's criterion, distill's steps): the Sweep page's time estimate only trusts stored jobs that share
    these knobs' values.
    """
    meta = dict(help=help, lo=lo, hi=hi, step=step, choices=choices, unit=unit, lo_open=lo_open,
                sweep=sweep, aliases=aliases, cost=cost)
    return field(default=default, metadata=meta)


def _decimals(step: float) -> int:
    return max(0, -math.floor(math.log10(step) + 1e-9)) if step and step < 1 else 0


@dataclass(frozen=True)
class Spec:
    """Base of all specs: validation from metadata, canonical rounding, dict round-trip."""

    method: ClassVar[str] = ""
    label: ClassVar[str] = ""  # plain-language name for the UI
    explain: ClassVar[str] = ""  # one line for non-engineers

    def __post_init__(self):
        for f in dataclasses.fields(self):
            m = f.metadata
            v = getattr(self, f.name)
            where = f"{self.method}.{f.name}"
            if m.get("choices") is not None:
                if v not in m["choices"] and str(v) in m["choices"]:  # "embeddings=8" parses as the int 8
                    v = str(v)
                    object.__setattr__(self, f.name, v)
                if v not in m["choices"]:
                    raise SpecError(f"{where}={v!r} is not allowed: choose one of "
                                    f"{', '.join(map(str, m['choices']))} ({m['help']})")
                continue
            if f.type in ("int", int) and not (isinstance(v, int) and not isinstance(v, bool)):
                if isinstance(v, float) and v.is_integer():
                    v = int(v)
                    object.__setattr__(self, f.name, v)
                else:
                    raise SpecError(f"{where}={v!r} must be a whole number ({m['help']})")
            if f.type in ("float", float):
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                    raise SpecError(f"{where}={v!r} must be a number ({m['help']})")
                v = float(v)
                if m.get("step"):
                    v = round(v, _decimals(m["step"]) + 2)  # 0.30000000000000004 -> 0.3
                object.__setattr__(self, f.name, v)
            lo, hi = m.get("lo"), m.get("hi")
            if lo is not None and (v < lo or (m.get("lo_open") and v == lo)) or hi is not None and v > hi:
                rng = f"{'(' if m.get('lo_open') else '['}{lo}, {hi}]"
                raise SpecError(f"{where}={v!r} is out of range: allowed {rng} {m['unit']} "
                                f"({m['help']})".replace("  ", " "))
        self.check()

    def check(self) -> None:
        """Cross-field rules; override in specs that have them."""

    @property
    def terminal(self) -> bool:
        """True when the output is not a torch module (an ONNX session, a packed file)."""
        return False

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}

    def short(self) -> str:
        """Compact text form, the same grammar the CLI's --recipe takes: ``quant(bits=4,group_size=64)``.

        Only fields that differ from their defaults are written.
        """
        fields = dataclasses.fields(self)
        args = [f"{f.name}={_text(getattr(self, f.name))}" for f in fields if getattr(self, f.name) != f.default]
        if not args:  # all defaults: still name the first knob, e.g. quant(bits=8)
            args = [f"{fields[0].name}={getattr(self, fields[0].name)}"]
        return f"{self.method}({','.join(args)})"

    def describe(self) -> str:
        """Plain words for the playground and hover text."""
        return self.short()


def _text(v) -> str:
    """A knob value as the recipe grammar writes it; a per-layer map as ``4:0.5;5:0.5`` (no commas, so the
    sweep grammar's comma still separates whole maps)."""
    return ";".join(f"{i}:{lv:g}" for i, lv in v) if isinstance(v, tuple) else str(v)


def per_layer_knob(level: str):
    """The per-layer map shared by pruning and quantization: layer index -> its own level."""
    return knob((), help=f"per-layer {level}, keyed by the layer index the model family's adapter counts "
                         f"(0 = first encoder layer), written index:level;index:level, e.g. 4:0.5;5:0.5; "
                         "layers not named take the main setting")


# ---------------------------------------------------------------- one spec per method


def recovery_knobs():
    """The recovery knobs that every pruning spec shares: the distillation-aware loss (alpha 1 = labels only)
    and the fine-tuning's learning rate."""
    return (knob(1.0, lo=0.0, hi=1.0, step=0.05, unit="fraction",
                 help="recovery loss: this share is the labels' cross-entropy, the rest the original model's "
                      "softened answers (T^2 x KL, distillation-aware recovery); 1 = labels only"),
            knob(2.0, lo=0.0, hi=20.0, step=0.5, lo_open=True, unit="",
                 help="temperature that softens the original model's answers in recovery"),
            knob(0.0, lo=0.0, hi=10.0, step=0.05, unit="",
                 help="recovery loss: add this weight x the mean squared difference between the model's hidden "
                      "states and the original's (layer by layer where layers match; 0 = off)"),
            # no step: the UI offers a text box ("5e-5,1e-4"), not a slider over 10,000 positions
            knob(5e-5, lo=0.0, hi=0.01, lo_open=True, unit="",
                 help="learning rate of the recovery fine-tuning: how far each step moves the weights"))
