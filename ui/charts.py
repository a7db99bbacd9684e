"""Pure chart functions: a results DataFrame (``compression.api.results_frame`` columns) in, a Plotly figure out.

Nothing here imports Streamlit, so every chart is testable on its own. Every number a chart shows
carries its label (measured, simulated, contended, estimated); simulated latencies get their own
glyph, and contended latencies are left off the frontier.

Example::

    >>> fig = tradeoff_figure(df, x="lat_b1", y="accuracy", refs={"majority": 0.56, "tfidf": 0.79})
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from compression.pareto import best_feasible, pareto_mask, relative_hypervolume
from ui.marks import failed, frontier_path, log_axis, passes, shared_spots

# axis key -> (column, title, label column, direction)
AXES = {
    "lat_b1": ("lat_b1_p50_ms", "latency at batch 1, median (ms)", "latency_label", "min"),
    "lat_b32": ("lat_b32_p50_ms", "latency at batch 32, median (ms)", "latency_label", "min"),
    "gpu_b1": ("gpu_lat_b1_p50_ms", "GPU latency at batch 1, median (ms)", "gpu_latency_label", "min"),
    "gpu_b32": ("gpu_lat_b32_p50_ms", "GPU latency at batch 32, median (ms)", "gpu_latency_label", "min"),
    "size": ("size_mib", "size on disk (MiB)", "size_label", "min"),
    "params": ("nonzero_params", "nonzero parameters", "params_label", "min"),
    "accuracy": ("accuracy", "test accuracy", "accuracy_label", "max"),
}
LATENCY_AXES = ("lat_b1", "lat_b32", "gpu_b1", "gpu_b32")
LATENCY_NAMES = {"lat_b1": "batch 1", "lat_b32": "batch 32", "gpu_b1": "GPU batch 1", "gpu_b32": "GPU batch 32"}
SPEEDUP_COLS = {"lat_b1": "speedup_b1", "lat_b32": "speedup_b32", "gpu_b1": "gpu_speedup_b1",
                "gpu_b32": "gpu_speedup_b32"}  # same-session ratios to the baseline, per latency axis
_LABEL_OF = {col: lab for col, _, lab, _ in AXES.values() if lab.endswith("latency_label")}  # latency column -> label
SYMBOLS = {"measured": "circle", "simulated": "diamond", "contended": "x", "estimated": "triangle-up",
           "preview": "circle-open"}  # a preview is drawn hollow until its full measurement replaces it
PALETTE = qualitative.Plotly + qualitative.D3


def method_colors(methods) -> dict[str, str]:
    """A stable colour per method name; the baseline is always dark grey."""
    names = sorted({m for m in methods if m and m != "baseline"})
    out = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(names)}
    out["baseline"] = "#333333"
    return out


def latency_axes(df: pd.DataFrame) -> list[str]:
    """The latency axes this frame has numbers for: the CPU's always, the GPU's where CUDA measured some."""
    gpu = [k for k in ("gpu_b1", "gpu_b32") if AXES[k][0] in df and pd.to_numeric(df[AXES[k][0]], errors="coerce")
           .notna().any()]
    return ["lat_b1", "lat_b32"] + gpu


def label_col(latency: str) -> str:
    """The label column that goes with a latency axis (the CPU's and the GPU's are labelled apart)."""
    return AXES[latency][2] if latency in LATENCY_AXES else "latency_label"


def _num(v, fmt: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def hover_text(r) -> str:
    """The recipe, its plain-language description and every number with its label."""
    lat = r.get("latency_label") or "n/a"
    lines = [f"<b>{r.get('recipe')}</b> (job {r.get('job_id')})", str(r.get("description") or ""),
             f"accuracy {_num(r.get('accuracy', np.nan) * 100, '.2f')}% "
             f"[{_num(r.get('accuracy_lo', np.nan) * 100, '.1f')}–{_num(r.get('accuracy_hi', np.nan) * 100, '.1f')}]"
             f" {_accuracy_label(r)}",
             f"size {_num(r.get('size_mib'), '.2f')} MiB {r.get('size_label')}"
             f", {_num(r.get('bits_per_weight'), '.1f')} bits/weight",
             f"latency b1 {_num(r.get('lat_b1_p50_ms'), '.2f')} ms (p90 {_num(r.get('lat_b1_p90_ms'), '.2f')}) {lat}",
             ("latency b32 pending: being measured now" if r.get("batch32_pending") else
              f"latency b32 {_num(r.get('lat_b32_p50_ms'), '.1f')} ms "
              f"(p90 {_num(r.get('lat_b32_p90_ms'), '.1f')}) {lat}"),
             f"speedup b1: {r.get('speedup_b1_note') or 'n/a'} ({lat})",
             f"nonzero params {_num(r.get('nonzero_params'), ',.0f')} {r.get('params_label', 'measured')}",
             f"runtime {r.get('runtime')}, kernel {r.get('kernel')}"]
    gpu = r.get("gpu")
    if isinstance(gpu, str) and gpu:
        glab = r.get("gpu_latency_label") or "n/a"
        if isinstance(r.get("gpu_note"), str) and r["gpu_note"]:
            lines.append(f"GPU ({gpu}): {r['gpu_note']}")
        else:
            lines.append(f"GPU ({gpu}) latency b1 {_num(r.get('gpu_lat_b1_p50_ms'), '.2f')} ms, "
                         f"b32 {_num(r.get('gpu_lat_b32_p50_ms'), '.2f')} ms {glab}; "
                         f"speedup b1: {r.get('gpu_speedup_b1_note') or 'n/a'} ({glab})")
    if r.get("accuracy_delta") is not None and not pd.isna(r.get("accuracy_delta")):
        lines.insert(3, f"change vs baseline {r['accuracy_delta'] * 100:+.2f} pts "
                        f"[{r['delta_lo'] * 100:+.1f}, {r['delta_hi'] * 100:+.1f}] measured")
    return "<br>".join(lines)


def _accuracy_label(r) -> str:
    lab = r.get("accuracy_label")
    return f"preview (n={_num(r.get('test_rows'), ',.0f')}, the full measurement follows)" if lab == "preview" else str(lab)


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """Add the columns the charts use: params label, hover text, compression ratio and speedup."""
    df = df.copy()
    if "params_label" not in df:
        df["params_label"] = "measured"
    for c in ("accuracy", "size_mib", "lat_b1_p50_ms", "lat_b32_p50_ms", "nonzero_params", "gpu_lat_b1_p50_ms",
              "gpu_lat_b32_p50_ms"):
        if c in df:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    # the baseline's job times the unchanged model against itself in one session: its ratio (1.04, say) is
    # run-to-run noise, and its speedup over itself is 1 by definition
    base = df["method"] == "baseline"
    for col in SPEEDUP_COLS.values():
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
            df.loc[base & df[col].notna(), col] = 1.0
            if f"{col}_note" in df:
                df[f"{col}_note"] = df[f"{col}_note"].astype(object)
                df.loc[base & df[col].notna(), f"{col}_note"] = "1.00x (the baseline itself)"
    df["hover"] = [hover_text(r) for r in df.to_dict("records")]
    return df


def final(df: pd.DataFrame) -> pd.Series:
    """Rows measured by the full protocol: a preview never enters the frontier, the best or the hypervolume."""
    return df["accuracy_label"] != "preview"


def eligible(df: pd.DataFrame, cols: list[str]) -> pd.Series:
    """Rows that may stand on a frontier: numbers present, not a preview; a latency taken under contention
    is left off."""
    ok = df[cols].notna().all(axis=1) & final(df)
    for c in cols:
        if c in _LABEL_OF:
            ok &= df[_LABEL_OF[c]] != "contended"
    return ok


def frontier(df: pd.DataFrame, x: str, y: str) -> pd.Series:
    """Pareto membership on two axes (keys of AXES), as a boolean Series aligned with df."""
    (xc, _, _, xd), (yc, _, _, yd) = AXES[x], AXES[y]
    ok = eligible(df, [xc, yc])
    mask = pd.Series(False, index=df.index)
    if ok.any():
        mask[ok] = pareto_mask(df[ok], {xc: xd, yc: yd})
    return mask


def best(df: pd.DataFrame, max_mib=None, max_ms=None, min_acc=None, latency: str = "lat_b1",
         objective: str = "latency") -> tuple[int | None, bool]:
    """Index of the best feasible row, and whether it had to use a contended latency to exist."""
    lat = AXES[latency][0]
    kw = dict(max_size=max_mib, max_latency=max_ms, min_accuracy=min_acc, latency_col=lat, objective=objective)
    df = df[final(df)]
    clean = df[df[label_col(latency)] != "contended"]
    i = best_feasible(clean, **kw) if not clean.empty else None
    if i is not None:
        return i, False
    i = best_feasible(df, **kw) if not df.empty else None
    return i, i is not None


def why(df: pd.DataFrame, i, max_mib=None, max_ms=None, min_acc=None, latency: str = "lat_b1",
        objective: str = "latency", contended: bool = False) -> str:
    """One sentence on why the highlighted setting wins."""
    lat_col = AXES[latency][0]
    if i is None and not df[lat_col].notna().any():
        return (f"None of the chosen settings has a latency at {LATENCY_NAMES.get(latency, latency)}; pick another "
                "latency axis or other methods.")
    if i is None:
        return "No stored setting meets these constraints; loosen one of them."
    r = df.loc[i]
    cons = [f"≤ {max_mib:g} MiB" if max_mib is not None else "", f"≤ {max_ms:g} ms" if max_ms is not None else "",
            f"≥ {min_acc * 100:g}% accuracy" if min_acc is not None else ""]
    cons = ", ".join(c for c in cons if c) or "no constraints"
    n = int(((df[lat_col].notna()) & (df["size_mib"].notna())).sum())
    what = {"latency": f"the fastest ({r[lat_col]:.2f} ms {r[label_col(latency)]})",
            "accuracy": f"the most accurate ({r['accuracy'] * 100:.2f}% {r['accuracy_label']})",
            "size": f"the smallest ({r['size_mib']:.2f} MiB {r['size_label']})"}[objective]
    tail = " (only contended timings meet these constraints)" if contended else ""
    return (f"{r['recipe']} wins: of the settings meeting {cons}, it is {what} among {n} stored, at "
            f"{r['accuracy'] * 100:.2f}% accuracy {r['accuracy_label']} and {r['size_mib']:.2f} MiB "
            f"{r['size_label']}{tail}.")


def accuracy_range(df: pd.DataFrame, refs: dict | None = None) -> list[float]:
    """A y-range that holds every point, its interval and the reference lines, with a little room."""
    vals = pd.concat([df[c] for c in ("accuracy", "accuracy_lo", "accuracy_hi") if c in df]).dropna().tolist()
    vals += [v for v in (refs or {}).values() if v is not None]
    if not vals:
        return [0.0, 1.0]
    lo, hi = min(vals), max(vals)
    pad = max(0.01, 0.08 * (hi - lo))
    return [max(0.0, lo - pad), min(1.02, hi + pad)]


def _size_markers(s: pd.Series) -> np.ndarray:
    v = s.fillna(s.min() if s.notna().any() else 1.0).to_numpy(dtype=float)
    top = v.max() if len(v) and v.max() > 0 else 1.0
    return 10 + 30 * np.sqrt(v / top)


MAX_DRAWN = 2000  # points a browser draws and hovers quickly; past that, a fixed sample of the non-frontier ones


def drawn(df: pd.DataFrame, on: pd.Series, keep=(), limit: int = MAX_DRAWN) -> pd.Index:
    """The rows a chart draws: all of them up to ``limit``; past it every frontier row, the rows in ``keep``
    (the best, the live knob's) and a seeded sample of the rest, the same rows at every rerun."""
    if len(df) <= limit:
        return df.index
    must = df.index[on.reindex(df.index, fill_value=False).to_numpy()].union(
        pd.Index([k for k in keep if k is not None and k in df.index]))
    rest = df.index.difference(must)
    n = max(0, limit - len(must))
    sample = rest[np.sort(np.random.default_rng(0).choice(len(rest), size=min(n, len(rest)), replace=False))]
    return df.index[df.index.isin(must.union(sample))]


def tradeoff_figure(df: pd.DataFrame, x: str = "lat_b1", y: str = "accuracy", bubble: str | None = None,
                    refs: dict | None = None, best_index=None, live=(), colors: dict | None = None,
                    error_bars: bool = True, height: int = 520, constraints: dict | None = None,
                    latency: str | None = None) -> go.Figure:
    """One 2-D trade-off chart: a trace per method, the frontier as a staircase, the best point as a star.

    ``df`` is ``prepare``'d; ``refs`` holds majority/tfidf accuracies drawn as reference lines; ``live`` is
    a list of job ids from the live knob, ringed beside the frontier; ``constraints`` (``max_mib``,
    ``max_ms`` on ``latency``, ``min_acc``) dims the points that fail them. Small markers are drawn over
    big ones, and a latency axis spanning more than 10× is logarithmic.
    """
    (xc, xt, _, _), (yc, yt, _, yd) = AXES[x], AXES[y]
    on_latency = x in LATENCY_AXES or y in LATENCY_AXES
    # only a chart with a latency on it wears latency glyphs: elsewhere a contended timing changes nothing
    glyph = label_col(x if x in LATENCY_AXES else y) if on_latency else "accuracy_label"
    latency = latency or (x if x in LATENCY_AXES else y if y in LATENCY_AXES else "lat_b1")
    colors = colors or method_colors(df["method"])
    fig = go.Figure()
    on = frontier(df, x, y) if len(df) else pd.Series(dtype=bool)
    shown = drawn(df, on, keep=[best_index, *df.index[df["job_id"].isin(list(live))]])
    if len(shown) < len(df):
        fig.add_annotation(text=f"showing {len(shown):,} of {len(df):,} settings: every frontier point, the rest "
                                f"a fixed sample", xref="paper", yref="paper", x=0, y=1.06, showarrow=False,
                           xanchor="left", font=dict(size=11, color="#555"))
    d = df.loc[shown].copy()
    logs = (x in LATENCY_AXES and log_axis(d[xc]), y in LATENCY_AXES and log_axis(d[yc]))
    d["_size"] = _size_markers(d["size_mib"]) if bubble else 11.0
    cons = {k: v for k, v in (constraints or {}).items() if v is not None}
    d["_ok"] = passes(d, **cons, lat_col=AXES[latency][0])
    d["_hover"] = d["hover"]
    fails = [failed(r, **cons, lat_col=AXES[latency][0]) for r in d.to_dict("records")] if cons else [""] * len(d)
    radius = d["_size"].to_numpy() / 2  # the star (26 px) and the live ring (30 px) cover more than their point
    radius = np.where(d.index == best_index, np.maximum(radius, 13), radius)
    radius = np.where(d["job_id"].isin(list(live)), np.maximum(radius, 15), radius)
    also = shared_spots(d, xc, yc, radius, logs, accuracy_range(df, refs) if yc == "accuracy" else None,
                        limit=MAX_DRAWN)
    d["_hover"] = [(f"<i>fails your constraints: {f}</i><br>" if f else "") + h +
                   (f"<br><i>also at this spot: {', '.join(a[:6])}{' …' if len(a) > 6 else ''}</i>" if a else "")
                   for h, f, a in zip(d["hover"], fails, also)]
    # bigger markers first, so a small one is drawn over a big one; one trace per method and size layer
    d["_layer"] = -np.round(d["_size"].to_numpy() / 6)
    legend_done, rank = set(), {m: i for i, m in enumerate(sorted(set(d["method"])))}  # legend stays alphabetical
    for (_, method), g in d.sort_values("_size", ascending=False, kind="stable").groupby(["_layer", "method"],
                                                                                          sort=True):
        err = None
        if error_bars and yc == "accuracy" and g["accuracy_lo"].notna().any():
            err = dict(type="data", array=(g["accuracy_hi"] - g["accuracy"]).to_numpy(dtype=float),
                       arrayminus=(g["accuracy"] - g["accuracy_lo"]).to_numpy(dtype=float), thickness=1, width=2)
        fig.add_trace(go.Scatter(
            x=g[xc], y=g[yc], mode="markers", name=str(method), error_y=err, customdata=g["job_id"],
            hovertext=g["_hover"], hoverinfo="text", legendgroup=str(method), showlegend=method not in legend_done,
            legendrank=rank[method],
            marker=dict(color=colors.get(method, "#888"), size=g["_size"].to_numpy(),
                        symbol=[SYMBOLS.get(lab, "circle") for lab in g[glyph]],
                        opacity=np.where(g["_ok"], 0.85, 0.2),
                        line=dict(width=[2.5 if f else 0.5 for f in on[g.index]], color="black"))))
        legend_done.add(method)
    f = df[on]
    if len(f):
        worst_y = d[yc].min() if yd == "max" else d[yc].max()
        xs, ys = frontier_path(f, xc, yc, d[xc].max(), worst_y)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="Pareto frontier", hoverinfo="skip",
                                 line=dict(color="black", width=1.5, dash="dot")))
    for lab in sorted(set(d[glyph].dropna())) if on_latency else ():
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"{lab} latency",
                                 marker=dict(symbol=SYMBOLS.get(lab, "circle"), color="#999", size=10),
                                 legendgroup="glyphs"))
    if cons and not d["_ok"].all():
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="faint: fails your constraints",
                                 marker=dict(symbol="circle", color="#999", size=10, opacity=0.2)))
    live_rows = df[df["job_id"].isin(list(live))]
    if len(live_rows):
        fig.add_trace(go.Scatter(x=live_rows[xc], y=live_rows[yc], mode="markers", name="live knob",
                                 hovertext=d["_hover"].reindex(live_rows.index).fillna(live_rows["hover"]), hoverinfo="text", customdata=live_rows["job_id"],
                                 marker=dict(symbol="circle-open", size=30, color="#d62728", line=dict(width=3))))
    if best_index is not None and best_index in df.index:
        b = df.loc[[best_index]]
        fig.add_trace(go.Scatter(x=b[xc], y=b[yc], mode="markers", name=f"best feasible: {b['recipe'].iloc[0]}",
                                 hovertext=d["_hover"].reindex(b.index).fillna(b["hover"]), hoverinfo="text",
                                 customdata=b["job_id"], marker=dict(symbol="star", size=26, color="gold", line=dict(width=2, color="black"))))
    if refs and yc == "accuracy":
        for key, name in (("majority", "majority class"), ("tfidf", "TF-IDF + logistic regression")):
            if refs.get(key) is not None:
                fig.add_hline(y=refs[key], line=dict(dash="dash", color="#888", width=1),
                              annotation_text=f"{name} {refs[key] * 100:.1f}% (measured)",
                              annotation_position="bottom right")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=xt, yaxis_title=yt,
                      legend=dict(orientation="v"), clickmode="event+select", hovermode="closest")
    fit_axes(fig)
    if logs[0]:
        fig.update_xaxes(type="log", title_text=f"{xt}, log scale")
    if logs[1]:
        fig.update_yaxes(type="log", title_text=f"{yt}, log scale")
    if yc == "accuracy":
        fig.update_yaxes(tickformat=".1%", range=accuracy_range(df, refs))
    return fig


