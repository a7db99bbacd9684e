"""Widgets built from spec field metadata (``compression.api.knobs``): a new method needs no UI code.

Example::

    >>> values = knob_values("quant")          # {"bits": [2, 4, 8], "kernel": ["auto"], ...}
    >>> recipes = api.expand_recipes("quant", values)
"""
from __future__ import annotations

import statistics

import streamlit as st

from compression import api


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


def estimate_seconds(df, method: str, recipes=()) -> tuple[float | None, str]:
    """Worker seconds for these settings of a method, and where that number comes from, in words.

    Each setting is matched to this method's stored jobs that share its values of the knobs that decide how long
    a job takes (``knob(cost=True)``: prune's criterion, distill's steps...); their median is measured here. Where
    no stored job shares them, the method's other jobs give an estimate that says which values were never run
    here. A post-training method never run here is estimated from the other post-training methods' jobs; a method
    that trains gets no estimate until one of its own jobs lands, since training takes far longer than anything
    else's timing says. Without settings (``recipes``) it speaks for one job of any setting."""
    if df is None or df.empty or "seconds_total" not in df:
        return None, "no estimate: nothing has run here yet"
    n = len(recipes) or 1
    own = df[df["method"] == method][["recipe", "seconds_total"]].dropna()
    if own.empty:
        if not _post_training(method):
            return None, (f"no estimate: {method} trains and has not run here yet, "
                          "so other methods' times do not carry over")
        fast = {m for m in df["method"].unique() if m != "baseline" and _post_training(m)}
        vals = df[df["method"].isin(fast)]["seconds_total"].dropna().tolist()
        if not vals:
            return None, "no estimate: no post-training method has run here yet"
        per = statistics.median(vals)
        return per * n, (f"{_at(per)} (estimated from the median of {_jobs(len(vals))} of other post-training methods "
                         f"here: {', '.join(sorted(fast))}; {method} has not run here yet)")
    cost = [k["name"] for k in api.knobs(method) if k.get("cost")]
    stored = [(_cost_values(name, method, cost), s) for name, s in own.itertuples(index=False)]
    groups: dict[tuple, int] = {}
    for r in recipes:
        v = tuple(getattr(r.steps[-1], c) for c in cost)
        groups[v] = groups.get(v, 0) + 1
    if not groups:
        groups = {None: 1}
    seen = [{sv[i] for sv, _ in stored if sv is not None} for i in range(len(cost))]
    # the knobs worth naming: those whose value differs between the stored jobs or between this sweep's settings
    varied = [i for i in range(len(cost)) if len(seen[i] | {v[i] for v in groups if v is not None}) > 1]
    total, words = 0.0, []
    for v, count in groups.items():
        same = [s for sv, s in stored if v is None or sv == v]
        if same:
            per = statistics.median(same)
            named = ", ".join(f"{cost[i]}={v[i]}" for i in varied) if v is not None else ""
            why = f"measured here: the median of {len(same)} {method} job{'s' * (len(same) != 1)}" + (
                f" with {named}" if named else "")
        else:
            # the nearest stored jobs: those sharing the most of these knobs' values
            shared = [(sum(a == b for a, b in zip(sv, v)) if sv is not None else -1, s) for sv, s in stored]
            best = max(k for k, _ in shared)
            per = statistics.median(s for k, s in shared if k == best)
            near = sum(k == best for k, _ in shared)
            new = [i for i in varied if v[i] not in seen[i]] or varied
            named = ", ".join(f"{cost[i]}={v[i]}" for i in new)
            why = (f"estimated: no {method} job with {named} has run here, and that changes how long a job takes; "
                   f"this is the median of the {near} {method} job{'s' * (near != 1)} closest to it"
                   + (f", sharing {best} of its {len(cost)} time-deciding knobs" if best >= 0 else ""))
        total += per * count
        words.append((count, per, why))
    if len(words) == 1:
        return total, f"{_at(words[0][1])} ({words[0][2]})"
    return total, "; ".join(f"{c} at {per:.1f} s each ({why})" for c, per, why in words)


def _at(per: float) -> str:
    return f"at {per:.1f} s per job"


def _cost_values(name: str, method: str, cost: list[str]) -> tuple | None:
    """A stored job's values of the knobs that decide its time; None where its recipe no longer reads."""
    try:
        steps = api.Recipe.parse(name).steps
    except Exception:  # an old store's recipe name the grammar no longer reads: it still counts, unmatched
        return None
    return tuple(getattr(steps[-1], c) for c in cost) if steps and steps[-1].method == method else None


def _jobs(n: int) -> str:
    return f"{n} job{'s' * (n != 1)}"


def _post_training(method: str) -> bool:
    try:
        return api.entry(method).post_training
    except api.SpecError:
        return False


def settings(n: int) -> str:
    """'1 setting' / '3 settings'."""
    return f"{n} setting{'s' * (n != 1)}"


def fmt_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    return f"{s / 60:.1f} min" if s < 5400 else f"{s / 3600:.1f} h"


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
