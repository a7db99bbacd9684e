"""The 3-D view: latency, size (MiB or parameters) and accuracy in one rotatable chart.

It carries what the 2-D views carry: the chosen size axis, the best setting, the frontier (on all three
objectives), faint points for settings that fail the constraints, a log latency axis past 10×, and a
job id on every point so a click opens its details.

Example::

    >>> fig = figure_3d(df, "lat_b1", size="params", best_index=i, constraints={"max_mib": 40})
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from compression.pareto import pareto_mask
from ui.charts import AXES, eligible, label_col, method_colors
from ui.marks import failed, log_axis, passes

# Scatter3d has no star or triangle: its own glyph per label, a preview hollow as in 2-D
SYMBOLS_3D = {"measured": "circle", "simulated": "diamond", "contended": "x", "estimated": "square",
              "preview": "circle-open"}


def frontier_3d(df: pd.DataFrame, latency: str = "lat_b1", size: str = "size") -> pd.Series:
    """Pareto membership on latency, size and accuracy together (contended timings and previews left off)."""
    lc, sc = AXES[latency][0], AXES[size][0]
    ok = eligible(df, [lc, sc, "accuracy"])
    on = pd.Series(False, index=df.index)
    if ok.any():
        on[ok] = pareto_mask(df[ok], {lc: "min", sc: "min", "accuracy": "max"})
    return on


def figure_3d(df: pd.DataFrame, latency: str = "lat_b1", colors: dict | None = None, height: int = 600,
              size: str = "size", best_index=None, live=(), constraints: dict | None = None) -> go.Figure:
    """Latency, size and accuracy in one rotatable view: frontier points ringed, the best one marked, points
    failing ``constraints`` faint; ``customdata`` is the job id, so a click selects a setting."""
    (lc, lt, _, _), (sc, st_, _, _) = AXES[latency], AXES[size]
    colors = colors or method_colors(df["method"])
    on = frontier_3d(df, latency, size)
    cons = {k: v for k, v in (constraints or {}).items() if v is not None}
    ok = passes(df, **cons, lat_col=lc)
    fig = go.Figure()
    for method, g in df.groupby("method", sort=True):
        fails = [failed(r, **cons, lat_col=AXES[latency][0]) for r in g.to_dict("records")] if cons else [""] * len(g)
        # a 3-D trace takes one opacity: the failing points of a method go in a faint trace of their own
        for passing in (True, False):
            m = (ok[g.index] == passing).to_numpy()
            if not m.any():
                continue
            h = g[m]
            fig.add_trace(go.Scatter3d(
                x=h[lc], y=h[sc], z=h["accuracy"], mode="markers", name=str(method), legendgroup=str(method),
                showlegend=passing or not ok[g.index].any(), customdata=h["job_id"], hoverinfo="text",
                hovertext=[(f"<i>fails your constraints: {f}</i><br>" if f else "") + t
                           for t, f in zip(h["hover"], [f for f, k in zip(fails, m) if k])],
                opacity=0.9 if passing else 0.2,
                marker=dict(size=[8 if f else 5 for f in on[h.index]], color=colors.get(method, "#888"),
                            symbol=[SYMBOLS_3D.get(lab, "circle") for lab in h[label_col(latency)]],
                            line=dict(width=1, color="black"))))
    f = df[on]
    if len(f):
        fig.add_trace(go.Scatter3d(x=f[lc], y=f[sc], z=f["accuracy"], mode="markers", hoverinfo="skip",
                                   name="Pareto frontier (latency, size and accuracy)",
                                   marker=dict(size=13, symbol="circle-open", color="black", line=dict(width=2))))
    live_rows = df[df["job_id"].isin(list(live))]
    if len(live_rows):
        fig.add_trace(go.Scatter3d(x=live_rows[lc], y=live_rows[sc], z=live_rows["accuracy"], mode="markers",
                                   name="live knob", hovertext=live_rows["hover"], hoverinfo="text",
                                   customdata=live_rows["job_id"],
                                   marker=dict(size=16, symbol="circle-open", color="#d62728")))
    if best_index is not None and best_index in df.index:
        b = df.loc[[best_index]]
        fig.add_trace(go.Scatter3d(x=b[lc], y=b[sc], z=b["accuracy"], mode="markers+text", text=["★ best"],
                                   textposition="top center", textfont=dict(size=14, color="#8a6d00"),
                                   name=f"best feasible: {b['recipe'].iloc[0]}", hovertext=b["hover"],
                                   hoverinfo="text", customdata=b["job_id"],
                                   marker=dict(size=11, symbol="diamond", color="gold",
                                               line=dict(width=2, color="black"))))
    log = log_axis(df[lc])
    # room below the scene: with no bottom margin the tick labels of the front axes were cut off
    fig.update_layout(height=height, margin=dict(l=10, r=0, t=30, b=40), clickmode="event+select",
                      scene=dict(xaxis=dict(title=lt + (", log scale" if log else ""), type="log" if log else None,
                                            dtick=1 if log else None),  # powers of ten only: minor labels collide
                                 yaxis=dict(title=st_), zaxis=dict(title="test accuracy", tickformat=".1%"),
                                 camera=dict(eye=dict(x=1.9, y=1.9, z=1.2))))  # further out: the corners stay in view
    return fig


def caption_3d() -> str:
    """What the 3-D view shows, and how to reach a setting's details from it."""
    return ("Drag to rotate. Ringed: on the frontier of all three at once (no stored setting is faster, smaller and "
            "as accurate); gold ◆ ★ best: the best setting under your constraints; faint: fails them; "
            "◆ simulated latency, ✕ contended, ○ preview. A 3-D chart sends no clicks to the page (Streamlit passes "
            "clicks only from 2-D charts): pick a setting under \"details for\", which starts at the best.")
