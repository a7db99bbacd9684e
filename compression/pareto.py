"""Pareto logic in plain numpy: non-dominated mask, best feasible point, hypervolume.

Example::

    >>> df = pd.DataFrame({"size": [1, 2, 3], "acc": [0.7, 0.9, 0.8]})
    >>> pareto_mask(df, {"size": "min", "acc": "max"}).tolist()
    [True, True, False]
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def _costs(df: pd.DataFrame, objectives: dict[str, str]) -> np.ndarray:
    """Every objective turned into a cost to minimise."""
    cols = []
    for col, direction in objectives.items():
        if direction not in ("min", "max"):
            raise ValueError(f"direction for {col!r} must be 'min' or 'max', got {direction!r}")
        v = df[col].to_numpy(dtype=float)
        cols.append(v if direction == "min" else -v)
    return np.column_stack(cols) if cols else np.zeros((len(df), 0))


def pareto_mask(df: pd.DataFrame, objectives: dict[str, str]) -> np.ndarray:
    """True for rows no other row dominates (at least as good on all objectives, better on one).

    Rows with a missing objective are never on the frontier. Exact ties are all kept.
    """
    c = _costs(df, objectives)
    ok = ~np.isnan(c).any(axis=1)
    mask = np.zeros(len(df), dtype=bool)
    idx = np.flatnonzero(ok)
    sub = c[idx]
    for k, i in enumerate(idx):
        others = sub
        dominated = np.any(np.all(others <= sub[k], axis=1) & np.any(others < sub[k], axis=1))
        mask[i] = not dominated
    return mask


def best_feasible(df: pd.DataFrame, *, max_size: float | None = None, max_latency: float | None = None,
                  min_accuracy: float | None = None, size_col: str = "size_mib", latency_col: str = "lat_b1_p50_ms",
                  accuracy_col: str = "accuracy", objective: str = "latency") -> int | None:
    """Index label of the best row meeting every constraint, or None.

    The objective ``latency`` picks the fastest; ties go to higher accuracy, then smaller size.
    ``accuracy`` and ``size`` objectives rank by that column first, with the same tie-breaks.
    """
    ok = df[[size_col, latency_col, accuracy_col]].notna().all(axis=1)
    if max_size is not None:
        ok &= df[size_col] <= max_size
    if max_latency is not None:
        ok &= df[latency_col] <= max_latency
    if min_accuracy is not None:
        ok &= df[accuracy_col] >= min_accuracy
    cand = df[ok]
    if cand.empty:
        return None
    keys = {"latency": [(latency_col, True), (accuracy_col, False), (size_col, True)],
            "accuracy": [(accuracy_col, False), (latency_col, True), (size_col, True)],
            "size": [(size_col, True), (accuracy_col, False), (latency_col, True)]}[objective]
    ranked = cand.sort_values([k for k, _ in keys], ascending=[a for _, a in keys], kind="stable")
    return ranked.index[0]


def hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Volume dominated by ``points`` (costs to minimise) and bounded by ``ref``; exact, by slicing.

    Fine for the tens of points a sweep has.
    """
    pts = np.asarray(points, dtype=float)
    ref = np.asarray(ref, dtype=float)
    if pts.size == 0:
        return 0.0
    pts = pts[np.all(pts < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    if pts.shape[1] == 1:
        return float(ref[0] - pts[:, 0].min())
    # slice along the first axis: between consecutive x values, the (d-1)-volume of points left of the cut
    order = np.argsort(pts[:, 0])
    pts = pts[order]
    xs = np.append(pts[:, 0], ref[0])
    vol = 0.0
    for i in range(len(pts)):
        width = xs[i + 1] - xs[i]
        if width > 0:
            vol += width * hypervolume(pts[: i + 1, 1:], ref[1:])
    return float(vol)


def relative_hypervolume(df: pd.DataFrame, base_size: float, base_latency: float, majority: float,
                         size_col: str = "size_mib", latency_col: str = "lat_b1_p50_ms",
                         accuracy_col: str = "accuracy") -> float:
    """Hypervolume on (size ratio, latency ratio, accuracy) with reference (1, 1, majority accuracy)."""
    sub = df[[size_col, latency_col, accuracy_col]].dropna()
    pts = np.column_stack([sub[size_col] / base_size, sub[latency_col] / base_latency, -sub[accuracy_col]])
    return hypervolume(pts, np.array([1.0, 1.0, -majority]))
