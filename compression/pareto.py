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

    Rows with a missing objective are never on the frontier. Exact ties are all kept. O(n log n) for
    two or three objectives (a sweep in lexicographic order), a block-nested loop over the frontier
    for more.
    """
    c = _costs(df, objectives)
    mask = np.zeros(len(df), dtype=bool)
    ok = np.flatnonzero(~np.isnan(c).any(axis=1))
    if len(ok) == 0:
        return mask
    # exact duplicates share one verdict: they never dominate each other
    uniq, inverse = np.unique(c[ok], axis=0, return_inverse=True)  # rows in lexicographic order
    mask[ok] = _nondominated_sorted(uniq)[inverse.ravel()]
    return mask


def _nondominated_sorted(u: np.ndarray) -> np.ndarray:
    """Non-dominated rows of distinct cost rows sorted lexicographically.

    In that order a row can only be dominated by an earlier one, and an earlier row q dominates p as
    soon as q is no worse on the objectives after the first (q is no worse on the first by the order,
    and distinct rows differ somewhere)."""
    n, d = u.shape
    if d <= 1:
        return np.arange(n) == 0
    if d == 2:  # dominated iff some earlier row is no worse on the second objective
        best_before = np.minimum.accumulate(np.concatenate([[np.inf], u[:-1, 1]]))
        return u[:, 1] < best_before
    if d == 3:
        return _staircase(u[:, 1], u[:, 2])
    keep = np.zeros(n, dtype=bool)
    front = np.empty((0, d - 1))
    for i in range(n):
        if not np.any(np.all(front <= u[i, 1:], axis=1)):
            keep[i] = True
            front = np.vstack([front, u[i, 1:]])
    return keep


def _staircase(ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
    """For rows in order: is any earlier (y, z) no worse on both? Keeps the earlier rows' minimal
    staircase (y ascending, z strictly descending), so each query is one bisection."""
    import bisect

    stair_y: list[float] = []
    stair_z: list[float] = []
    keep = np.zeros(len(ys), dtype=bool)
    for i, (y, z) in enumerate(zip(ys.tolist(), zs.tolist())):
        j = bisect.bisect_right(stair_y, y)  # stair_y[:j] <= y; the lowest z among them is the last one
        if j and stair_z[j - 1] <= z:
            continue
        keep[i] = True
        if j and stair_y[j - 1] == y:  # a step at the same y with a higher z: the new row covers it
            j -= 1
        k = j  # drop the steps the new row covers: y >= its y and z >= its z
        while k < len(stair_y) and stair_z[k] >= z:
            k += 1
        stair_y[j:k] = [y]
        stair_z[j:k] = [z]
    return keep


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

    Dominated points add nothing and are dropped first, so the cost grows with the frontier, not with
    every stored row: two objectives sweep in O(n log n), three slice into two-dimensional sweeps.
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
    pts = np.unique(pts, axis=0)
    pts = pts[_nondominated_sorted(pts)]  # still in lexicographic order: the first axis ascending
    if pts.shape[1] == 2:  # on a 2-D frontier sorted by x, y falls: a sum of rectangles
        xs = np.append(pts[:, 0], ref[0])
        return float(np.sum(np.diff(xs) * (ref[1] - pts[:, 1])))
    xs = np.append(pts[:, 0], ref[0])
    if pts.shape[1] == 3:
        return _hypervolume_3d(pts, xs, ref)
    # slice along the first axis: between consecutive x values, the (d-1)-volume of points left of the cut
    vol = 0.0
    for i in range(len(pts)):
        width = xs[i + 1] - xs[i]
        if width > 0:
            vol += width * hypervolume(pts[: i + 1, 1:], ref[1:])
    return float(vol)


def _hypervolume_3d(pts: np.ndarray, xs: np.ndarray, ref: np.ndarray) -> float:
    """Slices along x as in the general case, but the 2-D area left of each cut is kept up to date as
    points arrive (a staircase in y ascending, z descending), instead of being computed again."""
    import bisect

    ry, rz = float(ref[1]), float(ref[2])
    sy: list[float] = []
    sz: list[float] = []
    area = vol = 0.0

    def width(i: int) -> float:  # how far step i reaches along y: to the next step, or to the reference
        return (sy[i + 1] if i + 1 < len(sy) else ry) - sy[i]

    for i, (y, z) in enumerate(pts[:, 1:].tolist()):
        j = bisect.bisect_right(sy, y)
        if not (j and sz[j - 1] <= z):  # a new step: the area it adds is what it covers beyond the others
            if j and sy[j - 1] == y:
                j -= 1
            k = j
            while k < len(sy) and sz[k] >= z:
                k += 1
            area -= sum(width(m) * (rz - sz[m]) for m in range(max(j - 1, 0), k))
            sy[j:k], sz[j:k] = [y], [z]
            area += sum(width(m) * (rz - sz[m]) for m in range(max(j - 1, 0), j + 1))
        vol += (xs[i + 1] - xs[i]) * area
    return float(vol)


def relative_hypervolume(df: pd.DataFrame, base_size: float, base_latency: float, majority: float,
                         size_col: str = "size_mib", latency_col: str = "lat_b1_p50_ms",
                         accuracy_col: str = "accuracy") -> float:
    """Hypervolume on (size ratio, latency ratio, accuracy) with reference (1, 1, majority accuracy)."""
    sub = df[[size_col, latency_col, accuracy_col]].dropna()
    pts = np.column_stack([sub[size_col] / base_size, sub[latency_col] / base_latency, -sub[accuracy_col]])
    return hypervolume(pts, np.array([1.0, 1.0, -majority]))
