"""Chart functions: traces, frontier membership, hover fields and labels, best feasible, exports."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from compression.api import CSV_COLUMNS
from ui import charts, charts3d, comparison


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
    quant = [t for t in fig.data if t.name == "quant"]  # a trace per size layer, one legend entry
    assert sum(t.showlegend is not False for t in quant) == 1
    symbol = {j: s for t in quant for j, s in zip(t.customdata, t.marker.symbol)}
    assert symbol == {2: "circle", 3: "diamond"}  # simulated latency gets its own glyph
    assert all(np.allclose(t.error_y.array, 0.01) for t in quant)
    line = next(t for t in fig.data if t.name == "Pareto frontier")
    assert {(8.8, 0.81), (13.0, 0.82)} <= set(zip(line.x, line.y))
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
    assert {t.name for t in fig.data} == {"baseline", "quant", "prune", "Pareto frontier (latency, size and accuracy)"}
    base = df[df["method"] == "baseline"].iloc[0].to_dict()
    cmp = comparison.compare_figure(df, base, "compression")
    quant = next(t for t in cmp.data if t.name == "quant")
    assert np.allclose(sorted(quant.x), sorted([86 / 56, 86 / 30]))
    r = comparison.ratios(df, base)
    assert r.loc[r["recipe"] == "quant(bits=4)", "compression ×"].iloc[0] == pytest.approx(86 / 30)
    hv = charts.hypervolumes(df, base, majority=0.5)
    assert set(hv["method"]) == {"quant", "prune"}
    assert hv.loc[hv["method"] == "quant", "hypervolume"].iloc[0] > 0
    assert hv.loc[hv["method"] == "prune", "left out (contended or preview)"].iloc[0] == 1


def test_html_report_embeds_plotlyjs(df):
    base = df[df["method"] == "baseline"].iloc[0].to_dict()
    html = comparison.html_report("t", [comparison.compare_figure(df, base)], [("ratios", comparison.ratios(df, base))])
    assert len(html) > 1_000_000 and "plotly.js" in html.lower() and "quant(bits=4)" in html


@pytest.mark.skipif(shutil.which("chromium") is None and not __import__("os").environ.get("CI"),
                    reason="kaleido needs Chromium (CI installs it)")
def test_png_export(df):
    base = df[df["method"] == "baseline"].iloc[0].to_dict()
    assert comparison.image(comparison.compare_figure(df, base), "png", 400, 300)[:8] == b"\x89PNG\r\n\x1a\n"


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
    cmp = comparison.compare_figure(gpu, gpu.iloc[0].to_dict(), "speedup", latency="gpu_b1")
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


def _draw_order(fig):
    """(job id, marker size) of every setting's marker, in the order Plotly paints them."""
    return [(j, float(sz)) for t in fig.data if t.mode == "markers" and t.customdata is not None
            and t.name != "live knob" and not t.name.startswith("best")
            for j, sz in zip(t.customdata, np.broadcast_to(t.marker.size, len(t.customdata)))]


def test_small_markers_are_drawn_over_big_ones():
    d = frame([dict(method="prune", recipe="prune(sparsity=0.1)", accuracy=0.81, size_mib=86.0, lat_b1_p50_ms=12.0),
               dict(method="prune", recipe="prune(sparsity=0.9)", accuracy=0.70, size_mib=4.0, lat_b1_p50_ms=11.0),
               dict(method="quant", recipe="quant()", accuracy=0.80, size_mib=40.0, lat_b1_p50_ms=11.5)])
    sizes = [sz for _, sz in _draw_order(charts.tradeoff_figure(d, "lat_b1", "accuracy", bubble="size"))]
    assert sorted({j for j, _ in _draw_order(charts.tradeoff_figure(d, bubble="size"))}) == [1, 2, 3]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]


def test_settings_on_one_spot_name_each_other_in_the_tooltip_that_shows(df):
    d = frame([dict(method="baseline", recipe="baseline", accuracy=0.82, size_mib=86.0, lat_b1_p50_ms=13.0),
               dict(method="quant", recipe="quant(bits=8)", accuracy=0.813, size_mib=22.4, lat_b1_p50_ms=9.70),
               dict(method="quant", recipe="quant(kernel=ort)", accuracy=0.813, size_mib=22.5, lat_b1_p50_ms=9.72),
               dict(method="prune", recipe="prune(sparsity=0.9)", accuracy=0.60, size_mib=80.0, lat_b1_p50_ms=30.0)])
    fig = charts.tradeoff_figure(d, "lat_b1", "accuracy", bubble="size")
    tips = {j: h for t in fig.data if t.customdata is not None for j, h in zip(t.customdata, t.hovertext)}
    assert "also at this spot: quant(kernel=ort)" in tips[2] and "also at this spot: quant(bits=8)" in tips[3]
    assert "also at this spot" not in tips[1] + tips[4]  # far apart: each shows only itself


