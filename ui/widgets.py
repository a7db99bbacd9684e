"""Widgets built from spec field metadata (``compression.api.knobs``): a new method needs no UI code.

Example::

    >>> values = knob_values("quant")          # {"bits": [2, 4, 8], "kernel": ["auto"], ...}
    >>> recipes = api.expand_recipes("quant", values)
"""
from __future__ import annotations

import streamlit as st

from compression import api
from compression.estimate import estimate_seconds, fmt_seconds  # noqa: F401 (the Sweep page calls them here)


def method_names() -> dict[str, str]:
    """method -> 'Label: one line for non-engineers', in catalogue order."""
    return {t.method: f"{t.label or t.method}" for t in api.methods()}


def explain(method: str) -> str:
    for t in api.methods():
        if t.method == method:
            return t.explain
    return ""


def _help(k: dict) -> str:
    unit = f" ({k['unit']})" if k.get("unit") else ""
    rng = f" Range {k['lo']}–{k['hi']}." if k.get("lo") is not None and k.get("hi") is not None else ""
    return f"{k.get('help', '')}{unit}.{rng}"


def _defaults(k: dict) -> list:
    if k.get("sweep"):
        try:
            return api.parse_values(k["sweep"], k["type"])
        except api.SpecError:
            pass
    return [k["default"]]


def choice_label(value) -> str:
    """A knob choice as the lists show it: an optional runtime this machine lacks says so (choosing it is refused
    with the command that installs it)."""
    return f"{value} (not installed here)" if api.optional_missing(str(value)) else str(value)


def knob_widget(method: str, k: dict, key: str) -> list:
    """One knob's sweep values: a multiselect for choices and small int ranges, a range slider plus step
    for floats, and a list/range text box otherwise."""
    label, help_ = f"{k['name'].replace('_', ' ')}{' (' + k['unit'] + ')' if k.get('unit') else ''}", _help(k)
    if k["name"] == "per_layer":
        return [per_layer_table(label, key, help_)]
    if k.get("choices"):
        default = [v for v in _defaults(k) if v in k["choices"]] or [k["default"]]  # its sweep, if it has one
        return st.multiselect(label, list(k["choices"]), default=default, key=key, help=help_, format_func=choice_label)
    lo, hi, step = k.get("lo"), k.get("hi"), k.get("step")
    if k["type"] is int and lo is not None and hi is not None and hi - lo <= 16:
        opts = list(range(int(lo), int(hi) + 1))
        default = [v for v in _defaults(k) if v in opts] or [k["default"]]
        return st.multiselect(label, opts, default=default, key=key, help=help_)
    if k["type"] is float and lo is not None and hi is not None and step:
        d = _defaults(k)
        a, b = st.slider(label, float(lo), float(hi), (float(min(d)), float(max(d))), step=float(step),
                         key=key, help=help_)
        guess = (d[1] - d[0]) if len(d) > 1 else float(step)
        s = st.number_input(f"{label}: step", min_value=float(step), max_value=float(hi - lo) or float(step),
                            value=float(round(guess, 6)), step=float(step), key=key + ":step", format="%g")
        return api.parse_values(f"{a}:{b}:{s}", float) if b > a else [a]
    text = st.text_input(label, ",".join(map(str, _defaults(k))), key=key,
                         help=help_ + " Write a list (2,4,8) or an inclusive range start:stop:step.")
    return api.parse_values(text, k["type"])


def per_layer_table(label: str, key: str, help_: str = "") -> str:
    """A per-layer map as an editable table (layer index -> level), one row per layer named; its recipe text
    ``4:0.5;5:0.5`` (empty: every layer takes the main setting). A bad row is refused by the spec's check."""
    import pandas as pd

    st.caption(f"{label}: one row per layer that differs from the main setting (layer 0 = the first encoder layer)")
    rows = st.data_editor(pd.DataFrame({"layer": pd.Series(dtype="Int64"), "level": pd.Series(dtype="float")}),
                          num_rows="dynamic", key=key, hide_index=True,
                          column_config={"layer": st.column_config.NumberColumn("layer index", min_value=0, step=1),
                                         "level": st.column_config.NumberColumn("level", help=help_)})
    pairs = rows.dropna()
    return ";".join(f"{int(i)}:{float(lv):g}" for i, lv in zip(pairs["layer"], pairs["level"]))


def knob_values(method: str, advanced: bool = False) -> dict[str, list]:
    """Widgets for a method's knobs: those with a default sweep range always, the rest under 'more knobs'."""
    ks = api.knobs(method)
    main = [k["name"] for k in ks if k.get("sweep")] or [ks[0]["name"]]
    values = {}
    for k in ks:
        if k["name"] in main or advanced:
            values[k["name"]] = knob_widget(method, k, key=f"knob:{method}:{k['name']}")
    return values


def settings(n: int) -> str:
    """'1 setting' / '3 settings'."""
    return f"{n} setting{'s' * (n != 1)}"


def live_slider(method: str, key: str, refused: str | None = None):
    """The live knob's slider (released -> a value), built from the knob's metadata; None if no such knob.

    Which knob is live is the method's catalogue entry's choice (``api.live_knob``). A method refused for this
    model (``api.refusal``) is greyed out, with the reason as its tooltip."""
    name = api.live_knob(method)
    k = next((k for k in api.knobs(method) if k["name"] == name), None)
    if k is None:
        return None, None
    label = f"{method}: {name.replace('_', ' ')}{' (' + k['unit'] + ')' if k.get('unit') else ''}"
    if k.get("choices"):
        return name, st.select_slider(label, list(k["choices"]), value=k["default"], key=key, help=refused or _help(k),
                                      disabled=bool(refused), format_func=choice_label)
    start = k["default"]
    if start == k.get("lo") and k.get("sweep"):  # e.g. rank_fraction 0 means "unset": start inside the sweep
        start = _defaults(k)[0]
    if k["type"] is int:
        return name, st.slider(label, int(k["lo"]), int(k["hi"]), int(start), step=int(k.get("step") or 1),
                               key=key, help=refused or _help(k), disabled=bool(refused))
    return name, st.slider(label, float(k["lo"]), float(k["hi"]), float(start),
                           step=float(k.get("step") or 0.05), key=key, help=refused or _help(k), disabled=bool(refused))


def live_grid(method: str) -> list:
    """Every value the live knob's slider can take (what prefetch measures ahead, nearest first)."""
    name = api.live_knob(method)
    k = next((k for k in api.knobs(method) if k["name"] == name), None)
    if k is None:
        return []
    if k.get("choices"):
        return list(k["choices"])
    step = k.get("step") or (1 if k["type"] is int else 0.05)
    n = int(round((k["hi"] - k["lo"]) / step)) + 1
    if n > 2000:  # a wide integer knob: prefetch only makes sense on a grid a slider can show
        return []
    return [k["type"](round(k["lo"] + i * step, 6)) for i in range(n)]
