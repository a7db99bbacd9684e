"""Where a chart's marks go: which points fail the user's constraints, when a latency axis turns
logarithmic, which markers sit on one another, and the frontier's staircase.

Pure numpy and pandas on ``charts.prepare``'d frames; ``ui.charts`` and ``ui.charts3d`` draw with them.

Example::

    >>> passes(df, max_mib=40, lat_col="lat_b1_p50_ms")   # a boolean Series: False is drawn faint
    >>> log_axis(df["lat_b1_p50_ms"])              # True once the values span more than 10x
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def passes(df: pd.DataFrame, max_mib=None, max_ms=None, min_acc=None, lat_col: str = "lat_b1_p50_ms") -> pd.Series:
    """Whether each row meets the user's constraints (the same test ``best`` applies); a missing number fails
    only the constraint that needs it."""
    ok = pd.Series(True, index=df.index)
    for col, limit, keep in (("size_mib", max_mib, "le"), (lat_col, max_ms, "le"),
                             ("accuracy", min_acc, "ge")):
        if limit is not None:
            v = pd.to_numeric(df[col], errors="coerce")
            ok &= (v <= limit) if keep == "le" else (v >= limit)
    return ok


def failed(r, max_mib=None, max_ms=None, min_acc=None, lat_col: str = "lat_b1_p50_ms") -> str:
    """Which constraints a row fails, in words ("" when it meets them all)."""
    out = [f"bigger than {max_mib:g} MiB" if max_mib is not None and not r["size_mib"] <= max_mib else "",
           f"slower than {max_ms:g} ms" if max_ms is not None and not r[lat_col] <= max_ms else "",
           f"below {min_acc * 100:g}% accuracy" if min_acc is not None and not r["accuracy"] >= min_acc else ""]
    return ", ".join(o for o in out if o)


def log_axis(values) -> bool:
    """A latency axis goes logarithmic once its positive values span more than 10×: one slow outlier
    (bf16 on a CPU without bf16 units) would otherwise press every other point against the edge."""
    v = pd.to_numeric(pd.Series(values), errors="coerce")
    v = v[v > 0]
    return len(v) > 1 and v.max() / v.min() > 10


PLOT_PX = (640, 400)  # the smallest plot area (w, h) the page gives a 2-D chart; overlaps are judged at this scale


def _pixels(v: pd.Series, log: bool, span_px: float, lim=None) -> np.ndarray:
    v = pd.to_numeric(v, errors="coerce").to_numpy(dtype=float)
    if log:
        v = np.log10(np.where(v > 0, v, np.nan))
    fin = v[np.isfinite(v)]
    lo, hi = lim if lim is not None else ((fin.min(), fin.max()) if len(fin) else (0.0, 1.0))
    return ((v - lo) / ((hi - lo) or 1) * span_px).astype(np.float32)  # (n, n) distances follow: half the memory


def shared_spots(d: pd.DataFrame, xc: str, yc: str, radius: np.ndarray, logs=(False, False),
                 yrange=None, limit: int = 2000) -> list[list]:
    """Per row, the other recipes its marker sits on: Plotly's closest-point hover favours the smaller marker
    within its radius, so a point under (or on top of) another would never show its own tooltip; the
    tooltip of the one that does names it. ``yrange`` is the y-axis range when it is fixed (accuracy)."""
    out = [[] for _ in range(len(d))]
    if len(d) > limit:  # (n, n) distances: past a browser's point budget, skipped
        return out
    px = _pixels(d[xc], logs[0], PLOT_PX[0])
    py = _pixels(d[yc], logs[1], PLOT_PX[1], yrange)
    dist = np.hypot(px[:, None] - px[None, :], py[:, None] - py[None, :])  # (n, n) in pixels
    near = np.nan_to_num(dist, nan=np.inf) <= radius[:, None] * 1.5 + 3  # row j's marker covers column i
    np.fill_diagonal(near, False)
    recipes = d["recipe"].astype(str).tolist()
    for j, i in zip(*np.nonzero(near)):
        out[j].append(recipes[i])
    return out


def frontier_path(f: pd.DataFrame, xc: str, yc: str, x_edge: float, y_edge: float):
    """The frontier as a staircase through its points (what is reachable), from the worst edge of y to the
    worst edge of x: one point still draws as a corner, never as nothing."""
    f = f.sort_values(xc)
    xs, ys = [f[xc].iloc[0]], [y_edge]
    for k, (x, y) in enumerate(zip(f[xc], f[yc])):
        if k:
            xs.append(x)
            ys.append(ys[-1])
        xs.append(x)
        ys.append(y)
    xs.append(max(x_edge, xs[-1]))
    ys.append(ys[-1])
    return xs, ys
