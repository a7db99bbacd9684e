"""Chart functions: traces, frontier membership, hover fields and labels, best feasible, exports."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from compression.api import CSV_COLUMNS
from ui import charts


def frame(rows: list[dict]) -> pd.DataFrame:
    base = {"accuracy_lo": None, "accuracy_hi": None, "accuracy_label": "measured", "size_label": "measured",
            "latency_label": "measured", "lat_b32_p50_ms": 100.0, "description": "", "speedup_b1_note": "x",
            "runtime": "torch", "kernel": "k", "nonzero_params": 1000, "speedup_b32": 1.0,
            "accuracy_delta": 0.0, "delta_lo": 0.0, "delta_hi": 0.0}
    out = []
    for i, r in enumerate(rows):
        d = {**base, "job_id": i + 1, **r}
        if "speedup_b1" not in d:  # as if timed beside a 13 ms baseline in the same session
            d["speedup_b1"] = 13.0 / d["lat_b1_p50_ms"] if d.get("lat_b1_p50_ms") else None
        d["accuracy_lo"] = d["accuracy_lo"] if d["accuracy_lo"] is not None else d["accuracy"] - 0.01
        d["accuracy_hi"] = d["accuracy_hi"] if d["accuracy_hi"] is not None else d["accuracy"] + 0.01
        out.append(d)
    return charts.prepare(pd.DataFrame(out).reindex(columns=CSV_COLUMNS))


@pytest.fixture
def df():
    return frame([
        dict(method="baseline", recipe="baseline", accuracy=0.82, size_mib=86.0, lat_b1_p50_ms=13.0, description="the original model, unchanged"),
        dict(method="quant", recipe="quant()", accuracy=0.81, size_mib=56.0, lat_b1_p50_ms=8.8, description="weights stored in 8 bits"),
        dict(method="quant", recipe="quant(bits=4)", accuracy=0.78, size_mib=30.0, lat_b1_p50_ms=15.0,
             latency_label="simulated", description="weights stored in 4 bits"),
        dict(method="prune", recipe="prune(sparsity=0.5)", accuracy=0.80, size_mib=50.0, lat_b1_p50_ms=5.0,
             latency_label="contended"),  # fastest, but contended: never on the frontier
        dict(method="prune", recipe="prune(sparsity=0.9)", accuracy=0.60, size_mib=60.0, lat_b1_p50_ms=14.0),  # dominated
    ])


def test_frontier_membership_leaves_out_contended_and_dominated(df):
    on = charts.frontier(df, "lat_b1", "accuracy")
    assert df.loc[on, "recipe"].tolist() == ["baseline", "quant()"]
    on_size = charts.frontier(df, "size", "accuracy")  # no latency axis: the contended row may stand
    assert set(df.loc[on_size, "recipe"]) == {"baseline", "quant()", "quant(bits=4)", "prune(sparsity=0.5)"}


def test_tradeoff_traces_glyphs_errors_and_reference_lines(df):
    best_i, _ = charts.best(df)
    fig = charts.tradeoff_figure(df, "lat_b1", "accuracy", bubble="size", refs={"majority": 0.55, "tfidf": 0.79},
                                 best_index=best_i, live=[3])
    names = [t.name for t in fig.data]
    assert {"baseline", "quant", "prune", "Pareto frontier", "live knob"} <= set(names)
    assert any(n.startswith("best feasible: ") for n in names)
    assert {"measured latency", "simulated latency", "contended latency"} <= set(names)
    quant = next(t for t in fig.data if t.name == "quant")
    assert list(quant.marker.symbol) == ["circle", "diamond"]  # simulated latency gets its own glyph
    assert quant.error_y.array is not None and np.allclose(quant.error_y.array, 0.01)
    assert list(quant.customdata) == [2, 3]
    line = next(t for t in fig.data if t.name == "Pareto frontier")
    assert list(line.x) == [8.8, 13.0]
    lo, hi = fig.layout.yaxis.range
    assert lo < 0.55 and hi > 0.83  # every point, its interval and both reference lines are in view
    texts = [a.text for a in fig.layout.annotations]
    assert any("majority class 55.0% (measured)" in t for t in texts)
    assert any("TF-IDF" in t and "79.0%" in t for t in texts)


def test_hover_carries_recipe_description_and_every_label(df):
    h = df.loc[df["recipe"] == "quant(bits=4)", "hover"].iloc[0]
    assert "quant(bits=4)" in h and "weights stored in 4 bits" in h
    assert "accuracy 78.00%" in h and "measured" in h
    assert "latency b1 15.00 ms" in h and "simulated" in h
    assert "size 30.00 MiB measured" in h and "nonzero params" in h


def test_best_feasible_moves_with_constraints_and_says_why(df):
    i, contended = charts.best(df)
    assert df.loc[i, "recipe"] == "quant()" and not contended  # the contended faster one is not chosen
    i2, _ = charts.best(df, max_mib=40)
    assert df.loc[i2, "recipe"] == "quant(bits=4)"
    i3, _ = charts.best(df, min_acc=0.815)
    assert df.loc[i3, "recipe"] == "baseline"
    assert charts.best(df, max_mib=1)[0] is None
    s = charts.why(df, i2, max_mib=40)
    assert s.startswith("quant(bits=4) wins") and "≤ 40 MiB" in s and "simulated" in s
    assert "No stored setting" in charts.why(df, None)
    only = df[df["latency_label"] == "contended"]
    j, flagged = charts.best(only)
    assert j is not None and flagged and "contended" in charts.why(only, j, contended=True)


def test_3d_compare_ratios_and_hypervolume(df):
    fig = charts.figure_3d(df)
    assert {t.name for t in fig.data} == {"baseline", "quant", "prune"}
    base = df[df["method"] == "baseline"].iloc[0].to_dict()
    cmp = charts.compare_figure(df, base, "compression")
    quant = next(t for t in cmp.data if t.name == "quant")
    assert np.allclose(sorted(quant.x), sorted([86 / 56, 86 / 30]))
    r = charts.ratios(df, base)
    assert r.loc[r["recipe"] == "quant(bits=4)", "compression ×"].iloc[0] == pytest.approx(86 / 30)
    hv = charts.hypervolumes(df, base, majority=0.5)
    assert set(hv["method"]) == {"quant", "prune"}
    assert hv.loc[hv["method"] == "quant", "hypervolume"].iloc[0] > 0
    assert hv.loc[hv["method"] == "prune", "left out (contended or preview)"].iloc[0] == 1


def test_html_report_embeds_plotlyjs(df):
    base = df[df["method"] == "baseline"].iloc[0].to_dict()
    html = charts.html_report("t", [charts.compare_figure(df, base)], [("ratios", charts.ratios(df, base))])
    assert len(html) > 1_000_000 and "plotly.js" in html.lower() and "quant(bits=4)" in html


@pytest.mark.skipif(shutil.which("chromium") is None and not __import__("os").environ.get("CI"),
                    reason="kaleido needs Chromium (CI installs it)")
def test_png_export(df):
    base = df[df["method"] == "baseline"].iloc[0].to_dict()
    assert charts.png(charts.compare_figure(df, base), 400, 300)[:8] == b"\x89PNG\r\n\x1a\n"


def test_gpu_axes_appear_only_where_cuda_measured_and_keep_their_own_labels(df):
    assert charts.latency_axes(df) == ["lat_b1", "lat_b32"]  # a CPU-only store offers no GPU axis
    gpu = frame([
        dict(method="baseline", recipe="baseline", accuracy=0.82, size_mib=86.0, lat_b1_p50_ms=13.0, gpu="NVIDIA H200",
             gpu_lat_b1_p50_ms=2.0, gpu_lat_b32_p50_ms=2.5, gpu_latency_label="measured", gpu_speedup_b1_note="x"),
        dict(method="cast", recipe="cast(dtype=bf16)", accuracy=0.82, size_mib=43.0, lat_b1_p50_ms=11.0,
             gpu="NVIDIA H200", gpu_lat_b1_p50_ms=1.5, gpu_lat_b32_p50_ms=1.6, gpu_latency_label="measured",
             gpu_speedup_b1_note="1.33x faster"),
        dict(method="quant", recipe="quant()", accuracy=0.81, size_mib=22.0, lat_b1_p50_ms=8.0, gpu="NVIDIA H200",
             gpu_note="not timed on the GPU: torch's dynamic int8 (fbgemm) is a CPU kernel with no CUDA version"),
        dict(method="quant", recipe="quant(bits=4)", accuracy=0.78, size_mib=12.0, lat_b1_p50_ms=15.0,
             latency_label="simulated", gpu="NVIDIA H200", gpu_lat_b1_p50_ms=1.0, gpu_lat_b32_p50_ms=1.2,
             gpu_latency_label="simulated", gpu_speedup_b1_note="2.00x faster"),
    ])
    assert charts.latency_axes(gpu) == ["lat_b1", "lat_b32", "gpu_b1", "gpu_b32"]
    # on the CPU axis int8 is the fastest; on the GPU it has no number and is not a candidate
    assert gpu.loc[charts.best(gpu, latency="lat_b1")[0], "recipe"] == "quant()"
    assert gpu.loc[charts.best(gpu, latency="gpu_b1")[0], "recipe"] == "quant(bits=4)"
    assert "simulated" in charts.why(gpu, charts.best(gpu, latency="gpu_b1")[0], latency="gpu_b1")
    # bf16 ties the baseline's accuracy and is faster there, so the baseline is dominated on the GPU
    assert gpu.loc[charts.frontier(gpu, "gpu_b1", "accuracy"), "recipe"].tolist() == [
        "cast(dtype=bf16)", "quant(bits=4)"]
    fig = charts.tradeoff_figure(gpu, "gpu_b1", "accuracy")
    assert fig.layout.xaxis.title.text == "GPU latency at batch 1, median (ms)"
    q = next(t for t in fig.data if t.name == "quant")
    assert list(q.marker.symbol) == ["circle", "diamond"]  # glyphs follow the GPU's own label
    hov = dict(zip(gpu["recipe"], gpu["hover"]))
    assert ("GPU (NVIDIA H200) latency b1 1.50 ms, b32 1.60 ms measured; speedup b1: 1.33x faster"
            in hov["cast(dtype=bf16)"])
    assert "GPU (NVIDIA H200): not timed on the GPU: torch's dynamic int8" in hov["quant()"]
    assert "GPU" not in df["hover"].iloc[0]  # a CPU-only row says nothing about a GPU
    gpu["gpu_speedup_b1"] = [1.0, 1.33, None, 2.0]
    assert "None of the chosen settings has a latency at GPU batch 1" in charts.why(
        gpu[gpu["method"] == "quant"].iloc[:1], None, latency="gpu_b1")  # int8 alone: no GPU timing to rank
    cmp = charts.compare_figure(gpu, gpu.iloc[0].to_dict(), "speedup", latency="gpu_b1")
    assert cmp.layout.xaxis.title.text.startswith("speedup at GPU batch 1")
    assert list(next(t for t in cmp.data if t.name == "quant").x) == [2.0]  # int8 has no GPU ratio to draw
    # hypervolume on the GPU axis uses the same-session ratio (1 / 2.0), not the stored baseline row's time
    gpu.loc[gpu["method"] == "baseline", "gpu_lat_b1_p50_ms"] = None
    hv = charts.hypervolumes(gpu, gpu.iloc[0].to_dict(), majority=0.5, latency="gpu_b1").set_index("method")
    assert hv.loc["quant", "hypervolume"] == pytest.approx((1 - 12 / 86) * (1 - 0.5) * (0.78 - 0.5))


def test_a_chart_of_many_results_draws_a_sample_but_every_frontier_point_and_the_best():
    rng = np.random.default_rng(0)
    n = charts.MAX_DRAWN * 3
    lat = rng.uniform(2, 20, n)
    big = frame([dict(method=["quant", "prune", "lowrank"][i % 3], recipe=f"r{i}", size_mib=50.0,
                      lat_b1_p50_ms=float(lat[i]), accuracy=float(0.5 + 0.02 * lat[i] + rng.normal(0, 0.05)))
                 for i in range(n)])
    on = charts.frontier(big, "lat_b1", "accuracy")
    best = big.index[-1]
    fig = charts.tradeoff_figure(big, "lat_b1", "accuracy", best_index=best)
    points = [j for t in fig.data if t.mode == "markers" and t.customdata is not None and "best" not in t.name
              for j in t.customdata]
    assert len(points) <= charts.MAX_DRAWN < n
    assert set(big.loc[on, "job_id"]) <= set(points) and big.loc[best, "job_id"] in points
    assert any("showing 2,000 of 6,000 settings" in a.text for a in fig.layout.annotations)
    again = charts.tradeoff_figure(big, "lat_b1", "accuracy", best_index=best)  # the same sample every rerun
    assert [list(t.customdata) for t in again.data if t.customdata is not None] == \
           [list(t.customdata) for t in fig.data if t.customdata is not None]
