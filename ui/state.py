"""Cached handles on the workspace and store, the chosen baseline, and URL state (st.query_params).

Example::

    >>> paths, store = handles()
    >>> fp = current_baseline(store)
    >>> df = results(store, fp)
"""
from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from compression import api
from ui import charts


@st.cache_resource(show_spinner=False)
def _open(workspace: str, store_url: str):
    return api.open_workspace(workspace or None, store_url or None)


def handles():
    """(paths, store) for $COMPRESSION_WORKSPACE / $COMPRESSION_STORE_URL, opened once per process."""
    return _open(os.environ.get("COMPRESSION_WORKSPACE", ""), os.environ.get("COMPRESSION_STORE_URL", ""))


@st.cache_data(show_spinner=False, max_entries=16)
def _results(store_url: str, baseline: str, hardware: str, version: tuple) -> pd.DataFrame:
    paths, store = handles()
    df = api.results_frame(store, baseline=baseline, hardware=hardware)
    return charts.prepare(df)


def results(store, baseline: str | None, hardware: str | None = None) -> pd.DataFrame:
    """The baseline's results on this hardware, prepared for charts; re-read only when the store changed."""
    if not baseline:
        return charts.prepare(api.results_frame(store, baseline="\0"))
    return _results(store.url, baseline, hardware or current_hardware(), api.store_version(store))


def current_hardware() -> str:
    """The hardware id the charts show: the URL's choice, else this machine's."""
    return qp("hw", None) or api.hardware_id()



# ---------------------------------------------------------------- URL state
EXPLAIN = "explain"  # the explain-mode toggle's widget key (ui.sidebar draws it)


def explain() -> bool:
    """True in explain mode: pages use plain words and hide engineering columns (``?explain=1``)."""
    return bool(st.session_state.get(EXPLAIN, qp("explain") == "1"))


def qp(name: str, default=None, cast=str):
    """A value from the URL, cast; the default when absent or unreadable."""
    v = st.query_params.get(name)
    if v is None or v == "":
        return default
    try:
        return cast(v)
    except (TypeError, ValueError):
        return default


def qp_list(name: str) -> list[str] | None:
    v = st.query_params.get(name)
    return None if v is None else [s for s in v.split(",") if s]


def method_filter(present: list[str], key: str, label: str = "methods") -> list[str]:
    """A methods multiselect restored from the URL; methods whose first points land later join it."""
    seen = st.session_state.get(key + ":seen")
    if key not in st.session_state or seen is None:
        chosen = [m for m in (qp_list("methods") or present) if m in present] or present
    else:
        chosen = [m for m in st.session_state[key] if m in present] + [m for m in present if m not in seen]
    st.session_state[key] = chosen
    st.session_state[key + ":seen"] = set(present)
    chosen = st.multiselect(label, present, key=key)
    set_qp(methods=None if set(chosen) == set(present) else chosen)
    return chosen


def set_qp(**kw) -> None:
    """Write values to the URL (None removes them), so a link reproduces the view."""
    for k, v in kw.items():
        if v is None:
            if k in st.query_params:
                del st.query_params[k]
        else:
            v = ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
            if st.query_params.get(k) != v:
                st.query_params[k] = v


def current_baseline(store) -> str | None:
    """The baseline in the URL, else the default one if registered, else the newest prepared one."""
    fp = api.baseline_of(store, qp("baseline", ""))
    if fp:
        return fp
    rows = store.baselines()
    prepared = [b for b in rows if b["prepared"]]
    default = api.default_baseline(store)
    if default and (default["prepared"] or not prepared):
        return default["fingerprint"]
    pick = (prepared or rows)[-1:] if rows else []
    return pick[0]["fingerprint"] if pick else None


def baseline_refs(store, fp: str | None) -> dict:
    info = (store.baseline(fp) or {}).get("info") or {} if fp else {}
    return {"majority": info.get("majority_accuracy"), "tfidf": info.get("tfidf_accuracy")}


def base_row(df: pd.DataFrame) -> dict | None:
    """The baseline's own measured row (empty recipe) in a results frame."""
    b = df[df["method"] == "baseline"]
    return b.iloc[-1].to_dict() if len(b) else None
