"""The accuracy-goal rule the post-training benchmark applies (issue 13): a goal is met only when the point
estimate meets it and the paired 95% interval's lower bound of the change is >= -1.0 point."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from post_training import ACCURACY_GOALS, accuracy_goal, accuracy_goals  # noqa: E402

from compression import api  # noqa: E402
from compression.recipes import Recipe  # noqa: E402


def row(acc, lo, hi, label="measured", agreement=0.96):
    base = 0.8118
    return pd.Series({"accuracy": acc, "acc_delta_pts": 100 * (acc - base), "delta_lo": lo, "delta_hi": hi,
                      "agreement": agreement, "test_rows": 1275, "size_mib": 60.0, "latency_label": label,
                      "speedup_b1": 1.0, "speedup_b32": 1.0})


@pytest.mark.parametrize("acc,lo,verdict", [
    (0.8102, -0.0118, "not demonstrated (interval)"),  # 99.8% kept, but the interval reaches -1.18 pts
    (0.8102, -0.0090, "met"),
    (0.7990, -0.0050, "MISSED"),  # 98.4% kept: the point estimate fails whatever the interval
])
def test_the_interval_decides_a_goal_the_point_estimate_meets(acc, lo, verdict):
    got = accuracy_goal(row(acc, lo, 0.01), 0.8118, "retained99")
    assert got["verdict"] == verdict and got["met"] == (verdict == "met")
    assert got["flips"] == 51 and got["ci_pts"][0] == pytest.approx(100 * lo)


def test_a_simulated_latency_fails_the_4_bit_goal_and_report_rows_carry_no_verdict():
    assert not accuracy_goal(row(0.8118, -0.005, 0.005, label="simulated"), 0.8118, "drop05")["met"]
    assert accuracy_goal(row(0.8118, -0.005, 0.005), 0.8118, "drop05")["met"]
    assert "met" not in accuracy_goal(row(0.78, -0.05, -0.01), 0.8118, None)
    for recipe, _, _ in ACCURACY_GOALS:  # every setting parses and passes its spec's checks
        Recipe.parse(recipe)


def test_a_setting_whose_job_failed_is_reported_not_left_out():
    df = pd.DataFrame([{**row(0.8102, -0.0118, 0.0086), "recipe": Recipe.parse(ACCURACY_GOALS[0][0]).name}])
    goals = accuracy_goals(df, 0.8118)
    assert len(goals) == len(ACCURACY_GOALS)
    assert sum(v["verdict"].startswith("no result") for v in goals.values()) == len(ACCURACY_GOALS) - 1


@pytest.mark.parametrize("flags,says", [("fpu sse2 avx2 fma", "no VNNI"), ("sse2 avx2 avx512f avx512_vnni", "VNNI)")])
def test_the_peer_benchmark_names_the_cpu_family_model_and_vnni(monkeypatch, flags, says):
    """Every speed figure is read with the CPU it ran on: an AVX2-only Zen 3 and Zen 1 share a model name."""
    from _peer import cpu_note

    from compression import config

    info = f"processor\t: 0\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n"
    monkeypatch.setattr(config, "_cpuinfo", lambda: info)
    note = cpu_note()
    assert "AMD EPYC (family 25 model 1," in note and says in note


def peer_table(peer_ms=11.0, ours_ms=8.0, peer_speedup=2.6, ours_speedup=2.9, peer_clean=True, ours_clean=True,
               size=0.253):
    """Injected rows of the side-by-side table: the peer first, then our fused int8 and a slower one of ours."""
    from _peer import OURS, PEER

    def r(name, ms, speedup, clean, size_ratio, delta=-0.39):
        return {"setting": name, "acc_delta_pts": delta, "size_ratio": size_ratio, "latency_label": "contended",
                "b1_ms": ms, "speedup_b1": speedup, "clean_b1": clean, "b32_ms": 200.0, "speedup_b32": 1.8}
    return pd.DataFrame([r(PEER, peer_ms, peer_speedup, peer_clean, 0.259), r(OURS[1], ours_ms, ours_speedup,
                         ours_clean, size), r(OURS[0], 14.0, 2.0, True, 0.26, delta=0.0)])


@pytest.mark.parametrize("kw,met,says", [
    ({}, False, "MISSED: 1.12x"),  # 1.38x directly, but the machine drifted: 1.12x through the baselines
    ({"ours_speedup": 3.5}, True, "met"),  # 1.38x and 1.35x: both readings pass; batch 32 plays no part
    ({"ours_speedup": 3.5, "peer_clean": False}, False, "the peer's batch-1 timing was contended"),
    ({"ours_speedup": 3.5, "ours_clean": False}, False, "ours batch-1 timing was contended"),
    ({"ours_speedup": 3.5, "size": 0.27}, False, "MISSED: size"),
])
def test_the_peer_goal_needs_both_readings_and_both_batch_1_timings_clean(kw, met, says):
    """The batch-1 goal against the peer: the lower of the direct and the through-the-baselines ratio, and only
    where the peer's batch-1 timing and ours are both clean (a row labelled contended for batch 32 alone counts)."""
    from _peer import peer_goal

    df = peer_table(**kw)
    goal = peer_goal(df)
    assert goal["met"] is met and says in goal["verdict"]
    assert goal["best"] == df["setting"][1] and goal["vs_peer_b1"] == pytest.approx(11.0 / 8.0)
    assert list(df["vs_peer_b1"].round(3)) == [1.0, 1.375, 0.786]


