"""Page sections too long for a page script: constraints, the details panel, the live knob, live refresh.

Example::

    >>> cons = constraint_sliders(df, "lat_b1")
    >>> details_panel(store, fp, df, job_id)
"""
from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from compression import api
from compression.plain import plain_name
from ui import charts, model_zip, state, widgets


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


def _zip(store, fp: str, art: str, r):
    def build() -> bytes:  # built on click only: a page showing details need not read the weights
        b = store.baseline(fp) or {}
        info = b.get("info") or {}
        return model_zip.build(art, Path(b.get("path") or "") / "model", str(r["recipe"]), str(r["method"]),
                               int(info.get("seq_len") or 64), list(info.get("label_names") or []),
                               folder=f"job{int(r['job_id'])}-{r['method']}")
    return build


def details_panel(store, fp: str, df: pd.DataFrame, job_id: int | None) -> None:
    """Every number of one result with its label, its download, and the sentences whose prediction flips."""
    if job_id is None or job_id not in set(df["job_id"]):
        return
    r = df[df["job_id"] == job_id].iloc[0]
    if state.explain():  # plain words first; the recipe key stays for whoever wants to reproduce it
        st.subheader(f"Details: {plain_name(r['recipe'])}")
        st.caption(f"recipe: {r['recipe']}")
    else:
        st.subheader(f"Details: {r['recipe']}")
    desc = str(r["description"] or "")
    st.write(desc)
    lines = [ln for ln in str(r["hover"]).split("<br>") if ln.strip() != desc.strip()]  # the hover repeats it
    st.markdown("  \n".join(lines).replace("<b>", "**").replace("</b>", "**"))
    art = r.get("artifact")
    if isinstance(art, str) and Path(art).is_dir():
        files = [f.name for f in Path(art).iterdir() if f.is_file()]
        st.download_button(f"Download this model ({', '.join(sorted(files))}, with its tokenizer and a README "
                           "on how to load it) as a zip", _zip(store, fp, art, r),
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


TIMES_KEPT = 50  # past live-knob waits kept per kind in the workspace (their median is the page's promise)


def _times_file(paths):
    return paths.workspace / "live_knob_times.json"


def past_times(paths, kind: str) -> list[float]:
    """Seconds this workspace's pages saw pass, per ``kind``: "point" (slider release to the point landing)
    or "ready" (worker starting to the baseline loaded)."""
    try:
        return [float(v) for v in json.loads(_times_file(paths).read_text()).get(kind, [])]
    except (OSError, ValueError, AttributeError):
        return []


def record_time(paths, kind: str, seconds: float) -> None:
    """Keep one observed wait (the newest TIMES_KEPT per kind)."""
    f = _times_file(paths)
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError):
        data = {}
    data[kind] = ([*data.get(kind, []), round(float(seconds), 2)])[-TIMES_KEPT:]
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(data))


def promise(paths, kind: str) -> str:
    """The wait this machine has shown, as a sentence: the median of past waits here, or that none was timed."""
    vals = past_times(paths, kind)
    if not vals:
        return {"point": "No release has been timed in this workspace yet, so no wait is promised.",
                "ready": "No worker start has been timed in this workspace yet."}[kind]
    what = {"point": "a new setting's point landed a median {:.1f} s after its release",
            "ready": "the worker was ready a median {:.1f} s after starting"}[kind].format(statistics.median(vals))
    return f"Here {what} ({len(vals)} past time{'s' * (len(vals) > 1)} in this workspace, as the page saw them)."


def live_knob(paths, store, fp: str) -> list[int]:
    """One slider per post-training method; on release it queues (or reuses) that one setting.

    Returns the live jobs' ids, whose points the chart rings beside the frontier."""
    live = st.session_state.setdefault("live_jobs", {})
    methods = [m for m in widgets.method_names() if api.live_knob(m)]
    st.caption(promise(paths, "point"))
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
                recipe = api.recipe_for(method, {name: value})
                was = states.get(recipe.key)
                jid = api.enqueue_setting(store, fp, recipe)
            except (api.SpecError, api.UserError) as e:
                st.error(str(e))
                continue
            # a stored setting shows at once: its wait says nothing about how long a new one takes
            live[method] = (jid, None if was == "done" else time.monotonic())
            if was == "done":
                continue  # stored: this very run draws it, with no second run of the page and no worker
            api.ensure_worker(paths)
            st.rerun()  # run the page again so its live refresh sees the queued job
    ids = [jid for jid, _ in live.values()]
    drawn = st.session_state.setdefault("live_drawn", set())
    for j in store.jobs(ids=ids):
        m, t0 = next((m, t) for m, (i, t) in live.items() if i == j["id"])
        landed = j["state"] == "done" or (j["state"] == "running" and store.result_count(j["id"]) > 0)
        if (landed or j["state"] not in ("queued", "running")) and j["id"] not in drawn:
            drawn.add(j["id"])  # the chart below draws it in this run (autorefresh waits for nothing more)
            if landed and t0 is not None:
                record_time(paths, "point", time.monotonic() - t0)
        if j["state"] == "done":
            st.caption(f"{m}: job {j['id']} done — its point is ringed on the chart.")
        elif j["state"] == "failed":
            st.error(f"{m}: job {j['id']} failed: {j['error']}")
        elif landed:
            st.caption(f"{m}: job {j['id']} landed — its point is ringed on the chart; the worker completes the "
                       "rest of its numbers in the background and the point updates when they are in.")
        else:
            st.caption(f"{m}: job {j['id']} {j['state']}: {j['message'] or 'waiting for the worker'}…")
    return ids


