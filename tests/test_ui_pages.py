"""AppTest per page, on a store filled by a real sweep of a tiny random model (the `prepared` fixture).

Each test asserts that a value read from the store is on the page. Tests that write (enqueue, archive)
work on a copy of the prepared workspace, so the others keep seeing the fixture's store.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from compression import api
from conftest import huge_model

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _env(monkeypatch, ws: Path) -> None:
    monkeypatch.setenv("COMPRESSION_WORKSPACE", str(ws))
    monkeypatch.delenv("COMPRESSION_STORE_URL", raising=False)
    monkeypatch.setenv("COMPRESSION_NO_AUTOSTART", "1")
    monkeypatch.setenv("COMPRESSION_NO_WORKER_SPAWN", "1")  # tests drive the store; no background worker


@pytest.fixture
def ws(prepared, monkeypatch) -> Path:
    _env(monkeypatch, prepared[0])
    return prepared[0]


@pytest.fixture
def ws_copy(prepared, tmp_path, monkeypatch) -> Path:
    dst = tmp_path / "ws"
    shutil.copytree(prepared[0], dst, ignore=shutil.ignore_patterns("worker.lock"))
    _env(monkeypatch, dst)
    return dst


def run(page: str | None = None, **qp) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    for k, v in qp.items():
        at.query_params[k] = v
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [h.value for h in at.subheader] + [c.value for c in at.caption] + [e.value for e in at.error] + [s.value for s in at.success]
    parts += [i.value for i in at.info] + [str(m.value) + " " + m.label for m in at.metric]
    parts += [d.value.to_string() for d in at.dataframe]
    return "\n".join(map(str, parts))


def stored(ws: Path):
    paths, store = api.open_workspace(str(ws))
    df = api.results_frame(store)
    return store, df


def test_tradeoffs_shows_stored_points_best_setting_and_url_state(ws):
    store, df = stored(ws)
    at = run()
    page = texts(at)
    assert str(ws) in page  # the sidebar names the workspace and store
    assert api.hardware_id() in page
    best = [m.value for m in at.markdown if m.value.startswith("**Best feasible:")]
    assert best and any(r in best[0] for r in df["recipe"])
    q = df[df["method"] == "quant"].iloc[0]
    assert f"{q['accuracy'] * 100:.2f}%" in page and q["accuracy_label"] in page
    assert at.query_params["baseline"] in (df["baseline"].iloc[0], [df["baseline"].iloc[0]])
    at.slider(key="c_mib").set_value(0.0).run()
    assert "No stored setting meets these constraints" in texts(at)
    assert at.query_params["max_mib"] in ("0.0", ["0.0"])


def test_tradeoffs_details_panel_shows_flips_and_download(ws):
    store, df = stored(ws)
    q = df[df["method"] == "quant"].iloc[0]
    at = run()
    next(s for s in at.selectbox if s.label == "details for").set_value(int(q["job_id"])).run()
    page = texts(at)
    assert f"Details: {q['recipe']}" in page
    assert "Sentences whose prediction flips:" in page and f"of {int(q['test_rows'])} test rows" in page
    assert at.get("download_button")


def test_live_knob_queues_one_setting(ws_copy):
    store, _ = stored(ws_copy)
    at = run()
    at.toggle(key="live_on").set_value(True).run()
    fp = store.baselines()[0]["fingerprint"]
    assert api.resolve(str(ws_copy)).keepalive(fp).exists()  # the worker is asked to stay warm
    assert "Worker starting: loading the baseline" in texts(at)  # no worker in tests, so it says so
    at.slider(key="live:quant").set_value(4).run()
    live = [s for s in store.sweeps() if s["name"] == "live knob"]
    assert live and len(live[0]["job_ids"]) == 1
    job = store.jobs(ids=live[0]["job_ids"])[0]
    assert api.Recipe.from_key(job["recipe"]).name == "quant(bits=4)"
    assert f"job {job['id']} queued" in texts(at)
    assert "stored near here (at once on release): 8" in texts(at)  # bits=8 ran in the fixture: no wait for it
    wish = api.resolve(str(ws_copy)).workspace / "prefetch" / f"{fp}.json"
    assert '"quant": {"knob": "bits", "value": 4' in wish.read_text()  # the worker prefetches around 4 bits
    n_jobs = len(store.jobs())
    at.slider(key="live:quant").set_value(8).run()  # a stored value: its point at once, nothing queued
    done8 = next(j for j in store.jobs() if j["recipe"] == api.recipe_for("quant", {"bits": 8}).key)
    assert f"quant: job {done8['id']} done" in texts(at) and len(store.jobs()) == n_jobs


def test_sweep_page_counts_enqueues_and_follows(ws_copy):
    store, df = stored(ws_copy)
    at = run("pages/sweep.py")
    page = texts(at)
    sweep = store.sweeps()[0]
    assert f"**{len(sweep['job_ids'])}** done" in page
    at.multiselect(key="knob:quant:bits").set_value([4, 8]).run()
    assert "2 settings, 1 not yet stored" in texts(at)  # bits=8 ran in the fixture
    # bits decides the kernel under auto: measured where the shared store already ran bits=4, else estimated
    assert re.search(r"s per job \((measured here: the median of \d+ quant jobs? with bits=4|"
                     r"estimated: no quant job with bits=4[^)]* has run here)", texts(at))
    at.button(key="enqueue").click().run()
    assert any(j["state"] == "queued" for j in store.jobs())
    assert "Queued 1 sweep(s)" in texts(at)
    at.button(key="archive").click().run()
    assert "archived" in texts(at)
    at.button(key="undo_archive").click().run()
    assert all(s["archived_at"] is None for s in store.sweeps(archived=None))


def test_sweep_page_reports_an_empty_sweep(ws):
    at = run("pages/sweep.py")
    at.multiselect(key="knob:quant:bits").set_value([]).run()
    assert "empty" in texts(at).lower()


def test_compare_page_ratios_and_hypervolume(ws):
    store, df = stored(ws)
    at = run("pages/compare.py")
    hv, table = at.dataframe[0].value, at.dataframe[1].value
    assert "quant" in set(hv["method"])
    q = df[df["method"] == "quant"].iloc[0]
    assert q["recipe"] in set(table["recipe"])
    assert len(at.get("download_button")) == 4


def test_playground_predicts_with_labels(ws):
    store, df = stored(ws)
    fp = store.baselines()[0]["fingerprint"]
    names = store.baseline(fp)["info"]["label_names"]
    at = run("pages/playground.py")
    at.text_area(key="sentence").set_value("a great and moving film").run()
    out = at.dataframe[0].value
    assert "baseline" in set(out["model"]) and set(out["label"]) <= set(names)
    assert any("measured" in s or "contended" in s for s in out["stored latency b1"])


def test_baseline_page_shows_measured_numbers_and_rejects_a_wrong_path_or_a_model_too_big(ws, tmp_path):
    store, _ = stored(ws)
    info = store.baselines()[0]["info"]
    at = run("pages/baseline.py")
    assert f"{info['tfidf_accuracy'] * 100:.2f}%" in texts(at)
    assert info["cleaning_summary"] in texts(at) and "sequence length" in texts(at)
    at.radio(key="model_kind").set_value("local").run()
    at.text_input(key="model_ref").set_value("/no/such/model-folder").run()
    at.button(key="prepare").click().run()
    assert at.error and "no/such/model-folder" in at.error[0].value
    assert len(store.baselines()) == 1  # nothing stored changed
    at.text_input(key="model_ref").set_value(str(huge_model(tmp_path / "huge"))).run()
    at.button(key="prepare").click().run()
    assert at.error and "needs about 5,121.0 GiB of memory" in at.error[0].value
    assert len(store.baselines()) == 1


def test_first_run_autostart_stays_off_under_tests(tmp_path, monkeypatch):
    _env(monkeypatch, tmp_path / "empty")
    at = run()
    assert "No baseline yet" in texts(at)
    assert api.open_workspace(str(tmp_path / "empty"))[1].baselines() == []


def test_first_run_registers_the_default_queues_a_starter_sweep_and_shows_progress(tmp_path, monkeypatch,
                                                                                   tiny_model, tiny_csv):
    """Autostart on (as for a newcomer). The tiny fixture stands in for the embedded default, whose
    registration would read the real model; the worker is not spawned, so nothing trains."""
    _env(monkeypatch, tmp_path / "fresh")
    monkeypatch.delenv("COMPRESSION_NO_AUTOSTART")
    real = api.register_baseline
    monkeypatch.setattr(api, "register_baseline", lambda store: real(
        store, model=str(tiny_model), dataset=str(tiny_csv), text_col="review", label_col="sentiment"))
    at = run()
    store = api.open_workspace(str(tmp_path / "fresh"))[1]
    (b,) = store.baselines()
    jobs = store.jobs(baseline=b["fingerprint"])
    assert [j["state"] for j in jobs if j["recipe"] == "prepare"] == ["queued"]
    assert {s["name"] for s in store.sweeps()} >= {"starter quant"}
    assert len(jobs) > 3  # preparation, the baseline's own measurement and the starter settings
    bar = at.get("progress")
    assert bar and "Preparing tiny-bert on reviews.csv" in bar[0].proto.text
    at.run()  # a second run does not queue the starter sweep again
    assert len(store.sweeps()) == len({s["name"] for s in store.sweeps()})


def test_sweep_page_builds_widgets_for_every_registered_method(ws):
    at = run("pages/sweep.py")
    names = [t.method for t in api.methods()]
    at.multiselect(key="sweep_methods").set_value(names).run()
    assert not at.exception, [e.message for e in at.exception]
    expected = sum(len(api.expand_recipes(m, {k["name"]: api.parse_values(k["sweep"], k["type"])
                                              for k in api.knobs(m) if k.get("sweep")})) for m in names)
    assert f"**{expected} settings in all" in texts(at)


def test_tradeoffs_offers_gpu_axes_for_results_measured_where_cuda_was_present(ws_copy):
    """Rows from a CUDA machine (here: the real rows, with the GPU columns a CUDA worker adds) bring the
    GPU latency axes; the slider, the best-setting sentence and the details all follow the chosen axis."""
    store, df = stored(ws_copy)
    for i, r in enumerate(store.results()):
        d = dict(r["data"])
        if r["recipe"] == "[]":
            d.update(gpu="NVIDIA H200", gpu_lat_b1_p50_ms=3.5, gpu_lat_b32_p50_ms=3.1)
        else:
            d.update(gpu="NVIDIA H200", gpu_note="not timed on the GPU: torch's dynamic int8 (fbgemm) is a CPU "
                                                 "kernel with no CUDA version")
        d["labels"] = {**d["labels"], "gpu_latency": "measured"}
        store.finish(r["job_id"], d)
    at = run(lat="gpu_b1")
    radio = at.radio(key="lat")
    assert list(radio.options) == ["batch 1", "batch 32", "GPU batch 1", "GPU batch 32"] and radio.value == "gpu_b1"
    assert at.slider(key="c_ms").label == "max latency (ms, GPU batch 1)"
    best = [m.value for m in at.markdown if m.value.startswith("**Best feasible:")][0]
    assert "**Best feasible: baseline**" in best and "3.50 ms measured" in best  # the only row with a GPU time
    page = texts(at)
    assert "GPU (NVIDIA H200) latency b1 3.50 ms, b32 3.10 ms measured" in page
    at.selectbox(key=next(s.key for s in at.selectbox if s.label == "details for")).set_value(
        int(df[df["method"] == "quant"]["job_id"].iloc[0])).run()
    assert "GPU (NVIDIA H200): not timed on the GPU: torch's dynamic int8" in texts(at)
    assert "3.50 ms measured (NVIDIA H200)" in texts(at)  # the results table's GPU column
    at.switch_page("pages/compare.py").run()
    assert not at.exception and at.radio(key="cmp_lat").value == "gpu_b1"  # the axis follows through the URL
    assert "latency ratio at GPU batch 1" in texts(at)
    # a second GPU model in the same store: its timings never share a frontier with the first one's
    q = next(r for r in store.results() if r["recipe"] != "[]")
    store.finish(q["job_id"], {**q["data"], "gpu": "NVIDIA L4", "gpu_note": None, "gpu_lat_b1_p50_ms": 9.0,
                               "gpu_lat_b32_p50_ms": 9.5})
    at = run(lat="gpu_b1")
    assert at.selectbox(key="gpu").options == ["NVIDIA H200", "NVIDIA L4"]
    assert "**Best feasible: baseline**" in texts(at)
    at.selectbox(key="gpu").set_value("NVIDIA L4").run()
    assert "9.00 ms measured" in [m.value for m in at.markdown if m.value.startswith("**Best feasible:")][0]


def test_sweep_page_marks_an_optional_runtime_this_machine_lacks_and_refuses_it_on_queue(ws_copy, monkeypatch):
    """make run leaves OpenVINO out: its kernel choice says 'not installed here', and queueing it says how to
    install it, with nothing stored."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    store, _ = stored(ws_copy)
    at = run("pages/sweep.py")
    at.checkbox(key="adv:quant").check().run()
    kernel = at.multiselect(key="knob:quant:kernel")
    assert "openvino (not installed here)" in list(kernel.options) and "ort-fused" in list(kernel.options)
    n = len(store.jobs())
    kernel.set_value(["openvino"]).run()
    at.multiselect(key="knob:quant:bits").set_value([8]).run()
    at.button(key="enqueue").click().run()
    assert "requirements-openvino.txt" in texts(at) and len(store.jobs()) == n
