"""The store: idempotent enqueue, atomic claims, leases, sweeps. Runs on SQLite (and PostgreSQL when given)."""
from __future__ import annotations

import threading

import pytest

from compression.store import Store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
        import sqlalchemy as sa

        eng = sa.create_engine(url)  # a clean schema for each test
        with eng.begin() as c:
            c.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        eng.dispose()
    s = Store(url)
    s.add_baseline("fp1", "tiny", {"kind": "local"}, {"kind": "csv"}, {})
    s.mark_prepared("fp1", str(tmp_path), {})
    return s


def test_enqueue_is_idempotent(store):
    a = store.enqueue("fp1", ["r1", "r2"], "hw")
    b = store.enqueue("fp1", ["r2", "r3"], "hw")
    assert a[1] == b[0] and len({*a, *b}) == 3


def test_two_writers_at_once_lose_no_rows(store):
    """Two processes' worth of writers: enqueue the same keys, claim and finish concurrently."""
    keys = [f"r{i}" for i in range(30)]
    errors = []

    def writer(name):
        try:
            s = Store(store.url)
            s.enqueue("fp1", keys, "hw")
            while (j := s.claim("hw", name)) is not None:
                s.finish(j["id"], {"by": name})
        except Exception as e:  # pragma: no cover - shown in the assertion
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(store.jobs()) == 30 and all(j["state"] == "done" for j in store.jobs())
    assert sorted(r["job_id"] for r in store.results(latest=False)) == sorted(j["id"] for j in store.jobs())


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


V1_SCHEMA = """
CREATE TABLE meta (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE baselines (fingerprint VARCHAR(64) PRIMARY KEY, name TEXT NOT NULL, model_source JSON NOT NULL,
  dataset_source JSON NOT NULL, settings JSON NOT NULL, prepared BOOLEAN NOT NULL, path TEXT, info JSON,
  created_at FLOAT NOT NULL);
CREATE TABLE jobs (id INTEGER PRIMARY KEY, baseline VARCHAR(64) NOT NULL REFERENCES baselines(fingerprint),
  recipe TEXT NOT NULL, hardware VARCHAR(64) NOT NULL, state VARCHAR(16) NOT NULL, priority INTEGER NOT NULL,
  attempts INTEGER NOT NULL, worker TEXT, heartbeat_at FLOAT, created_at FLOAT NOT NULL, started_at FLOAT,
  finished_at FLOAT, progress FLOAT NOT NULL, message TEXT, error TEXT, traceback TEXT,
  cancel_requested BOOLEAN NOT NULL, remeasure BOOLEAN NOT NULL,
  CONSTRAINT uq_job_key UNIQUE (baseline, recipe, hardware));
CREATE TABLE results (id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL REFERENCES jobs(id), created_at FLOAT NOT NULL,
  data JSON NOT NULL);
CREATE TABLE sweeps (id INTEGER PRIMARY KEY, name TEXT NOT NULL, baseline VARCHAR(64) NOT NULL,
  created_at FLOAT NOT NULL, archived_at FLOAT, request JSON);
CREATE TABLE sweep_jobs (sweep_id INTEGER NOT NULL REFERENCES sweeps(id), job_id INTEGER NOT NULL REFERENCES jobs(id),
  PRIMARY KEY (sweep_id, job_id));
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO baselines VALUES ('fpold', 'old', '{}', '{}', '{}', 1, '/x', '{}', 1.0);
INSERT INTO jobs VALUES (1, 'fpold', '[]', 'hw', 'done', 1, 1, 'h:1', 1.0, 1.0, 1.0, 2.0, 1.0, 'done', NULL, NULL, 0, 0);
INSERT INTO results VALUES (1, 1, 2.0, '{"accuracy": 0.81}');
INSERT INTO sweeps VALUES (1, 'old sweep', 'fpold', 1.0, NULL, '{}');
INSERT INTO sweep_jobs VALUES (1, 1);
"""


def test_a_store_written_by_schema_v1_opens_with_its_rows(tmp_path):
    import sqlite3

    path = tmp_path / "v1.sqlite"
    con = sqlite3.connect(path)
    con.executescript(V1_SCHEMA)
    con.close()
    s = Store(f"sqlite:///{path}")
    assert s.schema_version == 4
    assert [r["data"]["accuracy"] for r in s.results()] == [0.81]
    assert s.sweeps()[0]["name"] == "old sweep" and s.job(1)["node"] is None
    s.delete_sweep(1)
    assert s.results() == [] and s.sweeps() == []
    s.delete_sweep(1, deleted=False)
    assert len(s.results()) == 1


def test_a_point_lands_first_with_batch32_pending_then_completes(store):
    from compression.report import results_frame, text_table

    (jid,) = store.enqueue("fp1", ["[]"], "hw")
    store.claim("hw", "w")
    first = {"accuracy": 0.8, "accuracy_lo": 0.78, "accuracy_hi": 0.82, "size_mib": 1.0, "lat_b1_p50_ms": 2.0,
             "lat_b1_p90_ms": 2.5, "speedup_b1_note": "no measurable change", "runtime": "torch"}
    store.add_partial(jid, first)
    df = results_frame(store, baseline="fp1")
    assert df["batch32_pending"].tolist() == [True]
    assert "pending" in text_table(df)  # the terminal says so rather than showing a blank
    store.finish(jid, {**first, "lat_b32_p50_ms": 40.0, "lat_b32_p90_ms": 41.0, "partial": False})
    df = results_frame(store, baseline="fp1")
    assert len(df) == 1 and df["batch32_pending"].tolist() == [False]  # replaced, not duplicated
    assert "40.0/41.0" in text_table(df)
