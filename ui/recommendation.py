"""The Trade-offs page's recommendation: what "best" means and how much accuracy may go (both in the URL),
the engine's guarded pick (``compression.report.recommend``), and its sentence in plain words.

Example::

    >>> objective, budget = recommendation.controls()
    >>> best_i = recommendation.show(top, store, fp, df, view, cons, "lat_b1", objective, budget, explain=False)
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from compression import api
from compression.report import disagreements, engineering_text, recommend, recommendation_text
from ui import charts, state, words

OBJECTIVES = {"latency": "fastest", "accuracy": "most accurate", "size": "smallest"}
BUDGETS = ["noise", "0.5", "1", "2", "5", "any"]  # points of accuracy the user accepts to lose


def _budget_words(b: str) -> str:
    return {"noise": "no more than measurement noise", "any": "by any amount"}.get(
        b, f"by at most {b} point{'s' * (b != '1')}")


def controls() -> tuple[str, str]:
    """The "best means" and "accuracy may drop" pickers, restored from and written to the URL."""
    o1, o2 = st.columns(2)
    start = state.qp("objective", "latency")
    objective = o1.radio("best means", list(OBJECTIVES), horizontal=True, key="objective",
                         index=list(OBJECTIVES).index(start) if start in OBJECTIVES else 0,
                         format_func=OBJECTIVES.get, help=words.GLOSSARY["Best feasible"])
    start = state.qp("budget", "noise")
    budget = o2.selectbox("accuracy may drop", BUDGETS, index=BUDGETS.index(start) if start in BUDGETS else 0,
                          format_func=_budget_words, key="budget", help=words.GLOSSARY["Within noise"])
    state.set_qp(objective=None if objective == "latency" else objective, budget=None if budget == "noise" else budget)
    return objective, budget


def show(top, store, fp: str, df: pd.DataFrame, view: pd.DataFrame, cons: dict, lat: str, objective: str,
         budget: str, explain: bool):
    """Write the pick's sentences into ``top`` (plain words; the recipe and its CI too unless ``explain``);
    returns the picked row's index in ``view``, or None."""
    lat_col, lab_col = charts.AXES[lat][0], charts.label_col(lat)
    pick = recommend(view, max_size=cons["max_mib"], max_latency=cons["max_ms"], min_accuracy=cons["min_acc"],
                     objective=objective, guard=budget != "any",
                     budget_pts=None if budget in ("noise", "any") else float(budget),
                     latency_col=lat_col, label_col=lab_col)
    base = state.base_row(df)  # the original's row, even where the methods filter leaves it out
    flips = (disagreements(store, view.loc[pick.index, "job_id"], base["job_id"])
             if pick.index is not None and base else None)
    gpu = view["gpu"].dropna().iloc[0] if "gpu" in view and view["gpu"].notna().any() else None
    info = store.baseline(fp) or {}
    limits = words.limits(**cons)
    head, why = recommendation_text(view, pick, flips=flips, objective=objective, latency_col=lat_col,
                                    label_col=lab_col, limits=limits, base=base,
                                    where=words.where(state.current_hardware(), api.hardware_id(), lat, gpu),
                                    noun=words.texts_noun(info.get("dataset_source")))
    with top:
        st.markdown(head)
        if why:
            st.caption(why)
        if not explain:
            st.markdown(engineering_text(view, pick, axis=charts.LATENCY_NAMES[lat], latency_col=lat_col,
                                         label_col=lab_col, objective=objective, limits=limits))
    return pick.index
