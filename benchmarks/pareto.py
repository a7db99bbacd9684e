"""The frontier at scale: Pareto mask and hypervolume on up to 100,000 stored results (goal: mask <= 1 s
for 100,000 three-objective rows). Not a timed test.

The rows are anti-correlated (a fast setting is less accurate, a small one slower), rounded so that ties
are common: a large frontier, as real results have. Each figure is the median of ``--repeats`` runs.

    python benchmarks/pareto.py                       # writes benchmarks/out/pareto-*.csv/json
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import pandas as pd
from _common import load_note, write

from compression.pareto import hypervolume, pareto_mask
from compression.measure import _static_context

OBJ3 = {"size_mib": "min", "lat_b1_p50_ms": "min", "accuracy": "max"}
OBJ2 = {"lat_b1_p50_ms": "min", "accuracy": "max"}


def table(n: int, seed: int = 0, plane: bool = False) -> pd.DataFrame:
    """Anti-correlated rows; with ``plane`` nearly every row is on the frontier (the worst case)."""
    rng = np.random.default_rng(seed)
    if plane:
        size, lat = rng.uniform(5, 90, n), rng.uniform(2, 45, n)
        acc = 0.5 + 0.002 * size + 0.004 * lat + rng.normal(0, 0.0005, n)
        return pd.DataFrame({"size_mib": size.round(2), "lat_b1_p50_ms": lat.round(2), "accuracy": acc.round(4)})
    size = rng.uniform(5, 90, n)
    lat = 40 - 0.3 * size + rng.normal(0, 3, n)  # smaller models are... not always faster: anti-correlated
    acc = 0.5 + 0.003 * size + 0.004 * lat + rng.normal(0, 0.02, n)  # big and slow ones are more accurate
    return pd.DataFrame({"size_mib": size.round(1), "lat_b1_p50_ms": lat.round(1), "accuracy": acc.round(3)})


def timed(fn, repeats: int) -> tuple[float, object]:
    runs, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs), out


def quadratic_mask(df: pd.DataFrame, objectives: dict[str, str]) -> np.ndarray:
    """The first implementation, for the comparison row."""
    c = np.column_stack([df[k].to_numpy(float) * (1 if d == "min" else -1) for k, d in objectives.items()])
    return np.array([not np.any(np.all(c <= r, axis=1) & np.any(c < r, axis=1)) for r in c])


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for n, plane in ((1_000, False), (10_000, False), (100_000, False), (10_000, True), (100_000, True)):
        df = table(n, plane=plane)
        t3, m3 = timed(lambda: pareto_mask(df, OBJ3), args.repeats)
        t2, m2 = timed(lambda: pareto_mask(df, OBJ2), args.repeats)
        front = df[m3]
        pts = np.column_stack([front["size_mib"] / 90, front["lat_b1_p50_ms"] / 45, -front["accuracy"]])
        thv, _ = timed(lambda: hypervolume(pts, np.array([1.0, 1.0, -0.5])), 1)
        row = {"rows": n, "data": "plane: nearly all on the frontier" if plane else "anti-correlated",
               "frontier_3obj": int(m3.sum()), "mask_3obj_s": round(t3, 4),
               "frontier_2obj": int(m2.sum()), "mask_2obj_s": round(t2, 4), "hypervolume_3obj_s": round(thv, 4)}
        if n <= 10_000 and not plane:
            tq, mq = timed(lambda: quadratic_mask(df, OBJ3), 1)
            assert (mq == m3).all(), "the fast mask must equal the quadratic one"
            row["quadratic_mask_3obj_s"] = round(tq, 3)
        rows.append(row)
        print(row, flush=True)
    big = max((r for r in rows if r["rows"] == 100_000), key=lambda r: r["mask_3obj_s"])
    summary = {"cpu": _static_context()["cpu"], "load": load_note(), "rows": rows,
               "goal_mask_100k_3obj_s": 1.0, "met": big["mask_3obj_s"] <= 1.0}
    print(f"\n{summary['cpu']}, {summary['load']}: mask on 100,000 rows, 3 objectives: {big['mask_3obj_s']} s "
          f"(goal <= 1 s: {'met' if summary['met'] else 'MISSED'}); frontier {big['frontier_3obj']} rows")
    write("pareto", pd.DataFrame(rows), summary)


if __name__ == "__main__":
    main()
