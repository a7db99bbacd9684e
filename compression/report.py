"""Result rows as one DataFrame with fixed column names (the ``results --csv`` contract), and the text table.

Example::

    >>> df = results_frame(store, baseline=fp)
    >>> print(text_table(df))
"""
from __future__ import annotations

import json

import pandas as pd

from .measurement import MEASUREMENT_COLUMNS, csv_row_of_stored
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
    """A job's recipe key in the CLI's grammar (``quant(bits=4)``); preparation and the baseline by name."""
    if key == PREPARE:
        return "prepare baseline"
    if key == BASELINE_RECIPE:
        return "baseline"
    try:
        return Recipe.from_key(key).name
    except Exception:
        return json.dumps(key)
