"""The demo's honesty checks (issue 15): downloads that load, estimates that say what they are, the playground
in picked order with disagreements flagged, a live caption that matches the chart, a baseline form that keeps
its pickers, a details panel that says things once. AppTest on copies of the prepared workspace."""
from __future__ import annotations

import io
import re
import zipfile

import numpy as np
import pytest

from compression import api
from test_ui_pages import run, stored, texts, ws, ws_copy  # noqa: F401  (fixtures)


def _second_setting(store, fp: str, bits: int, flip: bool = False) -> int:
    """A stored result for another quant setting, reusing the fixture's int8 result (and its saved model);
    with ``flip`` its stored per-row answers are the opposite of the original's."""
    q = next(r for r in store.results(baseline=fp) if r["recipe"] != "[]")
    data = dict(api.result_data(store, q["job_id"]))
    if flip:
        base = api.baseline_result(store, fp)["predictions"]
        data["predictions"] = [1 - int(p) for p in base]
    (jid,) = store.enqueue(fp, [api.recipe_for("quant", {"bits": bits}).key], api.hardware_id())
    store.finish(jid, {**data, "recipe_name": f"quant(bits={bits})"})
    return jid


def test_sweep_queue_is_disabled_when_every_setting_is_stored(ws):
    at = run("pages/sweep.py")
    at.multiselect(key="knob:quant:bits").set_value([8]).run()  # bits=8 ran in the fixture
    assert "Nothing to run: all 1 setting is already stored." in texts(at)
    assert at.button(key="enqueue").disabled
    assert "about 0.0 s" not in texts(at)
    at.multiselect(key="knob:quant:bits").set_value([4, 8]).run()
    assert not at.button(key="enqueue").disabled


def test_sweep_estimate_for_a_method_never_run_here_says_it_is_estimated(ws):
    at = run("pages/sweep.py")
    at.multiselect(key="sweep_methods").set_value(["quant", "lowrank", "distill"]).run()
    page = texts(at)
    lowrank = next(c.value for c in at.caption if "not yet stored" in c.value and "lowrank has not run" in c.value)
    # the prepared workspace is shared: other tests may have stored more jobs of other methods in it
    assert re.search(r"s per job \(estimated from the median of \d+ jobs? of other post-training methods here: "
                     r"[a-z, ]*quant", lowrank), lowrank
    assert "measured here" not in lowrank
    assert "no estimate: distill trains and has not run here yet" in page
    # quant's own jobs: measured where the shared store holds these bit-widths, else the closest quant job
    assert re.search(r"(per job|each) \((measured here: the median of \d+ quant jobs?|estimated: no quant job with bits=\d[^)]* "
                     r"has run here.*the median of the \d+ quant jobs? closest to it)", page)


def test_downloaded_zip_loads_with_the_projects_loader_and_predicts(ws, tmp_path):
    from compression.artifacts import load
    from compression.models import load_tokenizer
    from ui import panels

    store, df = stored(ws)
    fp = store.baselines()[0]["fingerprint"]
    r = df[df["method"] == "quant"].iloc[0]
    data = panels._zip(store, fp, r["artifact"], r)()  # what the details panel's download button serves
    zipfile.ZipFile(io.BytesIO(data)).extractall(tmp_path)
    folder = tmp_path / f"job{int(r['job_id'])}-quant"
    names = {f.name for f in folder.iterdir()}
    assert {"tokenizer.json", "tokenizer_config.json", "README.md", "manifest.json"} <= names
    assert "from compression.artifacts import load" in (folder / "README.md").read_text()
    model, tok = load(folder), load_tokenizer(folder)
    batch = dict(tok(["a great and moving film"], padding=True, truncation=True, max_length=64, return_tensors="pt"))
    logits = model.predict(batch)
    assert logits.shape == (1, 2) and np.isfinite(logits).all()


