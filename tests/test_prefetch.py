"""Prefetch: while the live knob is on and nothing is queued, the worker measures the slider's neighbours."""
from __future__ import annotations

import json
import time

from compression import config, hardware_id, prefetch, resolve
from compression.store import Store


def _store(tmp_path):
    paths = resolve(str(tmp_path / "ws"))
    paths.workspace.mkdir(parents=True)
    s = Store(paths.store_url)
    s.add_baseline("fp", "tiny", {}, {}, {})
    s.mark_prepared("fp", str(tmp_path), {})
    return paths, s


def test_the_next_setting_is_the_nearest_value_not_stored_and_a_stale_wish_asks_nothing(tmp_path):
    paths, s = _store(tmp_path)
    grid = [0.3, 0.4, 0.5, 0.6, 0.7]
    assert prefetch.nearest(grid, 0.5, 2) == [0.4, 0.6, 0.3, 0.7]
    prefetch.wish(paths, "fp", "prune", "sparsity", 0.5, grid)
    (jid,) = s.enqueue("fp", [prefetch.setting("prune", "sparsity", 0.4).key], "hw")
    assert prefetch.next_setting(s, paths, "fp", "hw").name == "prune(sparsity=0.6)"  # 0.4 is known already
    s.claim("hw", "w:1")
    s.finish(jid, {"accuracy": 0.8})
    states = {j["recipe"]: j["state"] for j in s.jobs(baseline="fp") if j["hardware"] == "hw"}
    assert prefetch.stored_values(states, "prune", "sparsity", grid) == [0.4]
    assert prefetch.next_setting(s, paths, "fp", "another-cpu-class").name == "prune(sparsity=0.4)"
    f = paths.workspace / "prefetch" / "fp.json"
    wishes = json.loads(f.read_text())
    wishes["prune"]["at"] = time.time() - 2 * config.KEEPALIVE_SECONDS  # the page closed long ago
    f.write_text(json.dumps(wishes))
    assert prefetch.next_setting(s, paths, "fp", "hw") is None


def test_a_worker_kept_warm_measures_the_sliders_neighbours_when_idle(prepared):
    from compression.executors import run_worker

    ws, _ = prepared
    paths = resolve(ws)
    store = Store(paths.store_url)
    fp = store.baselines()[0]["fingerprint"]
    hw = hardware_id()
    near = [prefetch.setting("prune", "sparsity", v).key for v in (0.41, 0.43)]
    config.keep_warm(paths, fp)
    prefetch.wish(paths, fp, "prune", "sparsity", 0.42, [0.41, 0.42, 0.43])
    t0 = time.monotonic()

    def fetched() -> bool:
        jobs = {j["recipe"]: j for j in store.jobs(baseline=fp) if j["hardware"] == hw}
        return all(k in jobs and jobs[k]["state"] == "done" for k in near) or time.monotonic() - t0 > 180

    try:
        run_worker(paths, store, until=fetched, idle_exit=0.0)
    finally:
        paths.keepalive(fp).unlink(missing_ok=True)
    jobs = {j["recipe"]: j for j in store.jobs(baseline=fp) if j["hardware"] == hw}
    assert all(jobs[k]["state"] == "done" and jobs[k]["priority"] == prefetch.PRIORITY for k in near)
    assert prefetch.setting("prune", "sparsity", 0.42).key not in jobs  # the position itself waits for a release
    assert any(s["name"] == "prefetch" for s in store.sweeps(fp))


def _copy(prepared, tmp_path) -> str:
    """The prepared workspace copied: these tests leave queued jobs and a live sweep that others must not see."""
    import shutil

    dst = tmp_path / "ws"
    shutil.copytree(prepared[0], dst, ignore=shutil.ignore_patterns("worker.lock"))
    return str(dst)


def test_a_prefetched_setting_yields_to_a_release_before_it_lands(prepared, tmp_path, monkeypatch):
    from compression.executors.local import _Worker

    paths = resolve(_copy(prepared, tmp_path))
    store = Store(paths.store_url)
    fp = store.baselines()[0]["fingerprint"]
    hw = hardware_id()
    config.keep_warm(paths, fp)
    jid = prefetch.enqueue(store, fp, prefetch.setting("prune", "sparsity", 0.47), hw)
    worker = _Worker(paths, store, hw, None, None)
    try:
        monkeypatch.setattr(store, "has_queued", lambda *a, **k: True)  # a release is queued while it runs
        assert worker.step()
        job = store.jobs(ids=[jid])[0]
        assert job["state"] == "queued" and store.result_count(jid) == 0  # back in line, nothing stored
        assert not worker.deferred
    finally:
        worker.close()
        paths.keepalive(fp).unlink(missing_ok=True)


def test_a_released_settings_full_measurement_goes_before_a_queued_prefetch(prepared, tmp_path):
    from compression import api
    from compression.executors.local import _Worker

    paths = resolve(_copy(prepared, tmp_path))
    store = Store(paths.store_url)
    fp = store.baselines()[0]["fingerprint"]
    hw = hardware_id()
    config.keep_warm(paths, fp)
    live = api.enqueue_setting(store, fp, api.recipe_for("prune", {"sparsity": 0.57}))
    fetch = prefetch.enqueue(store, fp, prefetch.setting("prune", "sparsity", 0.58), hw)
    worker = _Worker(paths, store, hw, None, None)
    try:
        assert worker.step() and worker.deferred  # the release lands its preview first
        assert worker.step()  # then its own full measurement, not the prefetched neighbour
        assert store.jobs(ids=[live])[0]["state"] == "done"
        assert store.jobs(ids=[fetch])[0]["state"] == "queued"
    finally:
        worker.close()
        paths.keepalive(fp).unlink(missing_ok=True)