def test_no_peer_goal_when_none_of_ours_keeps_the_drop_within_half_a_point():
    from _peer import peer_goal

    df = peer_table()
    df.loc[1:, "acc_delta_pts"] = -0.8
    assert peer_goal(df) == {"met": False, "verdict": "MISSED: none of ours keeps the drop within 0.5 pt with "
                                                      "the CI's lower bound at -1.0 pt or above"}


def test_the_peer_goal_takes_the_fastest_of_ours_whose_interval_passes_too():
    """A fast setting within 0.5 pt whose paired CI reaches below -1.0 pt is not eligible (the issue's accuracy
    rule): the goal is judged on the fastest one that passes both, here a slower one that misses 1.3x."""
    from _peer import peer_goal

    df = peer_table(ours_speedup=3.5)
    df["delta_lo_pts"] = [-2.0, -1.02, -0.7]
    goal = peer_goal(df)
    assert goal["best"] == df["setting"][2] and goal["delta_lo_pts"] == -0.7 and goal["met"] is False
    df.loc[1, "delta_lo_pts"] = -0.98
    goal = peer_goal(df)
    assert goal["best"] == df["setting"][1] and goal["met"] is True


def test_the_batch_32_goal_counts_clean_timings_within_a_point_only():
    """The side-by-side run's batch-32 goal: the fastest clean setting within 1 pt, never the peer's row."""
    from _peer import OURS, TORCH, b32_goal

    def r(name, speedup, clean, delta=-0.3):
        return {"setting": name, "acc_delta_pts": delta, "speedup_b32": speedup, "clean_b32": clean}
    rows = [r("peer: ORT dynamic int8, defaults", 4.0, True), r(TORCH, 1.7, True), r(OURS[1], 2.3, True),
            r(OURS[3], 3.9, False), r(OURS[2], 5.0, True, delta=-1.2)]
    got = b32_goal(pd.DataFrame(rows))
    assert got["met"] and got["best"] == OURS[1] and got["speedup_b32"] == pytest.approx(2.3)
    rows[2]["speedup_b32"] = 1.75
    assert b32_goal(pd.DataFrame(rows))["verdict"] == "MISSED: 1.75x"
    rows[1]["clean_b32"] = rows[2]["clean_b32"] = False
    got = b32_goal(pd.DataFrame(rows))
    assert not got["met"] and got["verdict"].startswith("not comparable") and got["best"] == OURS[3]


def test_the_kl_of_the_4_bit_scan_is_zero_for_equal_outputs_and_grows_as_they_part():
    from nbits_scan import kl_from

    base = np.array([[2.0, 0.0], [0.0, 1.0]])
    assert kl_from(base, base + 5.0) == pytest.approx(0.0, abs=1e-12)  # a shift of all logits changes nothing
    p, q = np.exp(base) / np.exp(base).sum(1, keepdims=True), np.full((2, 2), 0.5)
    assert kl_from(base, np.zeros((2, 2))) == pytest.approx(float((p * np.log(p / q)).sum(1).mean()))
    assert 0 < kl_from(base, base * 0.5) < kl_from(base, -base)


def test_the_4_bit_scan_reads_validation_only_and_sets_the_kernel_level_for_its_variant(prepared, monkeypatch):
    import nbits_scan

    from compression import sensitivity
    from compression.methods import nbits as nbits_module

    ws, _ = prepared
    store = api.open_workspace(str(ws))[1]
    fp = next(b["fingerprint"] for b in store.baselines() if b.get("prepared"))
    read, levels = [], []
    real_load, real_compress = sensitivity.load_split, nbits_scan.compress
    monkeypatch.setattr(sensitivity, "load_split", lambda f, name, n=None: read.append(name) or real_load(f, name, n))
    monkeypatch.setattr(nbits_scan, "compress",
                        lambda m, r, w: levels.append(nbits_module.ACCURACY_LEVEL) or real_compress(m, r, w))
    bench = sensitivity.ValBench(store, fp)
    try:
        chosen = [v for v in nbits_scan.variants(32) if v[0] in ("RTN, symmetric", "RTN, symmetric, fp32 activations (accuracy level 0)",
                                                          "GPTQ, symmetric")]
        rows = nbits_scan.scan(bench, chosen, log=lambda s: None)
    finally:
        bench.close()
    assert "test" not in read and {"train", "val"} <= set(read)
    assert [r["accuracy_level"] for r in rows] == [None, 0, None]
    assert levels[1:] == [nbits_module.ACCURACY_LEVEL, 0, nbits_module.ACCURACY_LEVEL]  # restored after
    for r in rows:
        assert r["rows"] == len(bench.val.y) and r["kl_e3"] >= 0 and r["ci_lo_pts"] <= r["change_pts"] <= r["ci_hi_pts"]
        assert r["flips"] <= r["rows"]
