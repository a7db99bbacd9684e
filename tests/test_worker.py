"""A worker killed with SIGKILL mid-sweep: running again finishes without repeating finished jobs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from compression import Recipe, hardware_id, resolve
from compression.cli import main
from compression.specs import QuantSpec
from compression.store import Store
from compression.timing import Preempted
from conftest import ROOT


def test_sigkilled_worker_leaves_nothing_stuck_or_repeated(prepared, tmp_path):
    ws, args = prepared
    store = Store(resolve(ws).store_url)
    (b,) = store.baselines()
    # several distinct settings of the same real method, so the worker is busy for a while
    keys = [Recipe((QuantSpec(bits=8, group_size=g),)).key for g in (0, 2, 4, 8, 16, 32)]
    ids = store.enqueue(b["fingerprint"], keys, hardware_id())
    env = {**os.environ, "COMPRESSION_WORKSPACE": str(ws), "PYTHONPATH": str(ROOT)}
    env.pop("COMPRESSION_STORE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "compression", "worker", "--idle-exit", "0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.time() + 120
    while time.time() < deadline:
        states = [j["state"] for j in store.jobs(ids=ids)]
        if states.count("done") >= 1 and "running" in states:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        raise AssertionError(f"worker never got going: {states}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {j["id"]: j["finished_at"] for j in store.jobs(ids=ids) if j["state"] == "done"}
    results_before = {r["job_id"]: r["id"] for r in store.results(latest=False) if r["job_id"] in done_before}
    assert any(j["state"] == "running" for j in store.jobs(ids=ids))  # the killed job is left mid-flight

    assert main(["worker", "--idle-exit", "0", "--workspace", str(ws)]) == 0

    jobs = store.jobs(ids=ids)
    assert [j["state"] for j in jobs] == ["done"] * len(ids)
    for j in jobs:
        assert store.result_count(j["id"]) == 1  # no duplicate, no missing row
        if j["id"] in done_before:
            assert j["finished_at"] == done_before[j["id"]]  # finished jobs were not run again
    after = {r["job_id"]: r["id"] for r in store.results(latest=False) if r["job_id"] in done_before}
    assert after == results_before


def test_a_worker_kept_warm_by_the_app_stays_up_with_its_baseline_loaded(prepared, tmp_path):
    from compression import api

    ws, _ = prepared
    paths = resolve(ws)
    store = Store(paths.store_url)
    (b,) = store.baselines()
    fp = b["fingerprint"]
    env = {**os.environ, "COMPRESSION_WORKSPACE": str(ws), "PYTHONPATH": str(ROOT)}
    env.pop("COMPRESSION_STORE_URL", None)
    log = tmp_path / "worker.log"
    from compression import config

    config.keep_warm(paths, fp)  # what the Trade-offs page does while the live knob is on
    proc = subprocess.Popen([sys.executable, "-m", "compression", "worker", "--idle-exit", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(log, "w"), cwd=ROOT)
    try:
        deadline = time.time() + 120
        while not api.worker_warm_for(paths, fp):
            assert proc.poll() is None and time.time() < deadline, log.read_text()
            time.sleep(0.1)
        assert "loaded and warm" in log.read_text()
        time.sleep(2.5)
        assert proc.poll() is None  # idle past --idle-exit, yet up: the app still wants it
        (jid,) = store.enqueue(fp, [Recipe((QuantSpec(bits=8, group_size=8),)).key], hardware_id())
        store.requeue([jid], states=("done",), remeasure=True)
        while store.job(jid)["state"] not in ("done", "failed"):
            assert time.time() < deadline, log.read_text()
            time.sleep(0.1)
        assert store.job(jid)["state"] == "done"
        row = next(r for r in store.results() if r["job_id"] == jid)
        assert row["data"]["seconds"]["load"] < 0.05  # the job loaded nothing: it started at once
        old = time.time() - 2 * config.KEEPALIVE_SECONDS
        os.utime(paths.keepalive(fp), (old, old))  # the page closed: the keepalive lapses
        assert proc.wait(timeout=60) == 0
        assert not paths.worker_ready.exists() and not api.worker_warm_for(paths, fp)
    finally:
        paths.keepalive(fp).unlink(missing_ok=True)
        if proc.poll() is None:
            proc.kill()


def test_with_the_live_knob_on_a_new_setting_lands_before_the_last_ones_batch32(prepared):
    """Settings queued at once land before earlier ones' batch-32 timings, at most MAX_DEFERRED waiting."""
    from compression import config
    from compression.executors import run_worker

    ws, _ = prepared
    paths = resolve(ws)
    store = Store(paths.store_url)
    fp = store.baselines()[0]["fingerprint"]
    keys = [Recipe.parse(f"prune(sparsity={s})").key for s in (0.35, 0.65, 0.55, 0.75, 0.85)]
    ids = store.enqueue(fp, keys, hardware_id())
    store.requeue(ids, states=("done",), remeasure=True)
    a, b, c, d, e = ids
    events = []
    config.keep_warm(paths, fp)
    try:
        run_worker(paths, store, on_event=lambda j, f, m: events.append((j["id"], m)),
                   until=lambda: all(j["state"] == "done" for j in store.jobs(ids=ids)))
    finally:
        paths.keepalive(fp).unlink(missing_ok=True)
    landed, done = "landed; the rest of its measurement follows", "done"
    order = [ev for ev in events if ev[1] in (landed, done)]
    assert order == [(a, landed), (b, landed), (c, landed), (a, done), (d, landed), (b, done), (e, landed),
                     (c, done), (d, done), (e, done)]
    for jid in ids:
        (row,) = [r["data"] for r in store.results() if r["job_id"] == jid]
        assert not row["partial"] and row["lat_b32_p50_ms"] > 0  # completed: batch 32 filled in, no partial left


