"""Result rows as one DataFrame with fixed column names (the ``results --csv`` contract), and the text table.

Example::

    >>> df = results_frame(store, baseline=fp)
    >>> print(text_table(df))
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .measurement import MEASUREMENT_COLUMNS, csv_row_of_stored
from .evals import analysis_name, is_analysis
from .pareto import best_feasible
from .plain import plain_name
from .recipes import Recipe
from .store import BASELINE_RECIPE, PREPARE, Store, iso

# The fixed columns of `results --csv` (documented in the README): the job's own, then the Measurement's
# (compression/measurement.py declares each one; units are in the names).
JOB_COLUMNS = ["job_id", "baseline", "baseline_name", "hardware", "recipe", "measured_at"]
CSV_COLUMNS = JOB_COLUMNS + MEASUREMENT_COLUMNS


def results_frame(store: Store, baseline: str | None = None, hardware: str | None = None,
                  latest: bool = True, include_archived: bool = False) -> pd.DataFrame:
    names = {b["fingerprint"]: b["name"] for b in store.baselines()}
    rows = []
    for r in store.results(baseline=baseline, hardware=hardware, latest=latest, include_archived=include_archived):
        rows.append({"job_id": r["job_id"], "baseline": r["baseline"][:12], "baseline_name": names.get(r["baseline"], ""),
                     "hardware": r["hardware"], "recipe": r["data"].get("recipe_name") or recipe_name(r["recipe"]),
                     "measured_at": iso(r["created_at"]), **csv_row_of_stored(r["data"])})
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def text_table(df: pd.DataFrame) -> str:
    """The terminal view: accuracy ± CI, size, latency p50/p90 at batch 1 and 32; each with its label."""
    if df.empty:
        return "(no results yet)"
    out = pd.DataFrame({
        "job": df["job_id"],
        "recipe": df["recipe"],
        "accuracy % (95% CI)": [f"{a * 100:.2f} [{lo * 100:.1f}-{hi * 100:.1f}] {lab}" for a, lo, hi, lab in
                                zip(df["accuracy"], df["accuracy_lo"], df["accuracy_hi"], df["accuracy_label"])],
        "size MiB": [f"{s:.1f} {lab}" for s, lab in zip(df["size_mib"], df["size_label"])],
        "b1 ms p50/p90": [f"{a:.1f}/{b:.1f}" for a, b in zip(df["lat_b1_p50_ms"], df["lat_b1_p90_ms"])],
        "b32 ms p50/p90": ["pending" if p else _pair(a, b) for a, b, p in
                           zip(df["lat_b32_p50_ms"], df["lat_b32_p90_ms"], df["batch32_pending"])],
        "latency": df["latency_label"],
        "speedup b1": df["speedup_b1_note"].fillna(""),
        "runtime": df["runtime"],
    })
    return out.to_string(index=False)


def _pair(a, b) -> str:
    return "-" if a is None or pd.isna(a) else f"{a:.1f}/{b:.1f}"


def jobs_frame(store: Store, ids: list[int] | None = None, baseline: str | None = None) -> pd.DataFrame:
    rows = [{"job": j["id"], "recipe": recipe_name(j["recipe"]), "state": j["state"],
             "progress": j["progress"], "message": j["message"] or "", "error": j["error"] or "",
             "attempts": j["attempts"], "worker": j["worker"] or "", "node": j.get("node") or ""}
            for j in store.jobs(baseline=baseline, ids=ids)]
    return pd.DataFrame(rows, columns=["job", "recipe", "state", "progress", "message", "error", "attempts", "worker",
                                       "node"])


def recipe_name(key: str) -> str:
    """A job's recipe key in the CLI's grammar (``quant(bits=4)``); preparation, the baseline and a sensitivity
    run or search (an analysis job) by name."""
    if is_analysis(key):
        return analysis_name(key)
    if key == PREPARE:
        return "prepare baseline"
    if key == BASELINE_RECIPE:
        return "baseline"
    try:
        return Recipe.from_key(key).name
    except Exception:
        return json.dumps(key)


# ---------------------------------------------------------------- the recommendation (best feasible, guarded)

@dataclass(frozen=True)
class Pick:
    """The recommended row of a results frame and how it was chosen.

    ``index`` is a label of the frame, or None when no row qualifies. ``guard`` is "noise" (accuracy within
    the original's noise), "budget" (within the user's loss in points) or "none"; ``contended`` says only
    timings taken under contention met the constraints; ``candidates`` counts the rows that qualified."""

    index: Any
    guard: str
    contended: bool
    candidates: int
    budget_pts: float | None = None


def keeps_accuracy(df: pd.DataFrame, budget_pts: float | None = None) -> pd.Series:
    """Rows whose accuracy stays within the original's noise, or within ``budget_pts`` points of it.

    Within noise: the paired 95% CI of the change reaches 0 (a CI wholly above 0 is better still). A
    budget compares the change itself: ``budget_pts=1`` keeps rows that lose at most 1 point. The
    original's own row always qualifies; a row with no paired change is judged by its accuracy against
    the original's (its CI must reach it, or its loss must fit the budget)."""
    base = df.loc[df["method"] == "baseline", "accuracy"]
    base_acc = float(base.iloc[-1]) if len(base) else float("nan")
    delta = pd.to_numeric(df["accuracy_delta"], errors="coerce").fillna(df["accuracy"] - base_acc)
    if budget_pts is not None:
        ok = delta >= -budget_pts / 100 - 1e-12
    else:
        hi = pd.to_numeric(df["delta_hi"], errors="coerce").fillna(df["accuracy_hi"] - base_acc)
        ok = hi >= 0
    return ok.fillna(False) | (df["method"] == "baseline")