def caption(x: str, y: str, bubble: bool = False) -> str:
    """What the glyphs, bubbles, bars and frontier of one 2-D view mean, true for that view."""
    on_latency = x in LATENCY_AXES or y in LATENCY_AXES
    parts = (["Glyphs: ● measured latency, ◆ simulated (no fast kernel here), ✕ contended (left off the frontier), "
              "○ preview (a sample of the test split; left off until its full measurement lands)."] if on_latency else
             ["No latency on this view, so the frontier uses every fully measured setting, contended timings "
              "included; ○ preview (a sample of the test split) stays off until its full measurement lands."])
    parts.append("Dotted staircase = Pareto frontier (nothing stored is better on both axes); faint points fail "
                 "your constraints.")
    if bubble:
        parts.append("Bubble area = size on disk; small bubbles are drawn over big ones.")
    if y == "accuracy":
        parts.append("Error bars = 95% bootstrap CI of accuracy.")
    return " ".join(parts + ["Click a point for details."])


def fit_axes(fig: go.Figure) -> go.Figure:
    """Axis titles and tick labels that fit inside the figure whatever the template (Streamlit's, set on
    import, has no automargin: an export then cut the y labels down to "%" and laid the x title over the
    ticks)."""
    fig.update_xaxes(automargin=True, title_standoff=12)
    fig.update_yaxes(automargin=True, title_standoff=10)
    return fig


def figure_3d(*args, **kw) -> go.Figure:
    """The 3-D view (``ui.charts3d.figure_3d``), reachable from here like every other chart."""
    from ui.charts3d import figure_3d as draw  # charts3d builds on this module's helpers
    return draw(*args, **kw)


def hypervolumes(df: pd.DataFrame, base: dict, majority: float, latency: str = "lat_b1") -> pd.DataFrame:
    """Relative hypervolume per method (size ratio, latency ratio, accuracy; ref (1, 1, majority)).

    The latency ratio is 1 / the same-session speedup, never a ratio to the stored baseline row's time."""
    d = df.assign(latency_ratio=1 / pd.to_numeric(df[SPEEDUP_COLS[latency]], errors="coerce"))
    rows = []
    for method, g in d[d["method"] != "baseline"].groupby("method"):
        clean = g[(g[label_col(latency)] != "contended") & final(g)]
        rows.append({"method": method, "settings": len(g), "hypervolume": relative_hypervolume(
            clean, base["size_mib"], 1.0, majority, latency_col="latency_ratio"),
            "left out (contended or preview)": len(g) - len(clean)})
    return pd.DataFrame(rows, columns=["method", "settings", "hypervolume", "left out (contended or preview)"])
