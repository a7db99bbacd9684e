"""Live progress of a baseline's sweeps: done, queued, failed with error and traceback; cancel, retry, archive.

Example::

    >>> progress(paths, store, fp)      # inside a page
"""
from __future__ import annotations

import streamlit as st

from compression import api

ACTIVE = ("queued", "running")


def progress(paths, store, fp: str) -> None:
    """Pick a sweep, follow its jobs (refreshing while any run), and act on them."""
    undo = st.session_state.get("archived_sweep")
    if undo is not None:
        c1, c2 = st.columns([4, 1])
        c1.info(f"Sweep {undo} archived: its points are hidden, nothing was deleted.")
        if c2.button("Undo", key="undo_archive"):
            store.archive_sweep(undo, archived=False)
            st.session_state.pop("archived_sweep")
            st.rerun()
    all_sweeps = store.sweeps(fp)
    if not all_sweeps:
        st.caption("No sweeps for this baseline yet.")
        return
    by_id = {s["id"]: s for s in all_sweeps}
    want = st.session_state.get("sweep_id")
    ids = list(by_id)
    sid = st.selectbox("follow sweep", ids, index=ids.index(want) if want in ids else 0, key=f"follow:{want}",
                       format_func=lambda i: f"sweep {i}: {by_id[i]['name']} ({len(by_id[i]['job_ids'])} settings)")
    job_ids = by_id[sid]["job_ids"]
    active = any(j["state"] in ACTIVE for j in store.jobs(ids=job_ids))

    @st.fragment(run_every=2 if active else None)
    def _live():
        jobs = store.jobs(ids=job_ids)
        counts = {s: sum(j["state"] == s for j in jobs) for s in ("done", "running", "queued", "failed", "cancelled")}
        st.markdown(" · ".join(f"**{n}** {s}" for s, n in counts.items()))
        st.progress((counts["done"] + counts["failed"] + counts["cancelled"]) / max(1, len(jobs)))
        st.dataframe(api.jobs_frame(store, ids=job_ids), hide_index=True, width="stretch",
                     column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0,
                                                                                max_value=1.0)})
        for j in jobs:
            if j["state"] == "failed":
                with st.expander(f"job {j['id']} failed: {j['error']}"):
                    st.code(j["traceback"] or j["error"], language="text")
        c1, c2, c3 = st.columns(3)
        if c1.button("Cancel queued and running", key="cancel", disabled=not (counts["queued"] or counts["running"])):
            st.toast(f"Cancelled {store.cancel(job_ids)} job(s)")
        if c2.button("Retry failed", key="retry", disabled=not (counts["failed"] or counts["cancelled"])):
            n = store.requeue([j["id"] for j in jobs if j["state"] in ("failed", "cancelled")])
            api.ensure_worker(paths)
            st.toast(f"Re-queued {n} job(s)")
        if c3.button("Archive this sweep", key="archive"):
            store.archive_sweep(sid)
            st.session_state["archived_sweep"] = sid
            st.rerun()
        if active and not any(j["state"] in ACTIVE for j in jobs):
            st.rerun()

    _live()