def recommend(df: pd.DataFrame, *, max_size: float | None = None, max_latency: float | None = None,
              min_accuracy: float | None = None, objective: str = "latency", guard: bool = True,
              budget_pts: float | None = None, latency_col: str = "lat_b1_p50_ms",
              label_col: str = "latency_label", size_col: str = "size_mib") -> Pick:
    """The best feasible setting: by default the fastest that meets every constraint and keeps accuracy
    within the original's noise (or within ``budget_pts``); ``guard=False`` drops that guard.

    Previews never qualify. Contended timings qualify only when no clean one meets the constraints.
    Ties go to higher accuracy, then to smaller size (:func:`compression.pareto.best_feasible`).

    Example: ``recommend(df, budget_pts=1).index`` -> the row of the fastest setting losing at most 1 point."""
    ok = (df["accuracy_label"] != "preview") & df[[size_col, latency_col, "accuracy"]].notna().all(axis=1)
    if guard:  # judged on the whole frame: the original's row may itself fail a constraint below
        ok &= keeps_accuracy(df, budget_pts)
    rows = df[ok]
    for col, limit, sign in ((size_col, max_size, 1), (latency_col, max_latency, 1), ("accuracy", min_accuracy, -1)):
        if limit is not None:
            rows = rows[sign * rows[col] <= sign * limit]
    how = ("budget" if budget_pts is not None else "noise") if guard else "none"
    clean = rows[rows[label_col] != "contended"]
    pool = clean if not clean.empty else rows  # a contended timing only where no clean one qualifies
    i = best_feasible(pool, size_col=size_col, latency_col=latency_col, objective=objective) if len(pool) else None
    return Pick(i, how, i is not None and clean.empty, len(pool), budget_pts if guard else None)


def disagreements(store: Store, job_id: int, base_job_id: int) -> tuple[int, int] | None:
    """(test rows where a setting's answer differs from the original's, test rows), from the stored
    per-row predictions; None when either has none (a preview, a row from before predictions)."""
    a, b = store.latest_result(int(job_id)) or {}, store.latest_result(int(base_job_id)) or {}
    p, q = a.get("predictions"), b.get("predictions")
    if not p or not q or len(p) != len(q):
        return None
    return sum(x != y for x, y in zip(p, q)), len(p)


def _times(r: float, more: str, less: str, same: str) -> str:
    """'3.8× smaller', '3.5× slower', or ``same`` within 5%."""
    if r >= 1.05:
        return f"{r:.1f}× {more}"
    if r <= 1 / 1.05:
        return f"{1 / r:.1f}× {less}"
    return same


def _num(v) -> float:
    v = pd.to_numeric(v, errors="coerce")
    return float(v) if pd.notna(v) else float("nan")


def _speedup_col(latency_col: str) -> str:
    """The same-session ratio stored beside a latency column: lat_b1_p50_ms -> speedup_b1 (its verdict in words
    is that name + "_note")."""
    return latency_col.replace("lat_", "speedup_").replace("_p50_ms", "")


def speed_ratio(row: dict, base: dict | None, latency_col: str = "lat_b1_p50_ms",
                label_col: str = "latency_label") -> float:
    """How many times faster than the original: the same-session ratio stored with the row where there is
    one (``speedup_b1``), else the two stored medians; NaN where the row was timed under contention (its
    stored note says "not comparable"), or the original was and no same-session ratio exists."""
    if row.get(label_col) == "contended":
        return float("nan")
    s = _num(row.get(_speedup_col(latency_col)))
    if s == s and s > 0:
        return s
    if (base or {}).get(label_col) == "contended":
        return float("nan")
    return _num((base or {}).get(latency_col)) / _num(row.get(latency_col))


_LATENCY_WORDS = {"simulated": " (simulated: no fast kernel here)", "contended": " (timed while the computer was busy)",
                  "estimated": " (estimated)", "preview": " (a quick first timing)"}


