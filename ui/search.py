"""The Search page's pieces: the sensitivity heatmap and the trials chart (pure DataFrame -> figure), and the
live panel that follows an analysis job (its progress, a Stop button).

Example::

    >>> fig = heatmap(api.sensitivity_frame(store, fp, "prune")[0], base)
    >>> fig = trials_figure(api.search_trials(store, job_id), base_accuracy=0.82, max_drop=1.0)
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go


def heatmap(df: pd.DataFrame, base: dict | None, method: str) -> go.Figure:
    """Units x levels -> validation accuracy drop (points), with the baseline's validation accuracy and its noise
    band in the title; cells not scored yet are blank."""
    grid = df.pivot(index="unit", columns="level", values="drop").reindex(df["unit"].unique())
    lo = df.pivot(index="unit", columns="level", values="drop_lo").reindex(grid.index)
    hi = df.pivot(index="unit", columns="level", values="drop_hi").reindex(grid.index)
    unit = {"prune": "sparsity", "quant": "bits"}.get(method, "level")
    text = [[("" if np.isnan(v) else f"{v:.1f}") for v in row] for row in grid.to_numpy()]
    hover = [[(f"{u}, {unit} {lv}: not scored yet" if np.isnan(grid.at[u, lv]) else
               f"{u}, {unit} {lv}: drop {grid.at[u, lv]:.2f} points (95% CI {lo.at[u, lv]:.2f} to "
               f"{hi.at[u, lv]:.2f}), measured on validation") for lv in grid.columns] for u in grid.index]
    fig = go.Figure(go.Heatmap(z=grid.to_numpy(), x=[str(c) for c in grid.columns], y=list(grid.index), text=text,
                               texttemplate="%{text}", hovertext=hover, hoverinfo="text", colorscale="Reds",
                               zmin=0, colorbar={"title": "drop (points)"}))
    band = ""
    if base:
        band = (f"baseline {100 * base['accuracy']:.1f}% on validation (95% CI {100 * base['accuracy_lo']:.1f}"
                f"–{100 * base['accuracy_hi']:.1f}%, {base['rows']} rows): drops inside ±"
                f"{50 * (base['accuracy_hi'] - base['accuracy_lo']):.1f} points are within noise")
    fig.update_layout(title={"text": f"Accuracy drop when one layer alone is compressed ({method}, measured on "
                                     f"validation)<br><sup>{band}</sup>"},
                      xaxis_title=unit, yaxis_title="unit (encoder layer)", yaxis_autorange="reversed",
                      height=140 + 40 * len(grid), margin={"t": 80})
    return fig


def trials_figure(trials: pd.DataFrame, base_accuracy: float | None, max_drop: float,
                  chosen: str | None = None) -> go.Figure:
    """Each finished trial: validation accuracy against the objective, the budget as a line, the choice ringed."""
    fig = go.Figure()
    label = trials["objective_label"].iloc[0] if len(trials) else "objective"
    for source, symbol in (("greedy", "square"), ("nsga2", "circle")):
        t = trials[trials["source"] == source]
        if t.empty:
            continue
        fig.add_trace(go.Scatter(
            x=t["objective"], y=100 * t["val_accuracy"], mode="markers", name=f"{source} trials",
            marker={"symbol": symbol, "size": 9, "color": np.where(t["feasible"], "#2a9d8f", "#bbbbbb")},
            text=[f"{n}<br>drop {d:.2f} points on validation ({'within' if f else 'over'} the budget)"
                  for n, d, f in zip(t["name"], t["drop"], t["feasible"])], hoverinfo="text+x+y"))
    if chosen is not None and (trials["recipe"] == chosen).any():
        c = trials[trials["recipe"] == chosen].iloc[0]
        fig.add_trace(go.Scatter(x=[c["objective"]], y=[100 * c["val_accuracy"]], mode="markers", name="chosen",
                                 marker={"symbol": "circle-open", "size": 20, "line": {"width": 3}, "color": "#e76f51"},
                                 hoverinfo="skip"))
    if base_accuracy is not None:
        fig.add_hline(y=100 * base_accuracy, line_dash="dot", annotation_text="baseline (validation)")
        fig.add_hline(y=100 * base_accuracy - max_drop, line_color="#e76f51",
                      annotation_text=f"budget: {max_drop:g} points below the baseline")
    fig.update_layout(xaxis_title=f"{label} (measured per trial)", yaxis_title="validation accuracy (%)",
                      title="Search trials as they finish (chosen on validation only)", height=420)
    return fig


def job_line(job: dict | None) -> str:
    """One line on an analysis job's state and progress."""
    if job is None:
        return "Not run yet."
    pct = f" {100 * (job['progress'] or 0):.0f}%" if job["state"] == "running" else ""
    err = f": {job['error']}" if job["state"] == "failed" and job.get("error") else ""
    return f"job {job['id']} {job['state']}{pct} — {job['message'] or ''}{err}"
