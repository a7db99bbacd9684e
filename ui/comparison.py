"""The Compare page's charts and tables, and the exports (PNG, offline HTML) that must read as they are.

An export is drawn on a fixed template with room for every axis title and tick label, whatever template
Streamlit set on import; its tables carry rounded numbers.

Example::

    >>> fig = compare_figure(df, base, "speedup", latency="lat_b1")
    >>> open("compare.png", "wb").write(image(fig))
"""
from __future__ import annotations

import html

import pandas as pd
import plotly.graph_objects as go

from ui.charts import (LATENCY_NAMES, SPEEDUP_COLS, SYMBOLS, accuracy_range, fit_axes, label_col,
                       method_colors)


def ratios(df: pd.DataFrame, base: dict) -> pd.DataFrame:
    """Per result: compression ratio, speedups and accuracy change against the baseline, each labelled.

    The baseline's own speedups are exactly 1 (``charts.prepare`` sets them)."""
    out = pd.DataFrame({
        "job": df["job_id"], "method": df["method"], "recipe": df["recipe"],
        "compression ×": base["size_mib"] / df["size_mib"], "size label": df["size_label"],
        "speedup b1 ×": df["speedup_b1"], "speedup b32 ×": df["speedup_b32"], "latency label": df["latency_label"],
        "speedup note": df["speedup_b1_note"],
        "accuracy %": df["accuracy"] * 100, "change pts": df["accuracy_delta"] * 100,
        "accuracy label": df["accuracy_label"],
    })
    return out.sort_values(["method", "compression ×"]).reset_index(drop=True)


def compare_figure(df: pd.DataFrame, base: dict, against: str = "compression", colors: dict | None = None,
                   height: int = 440, latency: str = "lat_b1") -> go.Figure:
    """Accuracy against compression ratio (or speedup on a latency axis), one curve per method."""
    colors = colors or method_colors(df["method"])
    xcol = "compression" if against == "compression" else SPEEDUP_COLS[latency]
    glyph = label_col(latency) if against != "compression" else "latency_label"
    d = df.assign(compression=base["size_mib"] / df["size_mib"])
    if xcol in d:
        d[xcol] = pd.to_numeric(d[xcol], errors="coerce")
    fig = go.Figure()
    for method, g in d.groupby("method", sort=True):
        g = g.dropna(subset=[xcol, "accuracy"]).sort_values(xcol)
        mode = "lines+markers" if method != "baseline" else "markers"
        fig.add_trace(go.Scatter(x=g[xcol], y=g["accuracy"], mode=mode,
                                 name=str(method), hovertext=g["hover"], hoverinfo="text",
                                 marker=dict(color=colors.get(method, "#888"), size=10,
                                             symbol=[SYMBOLS.get(l, "circle") for l in g[glyph]])))
    title = ("compression ratio (baseline size / size, measured)" if xcol == "compression"
             else f"speedup at {LATENCY_NAMES[latency]} (same-session ratio; glyph = latency label)")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=title,
                      yaxis_title="test accuracy (measured)")
    fig.update_yaxes(tickformat=".1%", range=accuracy_range(d))
    return fit_axes(fig)


EXPORT_TEMPLATE = "plotly_white"


def for_export(fig: go.Figure) -> go.Figure:
    """A copy drawn on a fixed template with margins that hold every title and tick label: the page's
    own template is Streamlit's (set when streamlit is imported), which has no automargin."""
    out = go.Figure(fig)
    out.update_layout(template=EXPORT_TEMPLATE, margin=dict(l=20, r=20, t=50, b=20))
    return fit_axes(out)


def image(fig: go.Figure, fmt: str = "png", width: int = 1100, height: int = 600) -> bytes:
    """The figure as an image (png or svg) through kaleido, which finds Debian's Chromium by itself."""
    return for_export(fig).to_image(format=fmt, width=width, height=height)


def rounded(t: pd.DataFrame) -> pd.DataFrame:
    """A table's numbers as text a reader takes in: 4 decimals for a hypervolume, 2 for every other
    fraction, "n/a" where nothing was measured; whole-number columns (job ids) stay as they are."""
    out = t.copy()
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            fmt = "{:,.4f}" if "hypervolume" in c else "{:,.2f}"
            out[c] = ["n/a" if pd.isna(v) else fmt.format(v) for v in out[c]]
    return out


def html_report(title: str, figures: list[go.Figure], tables: list[tuple[str, pd.DataFrame]], note: str = "") -> str:
    """A standalone HTML page: plotly.js embedded once (works offline), then the figures and rounded tables."""
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
             "<body style='font-family:sans-serif'>", f"<h1>{html.escape(title)}</h1><p>{html.escape(note)}</p>"]
    for i, fig in enumerate(figures):
        parts.append(for_export(fig).to_html(include_plotlyjs=True if i == 0 else False, full_html=False,
                                             default_width="100%"))
    for name, t in tables:
        parts.append(f"<h2>{html.escape(name)}</h2>" + rounded(t).to_html(index=False, na_rep="n/a"))
    return "\n".join(parts + ["</body></html>"])
