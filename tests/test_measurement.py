"""The typed result record: its stored form, the CSV columns derived from it, and rows older code wrote."""
from __future__ import annotations

import dataclasses
import re

from compression.measurement import MEASUREMENT_COLUMNS, Context, Labels, Measurement, Seconds, Timing
from compression.report import CSV_COLUMNS
from conftest import ROOT


def _timing(device, batch, ms):
    return Timing(device, batch, p50_ms=ms, p90_ms=ms * 1.1, base_p50_ms=2 * ms, base_p90_ms=2.2 * ms,
                  speedup=2.0, note="2.00x faster", spread=0.05 if device == "cpu" else None,
                  other_cores=0.01 if device == "cpu" else None)


def _landed():
    return Measurement(recipe_name="quant(bits=8)", method="quant", description="8-bit weights", runtime="torch",
                       kernel="fbgemm", accuracy=0.8, accuracy_lo=0.78, accuracy_hi=0.82, macro_f1=0.79,
                       agreement=0.97, accuracy_delta=-0.01, delta_lo=-0.02, delta_hi=0.0, test_rows=200,
                       size_mib=1.5, size_bytes=1572864, params=1000, nonzero_params=990, bits_per_weight=8.2,
                       labels=Labels(latency="measured"), timings=(_timing("cpu", 1, 5.0),),
                       context=Context(cpu="Some CPU", seq_len=64, seed=0), seconds=Seconds(total=3.0),
                       notes=("quantized",), info={"bits": 8}, predictions=(0, 1, 1))


def test_a_landed_record_completes_into_a_new_one_and_both_round_trip_through_the_store():
    landed = _landed()
    assert landed.partial and landed.csv_row()["batch32_pending"] is True
    full = landed.with_timings(_timing("cpu", 32, 50.0), _timing("gpu", 1, 1.0), _timing("gpu", 32, 3.0),
                               gpu="Some GPU", labels=dataclasses.replace(landed.labels, gpu_latency="measured"))
    assert landed.partial and not full.partial  # frozen: completing makes a new record
    for m in (landed, full):
        assert Measurement.from_row(m.to_row()) == dataclasses.replace(
            m, timings=tuple(dataclasses.replace(t, base_p90_ms=None, spread=None, other_cores=None)
                             if t.device == "gpu" else t for t in m.timings))  # the GPU stores fewer numbers
    row = full.to_row()
    assert row["lat_b32_p50_ms"] == 50.0 and row["gpu_speedup_b1"] == 2.0 and row["labels"]["gpu_latency"] == "measured"
    assert row["partial"] is False and row["other_cores_during_timing"] == 0.01


def test_a_cpu_only_record_stores_no_gpu_keys():
    row = _landed().to_row()
    assert not any(k.startswith("gpu") for k in row) and "gpu_latency" not in row["labels"]


def test_a_row_written_before_the_typed_record_reads_into_the_same_columns():
    legacy = {"accuracy": 0.8, "accuracy_lo": 0.78, "accuracy_hi": 0.82, "macro_f1": 0.79, "test_rows": 200,
              "size_bytes": 10, "size_mib": 1e-5, "params": 5, "nonzero_params": 5, "bits_per_weight": 16.0,
              "labels": {"accuracy": "measured", "size": "measured", "latency": "contended"},
              "runtime": "torch", "kernel": "fp32", "notes": [], "info": {}, "predictions": [1, 0],
              "context": {"cpu": "Old CPU", "seed": 0, "hardware": "cpu-x86_64-2t"},
              "lat_b1_p50_ms": 4.0, "lat_b1_p90_ms": 4.5, "base_lat_b1_p50_ms": 4.1, "base_lat_b1_p90_ms": 4.6,
              "speedup_b1": 1.02, "speedup_b1_spread": 0.05, "other_cores_b1": 0.4,
              "speedup_b1_note": "not comparable: other work used the CPU while timing",
              "other_cores_during_timing": 0.4, "partial": True, "recipe_name": "baseline", "method": "baseline",
              "seconds": {"total": 1.0, "load": 0.5}, "some_key_from_the_future": 1}
    csv = Measurement.from_row(legacy).csv_row()
    assert csv["lat_b1_p50_ms"] == 4.0 and csv["latency_label"] == "contended" and csv["cpu"] == "Old CPU"
    assert csv["batch32_pending"] is True and csv["lat_b32_p50_ms"] is None and csv["seconds_total"] == 1.0
    assert csv["other_cores_during_timing"] == 0.4


