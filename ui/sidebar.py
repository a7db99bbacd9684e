"""The shared sidebar (baseline picker, workspace and store, hardware, disk use) and the first-run start.

Example::

    >>> paths, store, fp = sidebar()
    >>> first_run(paths, store)
"""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from compression import api
from ui import state, words


@st.cache_data(ttl=30, show_spinner=False)
def _disk(workspace: str, store_url: str) -> dict:
    return api.disk_usage(api.Paths(Path(workspace), store_url))


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _state_of(b: dict, jobs: dict) -> str:
    if b["prepared"]:
        return "prepared"
    prep = jobs.get(b["fingerprint"])
    return f"preparing ({prep})" if prep else "not prepared"


def sidebar():
    """Draw the sidebar; returns (paths, store, chosen baseline fingerprint or None)."""
    paths, store = state.handles()
    rows = store.baselines()
    fp = state.current_baseline(store)
    with st.sidebar:
        explain = explain_toggle()
        st.subheader("Baseline")
        if rows:
            prep = {j["baseline"]: j["state"] for j in store.jobs(states=("queued", "running", "failed"))
                    if j["recipe"] == api.PREPARE}
            by_fp = {b["fingerprint"]: b for b in rows}
            opts = list(by_fp)
            choice = st.selectbox("the original model" if explain else "current baseline", opts, index=opts.index(fp) if fp in opts else 0,
                                  format_func=lambda f: f"{by_fp[f]['name']} · {f[:8]} · {_state_of(by_fp[f], prep)}",
                                  key="sidebar_baseline")
            if choice != fp:
                fp = choice
            state.set_qp(baseline=fp[:12])
            # the picker cuts a long name off at the sidebar's width; here it wraps, whole
            st.markdown(f"**{by_fp[fp]['name']}**  \n`{fp[:12]}` · {_state_of(by_fp[fp], prep)}")
            info = by_fp[fp]["info"] or {}
            if "majority_accuracy" in info:
                st.caption(f"references (measured): majority {info['majority_accuracy'] * 100:.1f}%, "
                           f"TF-IDF {info['tfidf_accuracy'] * 100:.1f}%")
            hws = sorted({j["hardware"] for j in store.jobs(baseline=fp)} | {api.hardware_id()})
            if len(hws) > 1:  # charts and the frontier show one hardware id at a time
                now = state.current_hardware()
                hw = st.selectbox("hardware", hws, index=hws.index(now) if now in hws else 0, key="sidebar_hw",
                                  format_func=words.hardware_words if explain else str,
                                  help=f"the target the settings were measured on; this machine is {api.hardware_id()}")
                state.set_qp(hw=None if hw == api.hardware_id() else hw)
        else:
            st.caption("No baseline yet: prepare one on the Baseline page.")
        worker = 'running' if api.worker_alive(paths) else 'idle (starts when work is queued)'
        if explain:  # a demo: the computer in words; the paths wait in an expander
            st.caption(f"Measured on {words.hardware_words(api.hardware_id())}.  \nWorker: {worker}")
        where = st.expander("Where things live") if explain else st.container()
        with where:
            if not explain:
                st.subheader("Where things live")
            st.caption(f"Workspace: `{paths.workspace}`  \nStore: `{paths.store_url}`  \n"
                       f"Hardware: `{api.hardware_id()}`" + ("" if explain else f"  \nWorker: {worker}"))
            du = _disk(str(paths.workspace), paths.store_url)
            st.caption(f"Disk: {_mib(du['total'])} (baselines {_mib(du['baselines'])}, "
                       f"models {_mib(du['artifacts'])}, store {_mib(du['store'])})")
        with st.expander("Glossary: what the words on these pages mean"):
            st.markdown("\n".join(f"- **{k}**: {v}" for k, v in words.GLOSSARY.items()))
    return paths, store, fp


def explain_toggle() -> bool:
    """The explain-mode switch (plain words, engineering columns hidden), kept in the URL as ``explain=1``
    so a demo link opens in it; pages read it with :func:`ui.state.explain`."""
    key, kept = state.EXPLAIN, "_explain_kept"
    if kept not in st.session_state:
        st.session_state[kept] = state.qp("explain") == "1"
    # a widget's own state is dropped when the page changes: restore it from a plain key every run
    st.session_state[key] = st.session_state[kept]
    on = st.toggle("Explain mode: plain words for a demo", key=key,
                   on_change=lambda: st.session_state.update({kept: st.session_state[key]}),
                   help="Hides the engineering columns and wording on every page; the glossary below keeps "
                        "every word's meaning.")
    state.set_qp(explain="1" if on else None)
    return on


def first_run(paths, store) -> None:
    """No prepared default baseline: register it, queue a small starter sweep, start the worker (once).

    Off when COMPRESSION_NO_AUTOSTART=1 (tests and CI)."""
    if os.environ.get("COMPRESSION_NO_AUTOSTART") == "1" or st.session_state.get("_autostarted"):
        return
    st.session_state["_autostarted"] = True
    default = api.default_baseline(store)
    if default and default["prepared"]:
        return
    if store.baselines() and not default:
        return  # someone already works on their own baseline here: do not add the default
    try:
        with st.spinner("First run: registering the embedded default model and dataset…"):
            fp = api.register_baseline(store)
            if not default:
                for method, values in api.starter_values().items():
                    api.enqueue_sweep(store, fp, method, values, name=f"starter {method}")
        api.ensure_worker(paths)
        state.set_qp(baseline=fp[:12])
    except api.UserError as e:
        st.error(f"Could not start the default baseline: {e}")


def preparing(store, fp: str | None) -> None:
    """A live progress bar while the chosen baseline is being prepared; reruns the app once it is ready."""
    if not fp:
        return
    b = store.baseline(fp)
    if b is None or b["prepared"]:
        return

    @st.fragment(run_every=2)
    def _bar():
        jobs = [j for j in store.jobs(baseline=fp) if j["recipe"] == api.PREPARE]
        if store.baseline(fp)["prepared"]:
            st.rerun()
        if not jobs:
            st.warning("This baseline has no preparation job; prepare it on the Baseline page.")
            return
        j = jobs[-1]
        if j["state"] == "failed":
            st.error(f"Preparing the baseline failed: {j['error']}")
            return
        st.progress(min(1.0, float(j["progress"] or 0.0)),
                    text=f"Preparing {b['name']} ({j['state']}): {j['message'] or 'waiting for the worker'}")

    _bar()


def frame():
    """Everything around a page: the first-run start, the sidebar and the preparation progress bar."""
    first_run(*state.handles())
    paths, store, fp = sidebar()
    preparing(store, fp)
    return paths, store, fp


def page():
    """(paths, store) for a page script; draws the shared frame when the router did not run.

    Streamlit runs an app with a ``pages/`` folder in its legacy multipage mode until the first
    ``st.navigation`` call on the server (and AppTest resets that on every run). In that mode a page
    URL runs the page script alone, without app.py: switch the legacy mode off for the next runs and
    draw the sidebar here, so this run is complete and its widget events (a button click) are kept.
    """
    if not st.session_state.get("_in_app"):
        from streamlit.runtime.pages_manager import PagesManager

        PagesManager.uses_pages_directory = False
        frame()
    return state.handles()