def test_a_preempted_batch32_timing_is_dropped_whole_and_run_again_later(prepared):
    from compression.engine import JobRunner
    from compression.training import CancelToken

    ws, _ = prepared
    paths = resolve(ws)
    store = Store(paths.store_url)
    fp = store.baselines()[0]["fingerprint"]
    (jid,) = store.enqueue(fp, [Recipe.parse("prune(sparsity=0.45)").key], hardware_id())
    store.requeue([jid], states=("done",), remeasure=True)
    kept = store.result_count(jid)  # earlier measurements stay
    job = store.claim(hardware_id(), "test:1")
    assert job["id"] == jid
    landed = JobRunner.local(store, paths).run(job, lambda f, m: None, CancelToken())
    stored = next(r["data"] for r in store.results() if r["job_id"] == jid)
    assert stored["partial"] and "lat_b1_p50_ms" in stored and "lat_b32_p50_ms" not in stored
    first = landed.measurement
    with pytest.raises(Preempted):  # a newer setting arrived: nothing of the timing is kept
        landed.complete(preempt=lambda: True)
    assert landed.measurement is first and not landed.done
    m = landed.complete()
    assert m.timing("cpu", 32).p50_ms > 0 and m.seconds.measure_b32 > 0 and not m.partial
    assert m.timing("cpu", 1) == first.timing("cpu", 1)  # the landed numbers stay as they were
    row = m.to_row()
    assert row["lat_b32_p50_ms"] > 0 and not row["partial"]
    store.finish(jid, row)
    assert store.result_count(jid) == kept + 1  # the partial row was replaced, not added to


def test_keepalives_name_the_baselines_pages_want_warm_newest_first_and_lapse(tmp_path):
    from compression import config

    paths = resolve(str(tmp_path / "ws"))
    assert config.wanted_warm(paths) == []  # no page open
    config.keep_warm(paths, "aaa")
    config.keep_warm(paths, "bbb")
    os.utime(paths.keepalive("aaa"), (time.time() - 5, time.time() - 5))
    assert config.wanted_warm(paths) == ["bbb", "aaa"]  # two tabs: the most recently renewed first
    old = time.time() - 2 * config.KEEPALIVE_SECONDS
    os.utime(paths.keepalive("bbb"), (old, old))  # that tab closed
    assert config.wanted_warm(paths) == ["aaa"]


def test_the_background_worker_runs_below_the_dashboards_priority(tmp_path):
    """The worker the app starts yields the CPU to the page and its browser (a release on a stored value is
    drawn at once even while the worker prefetches); its timings still say when anything else used the CPU."""
    import psutil

    from compression import api
    from compression.executors.local import WORKER_NICE, _spawn

    paths, _ = api.open_workspace(str(tmp_path / "ws"))
    proc = _spawn(paths, 1.0, "local", None)
    try:
        assert psutil.Process(proc.pid).nice() >= psutil.Process().nice() + WORKER_NICE
    finally:
        proc.wait(timeout=120)
