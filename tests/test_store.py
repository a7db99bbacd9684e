"""The store: idempotent enqueue, atomic claims, leases, sweeps. Runs on SQLite (and PostgreSQL when given)."""
from __future__ import annotations

import threading

import pytest

from compression.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    s.add_baseline("fp1", "tiny", {"kind": "local"}, {"kind": "csv"}, {})
    s.mark_prepared("fp1", str(tmp_path), {})
    return s


def test_enqueue_is_idempotent(store):
    a = store.enqueue("fp1", ["r1", "r2"], "hw")
    b = store.enqueue("fp1", ["r2", "r3"], "hw")
    assert a[1] == b[0] and len({*a, *b}) == 3


def test_concurrent_claims_never_hand_out_a_job_twice(store):
    store.enqueue("fp1", [f"r{i}" for i in range(40)], "hw")
    got: list[int] = []
    lock = threading.Lock()

    def worker(name):
        s = Store(store.url)
        while (j := s.claim("hw", name)) is not None:
            with lock:
                got.append(j["id"])

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(set(got)) and len(got) == 40


def test_stale_lease_is_requeued_and_result_kept_once(store):
    (jid,) = store.enqueue("fp1", ["r1"], "hw")
    assert store.claim("hw", "host:1")["id"] == jid
    assert store.requeue_stale(lease=3600) == 0
    assert store.requeue_stale(dead_workers=["host:1"]) == 1
    assert store.job(jid)["state"] == "queued"
    store.claim("hw", "host:2")
    store.finish(jid, {"accuracy": 0.5})
    assert store.result_count(jid) == 1 and store.job(jid)["attempts"] == 2


def test_failed_job_keeps_its_error_and_can_be_retried(store):
    (jid,) = store.enqueue("fp1", ["r1"], "hw")
    store.claim("hw", "w")
    store.fail(jid, "ValueError: boom", "Traceback ...")
    j = store.job(jid)
    assert j["state"] == "failed" and j["error"] == "ValueError: boom" and "Traceback" in j["traceback"]
    assert store.requeue([jid]) == 1 and store.job(jid)["state"] == "queued"


def test_remeasure_keeps_the_old_measurement(store):
    (jid,) = store.enqueue("fp1", ["r1"], "hw")
    store.claim("hw", "w")
    store.finish(jid, {"accuracy": 0.5})
    store.requeue([jid], states=("done",), remeasure=True)
    store.claim("hw", "w")
    store.finish(jid, {"accuracy": 0.6})
    assert [r["data"]["accuracy"] for r in store.results(latest=False)] == [0.5, 0.6]
    assert [r["data"]["accuracy"] for r in store.results()] == [0.6]


def test_cancel_queued_at_once_and_running_on_request(store):
    a, b = store.enqueue("fp1", ["r1", "r2"], "hw")
    store.claim("hw", "w")
    store.cancel([a, b])
    assert store.job(b)["state"] == "cancelled"
    assert store.job(a)["state"] == "running" and store.heartbeat(a) is True


def test_archived_sweep_hides_its_points_until_undone(store):
    sid = store.add_sweep("s", "fp1", {})
    (jid,) = store.enqueue("fp1", ["r1"], "hw", sweep=sid)
    store.claim("hw", "w")
    store.finish(jid, {"accuracy": 0.5})
    store.archive_sweep(sid)
    assert store.results() == [] and store.sweeps(archived=True)[0]["id"] == sid
    store.archive_sweep(sid, archived=False)
    assert len(store.results()) == 1


def test_jobs_wait_for_their_baseline(store):
    store.add_baseline("fp2", "other", {}, {}, {})
    store.enqueue("fp2", ["r1"], "hw")
    assert store.claim("hw", "w") is None
    store.enqueue("fp2", ["prepare"], "hw", priority=0)
    assert store.claim("hw", "w")["recipe"] == "prepare"
