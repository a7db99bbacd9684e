"""Page sections too long for a page script: constraints, the details panel, the live knob, live refresh.

Example::

    >>> cons = constraint_sliders(df, "lat_b1")
    >>> details_panel(store, fp, df, job_id)
"""
from __future__ import annotations

import io
import math
import time
import zipfile
from pathlib import Path

import pandas as pd
import streamlit as st

from compression import api
from ui import charts, state, widgets


def nice_ceil(v: float) -> float:
    """The next 1-2-2.5-5 number at or above v (slider bounds that rarely move)."""
    if not v or v <= 0 or math.isnan(v):
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    return float(next(m * e for m in (1, 2, 2.5, 5, 10) if m * e >= v * 1.0001))


def constraint_sliders(df: pd.DataFrame, latency: str) -> dict:
    """Max MiB, max ms and min accuracy sliders (their URL values restored); at the loose end = no limit."""
    lc = charts.AXES[latency][0]
    hi_mib, hi_ms = nice_ceil(df["size_mib"].max()), nice_ceil(df[lc].max())
    c1, c2, c3 = st.columns(3)
    mib = c1.slider("max size (MiB)", 0.0, hi_mib, min(state.qp("max_mib", hi_mib, float), hi_mib), step=hi_mib / 200,
                    format="%.3f" if hi_mib < 1 else "%.1f", key="c_mib", help="only settings at most this big")
    ms = c2.slider(f"max latency (ms, {charts.LATENCY_NAMES[latency]})", 0.0, hi_ms, min(state.qp("max_ms", hi_ms, float), hi_ms),
                   step=hi_ms / 200, format="%.2f", key="c_ms", help="only settings at most this slow (median)")
    acc = c3.slider("min accuracy (%)", 0.0, 100.0, state.qp("min_acc", 0.0, float), step=0.1, format="%.1f",
                    key="c_acc", help="only settings at least this accurate on the test split")
    out = {"max_mib": None if mib >= hi_mib else mib, "max_ms": None if ms >= hi_ms else ms,
           "min_acc": None if acc <= 0 else acc / 100}
    state.set_qp(max_mib=out["max_mib"], max_ms=out["max_ms"], min_acc=None if acc <= 0 else acc)
    return out


def selected_job(event) -> int | None:
    """The job id of a clicked point in a plotly_chart selection event."""
    try:
        pts = event.selection["points"]
    except (AttributeError, KeyError, TypeError):
        return None
    for p in pts or []:
        cd = p.get("customdata")
        if cd is not None:
            return int(cd[0] if isinstance(cd, (list, tuple)) else cd)
    return None


def _zip(folder: str):
    def build() -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            for f in sorted(Path(folder).rglob("*")):
                if f.is_file():
                    z.write(f, f.relative_to(folder))
        return buf.getvalue()
    return build


def details_panel(store, fp: str, df: pd.DataFrame, job_id: int | None) -> None:
    """Every number of one result with its label, its download, and the sentences whose prediction flips."""
    if job_id is None or job_id not in set(df["job_id"]):
        return
    r = df[df["job_id"] == job_id].iloc[0]
    st.subheader(f"Details: {r['recipe']}")
    st.write(r["description"])
    st.markdown(r["hover"].replace("<br>", "  \n").replace("<b>", "**").replace("</b>", "**"))
    art = r.get("artifact")
    if isinstance(art, str) and Path(art).is_dir():
        files = [f.name for f in Path(art).iterdir() if f.is_file()]
        st.download_button(f"Download this model ({', '.join(sorted(files))}) as a zip", _zip(art),
                           file_name=f"job{job_id}-{r['method']}.zip", mime="application/zip", key=f"dl{job_id}")
    data = api.result_data(store, int(job_id)) or {}
    for note in data.get("notes") or []:
        st.caption(f"• {note}")
    if r["method"] != "baseline":
        try:
            fl = api.flips(store, fp, int(job_id))
        except api.UserError as e:
            st.error(str(e))
            return
        n = int(r["test_rows"] or 0)
        st.markdown(f"**Sentences whose prediction flips:** {len(fl)} of {n} test rows (measured)")
        st.dataframe(fl.head(200), hide_index=True, width="stretch")