def test_csv_columns_come_from_the_record_and_the_readme_lists_them_in_order():
    assert CSV_COLUMNS[6:] == MEASUREMENT_COLUMNS and len(set(CSV_COLUMNS)) == len(CSV_COLUMNS)
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## `results --csv` columns", 1)[1].split("`", 2)[1]
    assert re.split(r",\s*", block.strip()) == CSV_COLUMNS


def test_the_fast_csv_reader_equals_the_record_on_every_kind_of_stored_row():
    from compression.measurement import csv_row_of_stored

    full = _landed().with_timings(_timing("cpu", 32, 50.0), _timing("gpu", 1, 1.0), gpu="Some GPU")
    rows = [_landed().to_row(), full.to_row(), {"accuracy": 0.5, "labels": {"latency": "contended"}},
            {"lat_b1_p50_ms": 3.0, "other_cores_b1": 0.4, "lat_b32_p90_ms": 9.0}, {}]
    for row in rows:
        fast, slow = csv_row_of_stored(row), Measurement.from_row(row).csv_row()
        assert list(fast) == list(slow)
        assert _same(fast, slow), (fast, slow)


def _same(a, b):
    import math

    return all(x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
               for x, y in zip(a.values(), b.values()))


def test_the_baselines_solo_runs_are_reused_within_a_session_only_while_fresh(monkeypatch):
    """Issue 12: the baseline's solo timing is cached per worker session, so a live release does not time
    the baseline alone again; the interleaved baseline is still timed beside every candidate, and an old solo
    is timed anew."""
    from types import SimpleNamespace

    from compression import timing

    monkeypatch.setattr(timing, "settle", lambda: 0.0)
    # these fake runs last about a millisecond: one 10 ms tick of any other process in that window reads as
    # many cores of contention, and a contended solo is (rightly) never cached, so the reading is set aside
    monkeypatch.setattr(timing, "CONTENTION_CORES", float("inf"))
    runs = {"c": 0, "b": 0}

    def model(tag):
        def predict(x):
            runs[tag] += 1
        return SimpleNamespace(predict=predict)

    ts = SimpleNamespace(b1=[{"x": i} for i in range(4)], b32={})
    cache: dict = {}
    cand, base = model("c"), model("b")
    first = timing.interleaved_latency(cand, base, ts, (1,), solo=cache)[0]
    alone = runs["b"] - timing.B1_WARMUP - timing.B1_REPS  # the first timing ran the baseline alone too
    assert alone == timing.B1_REPS and 1 in cache and first.base_solo_p50_ms is not None
    runs["b"] = 0
    second = timing.interleaved_latency(cand, base, ts, (1,), solo=cache)[0]
    assert runs["b"] == timing.B1_WARMUP + timing.B1_REPS  # no solo runs: the cached ones stand
    assert second.base_solo_p50_ms == first.base_solo_p50_ms and second.base_p50_ms > 0
    monkeypatch.setattr(timing, "SOLO_FRESH_S", 0.0)
    runs["b"] = 0
    timing.interleaved_latency(cand, base, ts, (1,), solo=cache)
    assert runs["b"] == timing.B1_WARMUP + 2 * timing.B1_REPS  # stale: timed alone again


def _burn(seconds: float) -> None:
    import time

    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_settle_waits_for_the_runtimes_threads_not_for_its_own_reading():
    """settle() pauses until the threads of the runtime that just ran are asleep. The thread that reads their
    CPU time is not one of them: counting it (2.7 ms a reading with 30 threads on a slow CPU) made every
    pause run to its limit, and a busy pool thread must still count."""
    import threading

    import pytest

    from compression import timing

    if timing._thread_cpu_ns() is None:
        pytest.skip("per-thread CPU time is read from Linux's /proc")
    before = timing._thread_cpu_ns()
    _burn(0.05)  # the caller itself busy for 50 ms
    assert timing._thread_cpu_ns() - before < 25e6, "the calling thread's own CPU time was counted"
    done, idle = threading.Event(), threading.Event()
    pool = threading.Thread(target=lambda: (_burn(0.05), done.set(), idle.wait()), daemon=True)
    before = timing._thread_cpu_ns()
    pool.start()  # a pool thread that works 50 ms, then sleeps (still alive, so its CPU time is still there)
    done.wait()
    assert timing._thread_cpu_ns() - before >= 40e6, "another thread's busy 50 ms were not counted"
    sleepers = [threading.Thread(target=idle.wait, daemon=True) for _ in range(40)]
    for t in sleepers:
        t.start()
    try:
        assert timing.settle() < timing.SETTLE_MAX_S, "40 sleeping threads kept settle() waiting to its limit"
    finally:
        idle.set()