def test_downloaded_fp32_zip_loads_with_from_pretrained(ws, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ui import panels

    store, df = stored(ws)
    fp = store.baselines()[0]["fingerprint"]
    r = df[df["method"] == "baseline"].iloc[0]
    zipfile.ZipFile(io.BytesIO(panels._zip(store, fp, r["artifact"], r)())).extractall(tmp_path)
    (folder,) = list(tmp_path.iterdir())
    assert "from_pretrained" in (folder / "README.md").read_text()
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    assert model(**tok(["a dull and boring film"], return_tensors="pt")).logits.shape == (1, 2)


def test_playground_rows_follow_the_picked_order_and_flag_disagreements(ws_copy, monkeypatch):
    store, _ = stored(ws_copy)
    fp = store.baselines()[0]["fingerprint"]
    four = _second_setting(store, fp, 4, flip=True)
    df = api.results_frame(store)
    eight = int(df[df["recipe"] == "quant(bits=8)"]["job_id"].iloc[0])
    real, calls = api.predict_texts, []

    def predict(art, texts_, tok, seq_len=64):  # rows run in order: the second one (bits=4) answers the opposite
        out = real(art, texts_, tok, seq_len)
        calls.append(art)
        return {**out, "pred": [1 - p for p in out["pred"]]} if len(calls) == 2 else out

    monkeypatch.setattr(api, "predict_texts", predict)
    at = run("pages/playground.py", models=f"{four},{eight}")
    out = at.dataframe[0].value
    assert list(out["model"]) == ["baseline", "quant(bits=4)", "quant(bits=8)"]  # the order picked
    assert list(out["vs original"]) == ["same as the original", "⚠ differs from the original",
                                        "same as the original"]
    assert "this call" not in out.columns and all("ms" in v for v in out["stored latency b1"])
    at.button(key="find_disagree").click().run()
    n = len(api.saved_test_split(store, fp))
    assert (f"**{n} test sentences where a picked model disagrees with the original** "
            "(from the stored answers on all ") in texts(at)
    found = at.dataframe[1].value
    assert {"quant(bits=4) says", "quant(bits=8) says"} <= set(found.columns) and len(found) == n


def test_live_caption_never_says_measuring_beside_a_landed_point(ws_copy):
    store, df = stored(ws_copy)
    paths = api.resolve(str(ws_copy))
    at = run()
    at.toggle(key="live_on").set_value(True).run()
    assert "No release has been timed in this workspace yet" in texts(at)
    assert "about 10 s" not in texts(at) and "lands in seconds" not in texts(at)
    at.slider(key="live:quant").set_value(4).run()
    job = next(j for j in store.jobs() if j["state"] == "queued")
    # the worker: the point lands as a preview, then it measures the whole split
    assert store.claim(api.hardware_id(), "test-worker")["id"] == job["id"]
    q = api.result_data(store, int(df[df["method"] == "quant"]["job_id"].iloc[0]))
    store.add_partial(job["id"], {**q, "recipe_name": "quant(bits=4)"})
    store.heartbeat(job["id"], 0.9, "measuring accuracy on the whole test split and batch-1 latency")
    at.run()
    live = [c.value for c in at.caption if c.value.startswith("quant: job")]
    assert live and "landed" in live[0] and "measuring" not in live[0]
    at.run()
    assert "a new setting's point landed a median" in texts(at)  # this wait, timed, is the next promise
    from ui import panels
    assert len(panels.past_times(paths, "point")) == 1


def test_the_page_waits_while_the_worker_times():
    from ui.panels import poll_seconds, should_redraw

    timing = {"id": 3, "state": "running", "progress": 0.93, "message": "measuring batch-32 latency"}
    compressing = {"id": 3, "state": "running", "progress": 0.4, "message": "step 1/1: quant"}
    live_landed = {"id": 7, "state": "running", "progress": 0.9, "message": "measuring accuracy and batch-1 latency"}
    assert not should_redraw([timing], live=set(), drawn=set())  # a sweep's point waits for the timing to end
    assert should_redraw([compressing], live=set(), drawn=set())
    assert should_redraw([live_landed], live={7}, drawn=set())  # the point the user waits for is drawn once
    assert not should_redraw([live_landed], live={7}, drawn={7})
    assert poll_seconds([timing, {"id": 7, "state": "queued", "progress": 0.0}], live={7}) == 2.0


def test_hub_id_keeps_the_dataset_picker_and_says_why_prepare_is_grey(ws):
    at = run("pages/baseline.py")
    at.radio(key="model_kind").set_value("hub").run()
    assert at.radio(key="data_kind")  # the dataset picker stays
    assert at.button(key="prepare").disabled
    assert "Prepare is greyed out until you type the model's Hub id on the left." in texts(at)
    at.radio(key="data_kind").set_value("path").run()
    assert at.text_input(key="data_path")


def test_details_panel_prints_the_description_once(ws):
    store, df = stored(ws)
    q = df[df["method"] == "quant"].iloc[0]
    at = run()
    next(s for s in at.selectbox if s.label == "details for").set_value(int(q["job_id"])).run()
    desc = str(q["description"])
    assert desc and sum(m.value.count(desc) for m in at.markdown) == 1
    assert "with its tokenizer and a README" in at.get("download_button")[0].proto.label


def test_disagreements_run_the_models_on_a_bounded_sample_when_no_answers_are_stored(ws_copy):
    from ui import playground

    store, _ = stored(ws_copy)
    fp = store.baselines()[0]["fingerprint"]
    q = next(r for r in store.results(baseline=fp) if r["recipe"] != "[]")
    data = {k: v for k, v in api.result_data(store, q["job_id"]).items() if k != "predictions"}
    (jid,) = store.enqueue(fp, [api.recipe_for("quant", {"bits": 4}).key], api.hardware_id())
    store.finish(jid, {**data, "recipe_name": "quant(bits=4)"})  # a result stored without per-row answers
    seen = []
    found, source = playground.disagreements(store, fp, api.results_frame(store), [jid],
                                             progress=lambda f, msg: seen.append((f, msg)), sample=40)
    assert source.startswith("a run of each model on the first 40 of ")
    assert seen[-1][0] == 1.0 and any("quant(bits=4)" in m for _, m in seen)
    assert list(found.columns) == ["text", "true label", "original says", "quant(bits=4) says"]
    assert len(found) <= 40