def live_knob(paths, store, fp: str) -> list[int]:
    """One slider per post-training method; on release it queues (or reuses) that one setting.

    Returns the live jobs' ids, whose points the chart rings beside the frontier."""
    live = st.session_state.setdefault("live_jobs", {})
    methods = [m for m in widgets.method_names() if api.live_knob(m)]
    cols = st.columns(max(1, len(methods)))
    states = api.job_states(store, fp)  # read once: every slider's "stored near here" line uses it
    for col, method in zip(cols, methods):
        with col:
            refused = api.refusal(store, fp, method)
            name, value = widgets.live_slider(method, key=f"live:{method}", refused=refused)
            go = st.button("measure this setting", key=f"live_go:{method}", disabled=bool(refused), help=refused)
            if refused:
                continue
            grid = widgets.live_grid(method)
            if name is not None and grid:
                api.prefetch_wish(paths, fp, method, name, value, grid)  # the worker measures neighbours when idle
                near = set(api.prefetch_nearest(grid, value))
                stored = api.stored_values(states, method, name, [v for v in grid if v == value or v in near])
                if stored:
                    shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in stored)
                    st.caption(f"stored near here (at once on release): {shown}")
            prev = st.session_state.get(f"live_prev:{method}")
            if name is None or not (go or (prev is not None and prev != value)):
                st.session_state[f"live_prev:{method}"] = value
                continue
            st.session_state[f"live_prev:{method}"] = value
            try:
                jid = api.enqueue_setting(store, fp, api.recipe_for(method, {name: value}))
            except (api.SpecError, api.UserError) as e:
                st.error(str(e))
                continue
            live[method] = (jid, time.monotonic())
            api.ensure_worker(paths)
            st.rerun()  # run the page again so its live refresh sees the queued job
    ids = [jid for jid, _ in live.values()]
    for j in store.jobs(ids=ids):
        m = next(m for m, (i, _) in live.items() if i == j["id"])
        if j["state"] == "done":
            st.caption(f"{m}: job {j['id']} done — its point is ringed on the chart.")
        elif j["state"] == "failed":
            st.error(f"{m}: job {j['id']} failed: {j['error']}")
        else:
            st.caption(f"{m}: job {j['id']} {j['state']}: {j['message'] or 'waiting for the worker'}…")
    return ids


def keep_worker_warm(paths, fp: str) -> None:
    """While the live knob is on, keep the worker up with this baseline loaded, and say whether it is ready.

    The keepalive is renewed every 20 s (every 2 s while the worker loads); when the page closes it lapses
    and the worker exits once idle."""
    ready = api.worker_warm_for(paths, fp)  # sets the pace; the fragment's first run (inline) renews

    @st.fragment(run_every=20.0 if ready else 2.0)
    def _renew():
        api.keep_worker_warm(paths, fp)
        now = api.worker_warm_for(paths, fp)
        if now != ready:
            st.rerun()  # the page polls at the new pace
        if now:
            st.caption("Worker ready: the baseline is loaded, so a post-training setting lands in seconds.")
        else:
            st.caption("Worker starting: loading the baseline (about 10 s); a setting moved now waits for it.")

    _renew()


LANDED = 0.9  # a job's progress once its point has landed (engine.JobRunner.run reports it so)


def poll_seconds(jobs: list[dict], live: set[int]) -> float:
    """0.5 s while one of the live knob's settings has yet to land, else 2 s."""
    return 0.5 if any(j["id"] in live and (j["progress"] or 0.0) < LANDED for j in jobs) else 2.0


def autorefresh(store, fp: str) -> None:
    """While the baseline has queued or running jobs, rerun the page when the store changes.

    Polls every 0.5 s while a live-knob setting has yet to land (its goal is a few seconds), else every 2 s:
    once its point is on screen the worker is timing the rest, and the page keeps its own CPU work low."""
    jobs = store.jobs(baseline=fp, states=("queued", "running"))
    if not jobs:
        return
    live = {jid for jid, _ in st.session_state.get("live_jobs", {}).values()}
    every = poll_seconds(jobs, live)
    st.session_state["_seen"] = api.store_version(store)

    @st.fragment(run_every=every)
    def _watch():
        v = api.store_version(store)
        if v != st.session_state.get("_seen"):
            st.session_state["_seen"] = v
            st.rerun()
        n = len(store.jobs(baseline=fp, states=("queued", "running")))
        st.caption(f"⏳ {n} job(s) queued or running; points appear as they land.")

    _watch()


def results_table(df: pd.DataFrame) -> pd.DataFrame:
    """The stored results as text, each number beside its label."""
    out = pd.DataFrame({
        "job": df["job_id"], "recipe": df["recipe"], "method": df["method"],
        "accuracy": [f"{a * 100:.2f}% [{lo * 100:.1f}–{hi * 100:.1f}] {lab}" for a, lo, hi, lab in
                     zip(df["accuracy"], df["accuracy_lo"], df["accuracy_hi"], df["accuracy_label"])],
        "size": [f"{s:.3g} MiB {lab}" for s, lab in zip(df["size_mib"], df["size_label"])],
        "latency b1": [f"{v:.2f} ms {lab}" if pd.notna(v) else "not measured"
                       for v, lab in zip(df["lat_b1_p50_ms"], df["latency_label"])],
        "latency b32": ["pending: being measured" if p else f"{v:.1f} ms {lab}" if pd.notna(v) else "not measured"
                        for v, lab, p in zip(df["lat_b32_p50_ms"], df["latency_label"], df["batch32_pending"])],
        "speedup b1": [f"{n} ({lab})" for n, lab in zip(df["speedup_b1_note"], df["latency_label"])],
        "runtime": df["runtime"], "description": df["description"],
    })
    if "gpu" in df and df["gpu"].notna().any():  # where CUDA timed them: the GPU's batch 1 beside the CPU's
        out.insert(6, "GPU latency b1", [
            f"{v:.2f} ms {lab} ({g})" if pd.notna(v) else (note if isinstance(note, str) else "not measured")
            for v, lab, g, note in zip(df["gpu_lat_b1_p50_ms"], df["gpu_latency_label"], df["gpu"], df["gpu_note"])])
    return out
