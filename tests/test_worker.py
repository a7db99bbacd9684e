"""A worker killed with SIGKILL mid-sweep: running again finishes without repeating finished jobs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from compression import Recipe, hardware_id, resolve
from compression.cli import main
from compression.specs import QuantSpec
from compression.store import Store
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