def keep_worker_warm(paths, fp: str) -> None:
    """While the live knob is on, keep the worker up with this baseline loaded, and say whether it is ready.

    The keepalive is renewed every 20 s, and every 0.5 s while the worker loads (a file read, so "ready"
    shows within half a second of it); when the page closes it lapses and the worker exits once idle. The time from 'starting' to 'ready' the page saw is kept as this
    machine's promise for the next start."""
    ready = api.worker_warm_for(paths, fp)  # sets the pace; the fragment's first run (inline) renews

    @st.fragment(run_every=20.0 if ready else 0.5)
    def _renew():
        api.keep_worker_warm(paths, fp)
        now = api.worker_warm_for(paths, fp)
        ss = st.session_state
        if not now:
            ss.setdefault("warm_since", time.monotonic())
        elif ss.get("warm_since") is not None:
            record_time(paths, "ready", time.monotonic() - ss.pop("warm_since"))
        if now != ready:
            st.rerun()  # the page polls at the new pace
        if now:
            st.caption("Worker ready: the baseline is loaded. " + promise(paths, "point"))
        else:
            st.caption("Worker starting: loading the baseline; a setting moved now waits for it. "
                       + promise(paths, "ready"))

    _renew()


LANDED = 0.9  # a job's progress once its point has landed (engine.JobRunner.run reports it so)
TIMING = 0.85  # from here until done a running job is measured: accuracy, then the latency timings (engine's stages)
TIMING_POLL = 2.0  # seconds between store reads while the worker times


def timing(job: dict) -> bool:
    """Whether the worker is measuring this job now (its latency timings need the CPU to themselves)."""
    return (job.get("state") == "running" and TIMING <= (job.get("progress") or 0.0) < 1.0
            and not (job.get("message") or "").startswith("landed; the rest of its measurement waits"))


def poll_seconds(jobs: list[dict], live: set[int]) -> float:
    """0.5 s while one of the live knob's settings has yet to land and the worker is not timing, else 2 s."""
    if any(timing(j) for j in jobs):
        return TIMING_POLL
    return 0.5 if any(j["id"] in live and (j["progress"] or 0.0) < LANDED for j in jobs) else 2.0


def should_redraw(jobs: list[dict], live: set[int], drawn: set[int]) -> bool:
    """Whether the page may run again after the store changed: never while the worker times a job, except
    to draw a live setting's first landing, the one point the user is waiting for."""
    if not any(timing(j) for j in jobs):
        return True
    active = {j["id"]: j for j in jobs}
    landed = {i for i in live if i not in active or (active[i].get("progress") or 0.0) >= LANDED}
    return bool(landed - drawn)


def autorefresh(store, fp: str) -> None:
    """While the baseline has queued or running jobs, rerun the page when the store changes.

    Polls every 0.5 s while a live-knob setting has yet to land, else every 2 s. While the worker times a
    job (see :func:`timing`) it reads the store at most every 2 s and does not run the page again, so the
    page's own CPU work does not make that timing contended; a live setting's first landing is the exception."""
    jobs = store.jobs(baseline=fp, states=("queued", "running"))
    if not jobs:
        return
    ss = st.session_state
    live = {jid for jid, _ in ss.get("live_jobs", {}).values()} if ss.get("live_on") else set()
    every = poll_seconds(jobs, live)
    ss["_seen"], ss["_polled"], ss["_timing"] = api.store_version(store), time.monotonic(), any(map(timing, jobs))
    ss["_watch_note"] = len(jobs)

    @st.fragment(run_every=every)
    def _watch():
        if not (ss.get("_timing") and time.monotonic() - ss.get("_polled", 0.0) < TIMING_POLL):
            ss["_polled"] = time.monotonic()
            now = store.jobs(baseline=fp, states=("queued", "running"))
            ss["_timing"], ss["_watch_note"] = any(map(timing, now)), len(now)
            v = api.store_version(store)
            if v != ss.get("_seen") and should_redraw(now, live, ss.get("live_drawn", set())):
                ss["_seen"] = v
                st.rerun()
        note = " The worker is timing a job: the page waits, so that timing has the CPU to itself." \
            if ss.get("_timing") else ""
        st.caption(f"⏳ {ss['_watch_note']} job(s) queued or running; points appear as they land.{note}")

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