def test_a_latency_axis_spanning_more_than_10x_is_logarithmic(df):
    assert charts.tradeoff_figure(df, "lat_b1", "accuracy").layout.xaxis.type in (None, "linear", "-")
    slow = pd.concat([df, frame([dict(method="cast", recipe="cast(dtype=bf16)", accuracy=0.82, size_mib=43.0,
                                      lat_b1_p50_ms=2863.0)])], ignore_index=True)
    fig = charts.tradeoff_figure(slow, "lat_b1", "accuracy")
    assert fig.layout.xaxis.type == "log" and "log scale" in fig.layout.xaxis.title.text
    assert charts.tradeoff_figure(slow, "lat_b1", "size").layout.xaxis.type == "log"
    assert charts.tradeoff_figure(slow, "size", "accuracy").layout.xaxis.type != "log"  # a size axis stays linear


def test_points_failing_the_constraints_are_dimmed_and_say_why(df):
    cons = {"max_mib": 40.0, "max_ms": None, "min_acc": None}
    fig = charts.tradeoff_figure(df, "lat_b1", "accuracy", constraints=cons)
    size = dict(zip(df["job_id"], df["size_mib"]))
    for t in fig.data:
        if t.customdata is not None and t.name in set(df["method"]):
            for j, op, tip in zip(t.customdata, t.marker.opacity, t.hovertext):
                assert (op < 0.5) == (size[j] > 40), (j, op)
                assert ("fails your constraints: bigger than 40 MiB" in tip) == (size[j] > 40)
    assert "faint: fails your constraints" in [t.name for t in fig.data]
    plain = charts.tradeoff_figure(df, "lat_b1", "accuracy")
    assert all(np.all(np.asarray(t.marker.opacity) > 0.5) for t in plain.data if t.name in set(df["method"]))


def test_every_2d_view_draws_its_frontier_even_a_single_point():
    d = frame([dict(method="baseline", recipe="baseline", accuracy=0.82, size_mib=86.0, lat_b1_p50_ms=13.0),
               dict(method="quant", recipe="quant()", accuracy=0.81, size_mib=22.0, lat_b1_p50_ms=8.0),
               dict(method="prune", recipe="prune()", accuracy=0.80, size_mib=60.0, lat_b1_p50_ms=11.0)])
    for x, y in (("lat_b1", "accuracy"), ("size", "accuracy"), ("lat_b1", "size"), ("lat_b1", "params")):
        line = next(t for t in charts.tradeoff_figure(d, x, y).data if t.name == "Pareto frontier")
        vertices = set(zip(line.x, line.y))
        assert len(vertices) >= 2, (x, y)  # a line Plotly can draw, not one lone point
        on = d[charts.frontier(d, x, y)]
        xc, yc = charts.AXES[x][0], charts.AXES[y][0]
        assert set(zip(on[xc], on[yc])) <= vertices, (x, y)
    # latency vs size: int8 is both fastest and smallest, the whole frontier; its corner still shows
    assert d.loc[charts.frontier(d, "lat_b1", "size"), "recipe"].tolist() == ["quant()"]


def test_the_size_view_keeps_contended_timings_on_its_frontier_and_says_so(df):
    i = df.index[df["recipe"] == "prune(sparsity=0.5)"][0]  # contended latency
    assert charts.frontier(df, "size", "accuracy")[i] and not charts.frontier(df, "lat_b1", "accuracy")[i]
    sym = {j: s for t in charts.tradeoff_figure(df, "size", "accuracy").data if t.customdata is not None
           for j, s in zip(t.customdata, t.marker.symbol)}
    assert sym[df.loc[i, "job_id"]] == "circle"  # no latency on this view: no ✕ on a frontier point
    lat_sym = {j: s for t in charts.tradeoff_figure(df, "lat_b1", "accuracy").data if t.customdata is not None
               for j, s in zip(t.customdata, t.marker.symbol)}
    assert lat_sym[df.loc[i, "job_id"]] == "x"
    assert "contended timings included" in charts.caption("size", "accuracy")
    assert "✕ contended (left off the frontier)" in charts.caption("lat_b1", "accuracy", bubble=True)
    assert "✕" not in charts.caption("size", "accuracy")


def test_the_3d_view_has_the_size_choice_the_star_the_frontier_and_clickable_points(df):
    best_i, _ = charts.best(df)
    fig = charts.figure_3d(df, "lat_b1", size="params", best_index=best_i, constraints={"max_mib": 40.0})
    assert fig.layout.scene.yaxis.title.text == "nonzero parameters"
    methods = [t for t in fig.data if t.name in set(df["method"])]
    assert all(list(t.y) == list(df.set_index("job_id").loc[list(t.customdata), "nonzero_params"]) for t in methods)
    star = next(t for t in fig.data if t.name.startswith("best feasible: "))
    assert list(star.customdata) == [df.loc[best_i, "job_id"]] and "best" in star.text[0]
    ring = next(t for t in fig.data if t.name.startswith("Pareto frontier"))
    on = charts3d.frontier_3d(df, "lat_b1", "params")
    assert len(ring.x) == int(on.sum()) > 0
    clickable = {j for t in methods for j in t.customdata}
    assert clickable == set(df["job_id"])  # every setting carries its job id for click-to-details
    faint = {j for t in methods if t.opacity < 0.5 for j in t.customdata}
    assert faint == set(df.loc[df["size_mib"] > 40, "job_id"])
    assert charts.figure_3d(df).layout.scene.yaxis.title.text == "size on disk (MiB)"
    assert "details for" in charts3d.caption_3d() and "Click a point" not in charts3d.caption_3d()
