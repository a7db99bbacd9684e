"""Plain-English names for settings, built from the specs' own metadata (for people who are not engineers).

A method's name starts from a short phrase with its main knob filled in; every other knob that differs
from its default adds words, looked up by the knob's name (so a knob shared by several methods reads
the same everywhere). A knob or a method with no words here still gets a name, from its field
metadata (unit, choices) and the spec's label, so a newly catalogued method needs no edit to be named.
The recipe key stays what the details, the CSV and the CLI show.

Example::

    >>> plain_name("quant(kernel=ort)")
    '8-bit weights on ONNX Runtime'
    >>> plain_name("prune(criterion=wanda)")
    'half of the weights zeroed (Wanda)'
    >>> plain_name("prune(sparsity=0.5)>quant(bits=8)")
    'a chain: half of the weights zeroed, then 8-bit weights'
"""
from __future__ import annotations

import dataclasses

from .recipes import Recipe
from .specs import Spec

# The headline of each catalogued method, its main knob in braces.
PHRASES = {
    "quant": "{bits}-bit weights",
    "cast": "16-bit numbers ({dtype})",
    "prune": "{sparsity} of the weights zeroed",
    "runtime": "the same weights run by {engine}",
    "lowrank": "weight matrices split into thin pairs",
    "distill": "a smaller {student_layers}-layer student model",
    "heads": "{fraction} of the attention heads removed",
    "neurons": "{fraction} of the feed-forward neurons removed",
    "layers": "{fraction} of the layers removed",
}

# Words for a knob that differs from its default, by knob name: a dict maps choice values, a string
# formats the value ({v}: as given, {pct}: as a share). An empty string says nothing for that value.
KNOB_WORDS: dict[str, dict[str, str] | str] = {
    "kernel": {"ort": "on ONNX Runtime", "quanto": "on Quanto", "torch": "on PyTorch's int8 kernel",
               "rtn": "(stored small, run at full size)", "auto": "", "ort-fused": "on ONNX Runtime, layers fused",
               "ort-static": "on ONNX Runtime, calibrated in advance", "nbits": "on ONNX Runtime's low-bit kernel",
               "openvino": "on OpenVINO"},
    "algorithm": {"gptq": "(rounding errors corrected, GPTQ)", "hqq": "(HQQ rounding)", "rtn": ""},
    "act_order": {"on": "(important inputs first)", "off": ""},
    "clip": {"mse": "with outliers clipped", "none": ""},
    "smooth": "with large input values evened out first (SmoothQuant {v})",
    "criterion": {"wanda": "(Wanda)", "magnitude": "(by size)", "sparsegpt": "(SparseGPT)", "obc": "(OBC)"},
    "calibration": {"sequential": "layer by layer", "block": ""},
    "refit": {"on": "then the kept ones solved exactly", "off": ""},
    "allocation": {"owl": "and fewer in layers with outliers",
                   "measured": "and fewer zeros in the blocks where they change the answers most", "uniform": ""},
    "recover_hidden": "also matching hidden states",
    "recover_lr": "at learning rate {v}",
    "recover_temperature": "at temperature {v}",
    "temperature": "at temperature {v}",
    "alpha": "with {pct} weight on the labels",
    "scope": {"layer": "the same share in every layer", "global": ""},
    "pattern": {"2:4": "in a 2:4 pattern", "4:8": "in a 4:8 pattern", "unstructured": ""},
    "schedule": {"poly": "gradually", "none": ""},
    "scheme": {"asym": "with zero points", "sym": ""},
    "embeddings": {"8": "and 8-bit word embeddings", "4": "and 4-bit word embeddings", "none": ""},
    "unseen": {"2": "(unseen words' rows in 2 bits)", "drop": "(unseen words' rows dropped)", "same": ""},
    "width_init": {"random": "started at random", "teacher": ""},
    "importance": {"norm": "(by weight size)", "grad": "(by gradients)"},
    "group_size": "in groups of {v}",
    "recover_steps": "then {v} steps of retraining",
    "recover_alpha": "copying the original's answers",
    "initial_sparsity": "starting from {pct}",
    "rank": "(rank {v})",
    "rank_fraction": "({pct} of full rank)",
    "energy": "(keeping {pct} of the energy)",
    "width": "with {v}-wide layers",
    "steps": "trained {v} steps",
    "layer_map": "copying layers {v}",
    "hidden_mse": "also matching hidden states",
}


