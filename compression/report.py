"""Result rows as one DataFrame with fixed column names (the ``results --csv`` contract), and the text table.

Example::

    >>> df = results_frame(store, baseline=fp)
    >>> print(text_table(df))
"""
from __future__ import annotations

import json

import pandas as pd

from .store import Store, iso

# The fixed columns of `results --csv` (documented in the README). Units are in the names.
CSV_COLUMNS = [
    "job_id", "baseline", "baseline_name", "hardware", "method", "recipe", "description", "runtime", "kernel",
    "accuracy", "accuracy_lo", "accuracy_hi", "accuracy_label", "macro_f1", "agreement",
    "accuracy_delta", "delta_lo", "delta_hi", "test_rows",
    "size_mib", "size_bytes", "size_label", "params", "nonzero_params", "bits_per_weight",
    "lat_b1_p50_ms", "lat_b1_p90_ms", "lat_b32_p50_ms", "lat_b32_p90_ms", "batch32_pending", "latency_label",
    "base_lat_b1_p50_ms", "base_lat_b32_p50_ms", "speedup_b1", "speedup_b32", "speedup_b1_note",
    "speedup_b32_note", "other_cores_during_timing", "peak_rss_mib", "seconds_total", "seconds_compress",
    "seconds_measure", "measured_at", "host", "cpu", "load_avg_1m", "threads_intra", "threads_inter",
    "seq_len", "seed", "torch", "transformers", "onnxruntime", "git_commit", "artifact",
    # where CUDA was present on the measuring machine (empty elsewhere)
    "gpu", "gpu_lat_b1_p50_ms", "gpu_lat_b1_p90_ms", "gpu_lat_b32_p50_ms", "gpu_lat_b32_p90_ms",
    "gpu_base_lat_b1_p50_ms", "gpu_base_lat_b32_p50_ms", "gpu_speedup_b1", "gpu_speedup_b32",
    "gpu_speedup_b1_note", "gpu_speedup_b32_note", "gpu_latency_label", "gpu_note",
]


def results_frame(store: Store, baseline: str | None = None, hardware: str | None = None,
                  latest: bool = True, include_archived: bool = False) -> pd.DataFrame:
    names = {b["fingerprint"]: b["name"] for b in store.baselines()}
    rows = []
    for r in store.results(baseline=baseline, hardware=hardware, latest=latest, include_archived=include_archived):
        d = r["data"]
        ctx, labels, secs = d.get("context", {}), d.get("labels", {}), d.get("seconds", {})
        row = {k: d.get(k) for k in CSV_COLUMNS if k in d}
        row.update(job_id=r["job_id"], baseline=r["baseline"][:12], baseline_name=names.get(r["baseline"], ""),
                   hardware=r["hardware"], recipe=_recipe_name(r["recipe"]),
                   accuracy_label=labels.get("accuracy"), size_label=labels.get("size"),
                   latency_label=labels.get("latency"), gpu_latency_label=labels.get("gpu_latency"),
                   batch32_pending=bool(d.get("partial")),
                   seconds_total=secs.get("total"),
                   seconds_compress=secs.get("compress"), seconds_measure=secs.get("measure"),
                   measured_at=iso(r["created_at"]),
                   **{k: ctx.get(k) for k in ("host", "cpu", "load_avg_1m", "threads_intra", "threads_inter",
                                              "seq_len", "seed", "torch", "transformers", "onnxruntime",
                                              "git_commit")})
        rows.append(row)
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
    rows = [{"job": j["id"], "recipe": _recipe_name(j["recipe"]), "state": j["state"],
             "progress": j["progress"], "message": j["message"] or "", "error": j["error"] or "",
             "attempts": j["attempts"], "worker": j["worker"] or "", "node": j.get("node") or ""}
            for j in store.jobs(baseline=baseline, ids=ids)]
    return pd.DataFrame(rows, columns=["job", "recipe", "state", "progress", "message", "error", "attempts", "worker",
                                       "node"])


def _recipe_name(key: str) -> str:
    from .recipes import Recipe

    if key == "prepare":
        return "prepare baseline"
    if key == "[]":
        return "baseline"
    try:
        return Recipe.from_key(key).name
    except Exception:
        return json.dumps(key)