def recommendation_text(df: pd.DataFrame, pick: Pick, *, flips: tuple[int, int] | None = None,
                        where: str = "on this computer", noun: str = "test sentences", objective: str = "latency",
                        latency_col: str = "lat_b1_p50_ms", label_col: str = "latency_label",
                        limits: str = "", base: dict | None = None) -> tuple[str, str]:
    """(headline, why) in plain words for the pick, e.g. ("**8-bit weights on ONNX Runtime**: 3.8× smaller,
    2.1× faster on this computer, 81.3% vs 81.6% accurate; 27 of 1,275 test reviews get a different
    answer.", "Picked as the fastest of 9 stored settings whose accuracy stays within ...").

    ``flips`` is (rows answered differently, test rows) from :func:`disagreements`; ``limits`` the user's
    constraints in words ("at most 50 MiB"); ``base`` the original's row where ``df`` has none."""
    within = f" within your limits ({limits})" if limits else ""
    if pick.guard == "budget":
        keep = f" that lose at most {pick.budget_pts:g} point{'s' * (pick.budget_pts != 1)} of accuracy"
    else:
        keep = " whose accuracy stays within the original's measurement noise" if pick.guard == "noise" else ""
    if pick.index is None:
        looser = " or allow a bigger accuracy loss" if pick.guard != "none" else ""
        return f"No stored setting meets these constraints; loosen one of them{looser}.", ""
    r = df.loc[pick.index].to_dict()
    b = df[df["method"] == "baseline"]
    base = b.iloc[-1].to_dict() if len(b) else base
    best = {"latency": "fastest", "accuracy": "most accurate", "size": "smallest"}[objective]
    why = f"Picked as the {best} of {pick.candidates:,} stored setting{'s' * (pick.candidates != 1)}{within}{keep}."
    if pick.contended:
        why += " Only timings taken while the computer was busy meet these limits."
    if r["method"] == "baseline":
        better = {"latency": "faster", "accuracy": "more accurate", "size": "smaller"}[objective]
        return (f"**Keep the original model**: no stored setting{within}{keep} is {better}. "
                f"It is {r['accuracy'] * 100:.1f}% accurate ({r['accuracy_label']}).", why)
    label = _LATENCY_WORDS.get(str(r.get(label_col)), "")
    parts = [f"**{plain_name(r['recipe'])}**: "]
    if base is not None:
        speed = speed_ratio(r, base, latency_col, label_col)
        if speed != speed:
            speed = f"speed not comparable {where} (timed while the computer was busy)"
        elif r.get(_speedup_col(latency_col) + "_note") == "no measurable change":  # the timing's own verdict
            speed = f"no measurable change in speed {where}{label}"
        else:
            speed = _times(speed, "faster", "slower", "about as fast") + f" {where}{label}"
        parts.append(_times(_num(base["size_mib"]) / _num(r["size_mib"]), "smaller", "bigger", "about the same size")
                     + f", {speed}, {r['accuracy'] * 100:.1f}% vs {base['accuracy'] * 100:.1f}% accurate")
    else:
        parts.append(f"{r['accuracy'] * 100:.1f}% accurate")
    if flips is None and _num(r.get("agreement")) == _num(r.get("agreement")) and _num(r.get("test_rows")) > 0:
        n = int(r["test_rows"])
        flips = (round((1 - _num(r["agreement"])) * n), n)
    if flips is not None:
        parts.append(f"; {flips[0]:,} of {flips[1]:,} {noun} get a different answer")
    return "".join(parts) + ".", why


def engineering_text(df: pd.DataFrame, pick: Pick, *, axis: str = "batch 1", latency_col: str = "lat_b1_p50_ms",
                     label_col: str = "latency_label", objective: str = "latency", limits: str = "") -> str:
    """The pick for an engineer: the recipe key, the numbers with their labels and the guard's CI."""
    if pick.index is None:
        return "**Best feasible: none**"
    r = df.loc[pick.index]
    what = {"latency": f"fastest at {axis} ({r[latency_col]:.2f} ms {r[label_col]})",
            "accuracy": f"most accurate ({r['accuracy'] * 100:.2f}% {r['accuracy_label']})",
            "size": f"smallest ({r['size_mib']:.2f} MiB {r['size_label']})"}[objective]
    guard = {"noise": "whose paired 95% CI of the accuracy change includes 0 (or lies above it)",
             "budget": f"whose accuracy change is ≥ −{pick.budget_pts or 0:g} pts", "none": "(accuracy unguarded)"}
    ci = ""
    if _num(r.get("accuracy_delta")) == _num(r.get("accuracy_delta")):
        ci = f"; change {r['accuracy_delta'] * 100:+.2f} pts [{r['delta_lo'] * 100:+.1f}, {r['delta_hi'] * 100:+.1f}]"
    tail = " (only contended timings meet these constraints)" if pick.contended else ""
    return (f"**Best feasible: {r['recipe']}** — {what} of {pick.candidates} stored settings meeting "
            f"{limits or 'no constraints'} {guard[pick.guard]}{ci}; {r['accuracy'] * 100:.2f}% accuracy "
            f"{r['accuracy_label']}, {r['size_mib']:.2f} MiB {r['size_label']}{tail}.")