# A knob's value inside a method's phrase, where the value as written is jargon.
VALUE_WORDS: dict[str, dict[str, str]] = {
    "engine": {"ort": "ONNX Runtime", "ort-fused": "ONNX Runtime with fused layers", "openvino": "OpenVINO"},
}

# Words that open a clause of their own, after a comma: "half of the weights zeroed, then 200 steps..."
_CLAUSES = ("then ", "trained ", "copying ", "starting ", "also ")


def plain_name(recipe: Recipe | str) -> str:
    """A setting in plain words: a Recipe, its key (JSON) or its name (``quant(bits=4)``); ``baseline`` and
    the empty recipe are the original model. Text that is no recipe comes back unchanged."""
    if isinstance(recipe, str):
        try:
            recipe = Recipe.from_key(recipe) if recipe.lstrip().startswith("[") else Recipe.parse(recipe)
        except Exception:
            return recipe
    names = [step_name(s) for s in recipe.steps]
    if not names:
        return "the original model"
    return names[0] if len(names) == 1 else "a chain: " + ", then ".join(names)


def step_name(spec: Spec) -> str:
    """One spec in plain words: its method's phrase, then words for each knob set away from its default."""
    fields = {f.name: f for f in dataclasses.fields(spec)}
    phrase = PHRASES.get(spec.method)
    if phrase is None:  # a method with no phrase here: its label and its first knob
        first = next(iter(fields), None)
        phrase = spec.label.lower() or spec.method
        if first:
            phrase += f" ({_generic(fields[first], getattr(spec, first))})"
        used = {first}
    else:
        used = {n for n in fields if "{" + n + "}" in phrase}
        phrase = phrase.format(**{n: _value(fields[n], getattr(spec, n)) for n in used})
    extra = [_knob_words(fields[n], getattr(spec, n)) for n in fields
             if n not in used and getattr(spec, n) != fields[n].default]
    return "".join([phrase, *[(", " if e.startswith(_CLAUSES) else " ") + e for e in extra if e]])


def _value(f: dataclasses.Field, v) -> str:
    """A knob value inside a phrase: shares as "half" or a percentage, everything else as written."""
    if f.metadata.get("unit") == "fraction" and isinstance(v, float):
        return "half" if v == 0.5 else _pct(v)
    return VALUE_WORDS.get(f.name, {}).get(str(v), str(v))


def _pct(v: float) -> str:
    return f"{v * 100:.3g}%"


def _knob_words(f: dataclasses.Field, v) -> str:
    words = KNOB_WORDS.get(f.name)
    if isinstance(words, dict):
        return words.get(str(v), _generic(f, v))
    if isinstance(words, str):
        return words.format(v=v, pct=_pct(v) if isinstance(v, (int, float)) else v)
    return _generic(f, v)


def _generic(f: dataclasses.Field, v) -> str:
    """Words from the field's own metadata: its name, then the value with its unit."""
    unit = f.metadata.get("unit") or ""
    if unit == "fraction" and isinstance(v, (int, float)):
        return f"{f.name.replace('_', ' ')} {_pct(v)}"
    if unit == "bits":
        return f"{v}-bit {f.name.replace('_', ' ')}".replace("bits ", "")
    if unit and unit.rstrip("s") in f.name:  # passes=2 with the unit "passes": "2 passes"
        return f"{v} {unit}"
    return f"{f.name.replace('_', ' ')} {v}{' ' + unit if unit else ''}"
