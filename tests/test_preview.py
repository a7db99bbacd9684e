"""The live knob's preview tier: a fixed sample and a short timing, labelled preview, drawn hollow, kept off the
frontier, and replaced on the same row by the full measurement."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from compression.measurement import Measurement
from compression.store import Store
from ui import charts
from test_ui_charts import frame


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from compression.artifacts import CompressedModel
    from compression.measure import MeasureSession
    from conftest import make_csv, make_tiny_model

    d = tmp_path_factory.mktemp("preview")
    path = make_tiny_model(d / "bert", head=True)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    df = pd.read_csv(make_csv(d / "d.csv", n=700))
    test = pd.DataFrame({"text": df["review"], "label": (df["sentiment"] == "positive").astype(int)})
    return MeasureSession(CompressedModel.fp32(model), tok, test), model, d


def test_the_sample_is_fixed_stratified_and_at_least_256_rows():
    from compression.measure import preview_sample

    y = np.array([0] * 600 + [1] * 150 + [2] * 50)
    s = preview_sample(y, seed=0)
    assert len(s) >= 256 and len(set(s)) == len(s) and (preview_sample(y, seed=0) == s).all()
    shares = np.bincount(y[s]) / len(s)
    assert np.allclose(shares, [0.75, 0.1875, 0.0625], atol=0.01)  # each class keeps its share
    assert len(preview_sample(y[:200])) == 200  # a small test split is measured whole


def test_a_preview_lands_labelled_and_the_full_measurement_replaces_it(session, tmp_path):
    from compression.engine import Landed, compress
    from compression.recipes import Recipe
    from compression.training import CancelToken
    from compression.workload import Workload

    ms, model, _ = session
    cm = compress(model, Recipe.parse("prune(sparsity=0.5)"), Workload(None, None, None, [], scratch=tmp_path))
    files = cm.save(tmp_path / "art")
    pre = ms.preview(cm, files, recipe_name="prune(sparsity=0.5)", method="prune")
    assert pre.preview and pre.labels.accuracy == "preview" and pre.labels.latency in ("preview", "contended")
    assert 256 <= pre.test_rows < len(ms.tests) and pre.partial and pre.predictions == ()
    assert pre.timing("cpu", 1).p50_ms > 0 and "predictions" not in pre.to_row()
    landings: list[Measurement] = []
    landed = Landed(pre, cm, ms, files, lambda f, m: None, CancelToken(), 0, landings.append)
    full = landed.complete()
    assert [m.preview for m in landings] == [False]  # the full first landing was handed on, then completed
    assert not full.preview and not full.partial and full.test_rows == len(ms.tests)
    assert full.labels.accuracy == "measured" and len(full.predictions) == len(ms.tests)
    assert full.recipe_name == "prune(sparsity=0.5)"


def test_the_full_pass_after_a_preview_predicts_only_the_rows_the_preview_did_not(session, tmp_path, monkeypatch):
    from compression.engine import compress
    from compression.measure import TestSet
    from compression.recipes import Recipe
    from compression.workload import Workload

    ms, model, _ = session
    cm = compress(model, Recipe.parse("prune(sparsity=0.5)"), Workload(None, None, None, [], scratch=tmp_path))
    files = cm.save(tmp_path / "art")
    whole = ms.measure(cm, files, batch32=False, artifact="other").predictions  # no preview: every row
    passes: list[int] = []
    logits = TestSet.logits
    monkeypatch.setattr(TestSet, "logits", lambda self, *a, **k: passes.append(len(self)) or logits(self, *a, **k))
    ms.preview(cm, files, artifact="a")
    full = ms.measure(cm, files, batch32=False, artifact="a")
    assert passes == [len(ms.sample), len(ms.tests) - len(ms.sample)]  # no row is predicted twice
    assert full.predictions == whole and full.test_rows == len(ms.tests)  # the same answers on every row
    ms.measure(cm, files, batch32=False, artifact="a")
    assert passes[-1] == len(ms.tests)  # used once: a second full pass (a re-measure) predicts every row again


def test_a_prefetched_accuracy_pass_yields_between_batches(session):
    from compression.artifacts import CompressedModel
    from compression.measure import Preempted

    ms, model, _ = session
    calls = []
    with pytest.raises(Preempted):
        ms.tests.logits(CompressedModel.fp32(model), stop=lambda: calls.append(1) or len(calls) > 2)
    assert len(calls) == 3 < len(ms.tests.batches)  # stopped after two batches, not at the end


def test_the_store_keeps_one_row_per_job_through_preview_landed_and_done(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    s.add_baseline("fp", "tiny", {}, {}, {})
    s.mark_prepared("fp", str(tmp_path), {})
    (jid,) = s.enqueue("fp", ["r"], "hw", priority=0)
    s.claim("hw", "w:1")
    s.add_partial(jid, {"accuracy": 0.7, "test_rows": 256, "labels": {"accuracy": "preview", "latency": "preview"}})
    assert s.result_count(jid) == 1 and s.results()[0]["data"]["labels"]["accuracy"] == "preview"
    s.add_partial(jid, {"accuracy": 0.8, "test_rows": 1275, "labels": {"accuracy": "measured"}})
    assert s.result_count(jid) == 1 and s.results()[0]["data"]["accuracy"] == 0.8  # replaced on the same row
    s.finish(jid, {"accuracy": 0.8, "lat_b32_p50_ms": 9.0})
    assert s.result_count(jid) == 1


def test_a_preview_never_stands_on_the_frontier_nor_wins_and_is_drawn_hollow():
    df = frame([
        dict(method="baseline", recipe="baseline", accuracy=0.82, size_mib=86.0, lat_b1_p50_ms=13.0),
        dict(method="quant", recipe="quant(bits=8)", accuracy=0.81, size_mib=22.0, lat_b1_p50_ms=6.0),
        dict(method="prune", recipe="prune(sparsity=0.5)", accuracy=0.95, size_mib=10.0, lat_b1_p50_ms=2.0,
             accuracy_label="preview", latency_label="preview", test_rows=256),  # it would dominate everything
    ])
    i = df.index[df["recipe"] == "prune(sparsity=0.5)"][0]
    assert not charts.frontier(df, "lat_b1", "accuracy")[i] and not charts.frontier(df, "size", "accuracy")[i]
    best, _ = charts.best(df)
    assert best != i and df.loc[best, "recipe"] == "quant(bits=8)"
    assert "preview (n=256, the full measurement follows)" in df.loc[i, "hover"]
    fig = charts.tradeoff_figure(df, "lat_b1", "accuracy")
    (tr,) = [t for t in fig.data if t.name == "prune"]
    assert list(tr.marker.symbol) == ["circle-open"]
    hv = charts.hypervolumes(df, {"size_mib": 86.0}, 0.5)
    assert hv.loc[hv["method"] == "prune", "left out (contended or preview)"].iloc[0] == 1


def test_the_page_polls_fast_only_until_a_live_setting_lands():
    from ui.panels import poll_seconds

    queued = {"id": 7, "progress": 0.0}
    landed = {"id": 7, "progress": 0.93}  # its point is on screen; the worker times the rest
    assert poll_seconds([queued], live={7}) == 0.5
    assert poll_seconds([landed], live={7}) == 2.0
    assert poll_seconds([queued], live=set()) == 2.0  # a sweep's job: no hurry


def test_a_prefetched_compression_yields_between_layers(session, tmp_path):
    """A release queued while a prefetched neighbour is still compressing (low rank's SVDs, a calibration pass)
    preempts it there, not after the whole compression; the user's cancel still reads as a cancel."""
    from compression.engine import Yielding, compress
    from compression.recipes import Recipe
    from compression.timing import Preempted
    from compression.training import CancelToken, Cancelled
    from compression.workload import Workload

    _, model, _ = session
    asked = []
    token = Yielding(CancelToken(), lambda: asked.append(1) or len(asked) > 3)
    with pytest.raises(Preempted):
        compress(model, Recipe.parse("lowrank(rank_fraction=0.5)"), Workload(None, None, None, [], scratch=tmp_path,
                                                                         cancel=token))
    assert len(asked) == 4  # it stopped at the third layer's check, not at the end
    user = CancelToken()
    user.cancel()
    with pytest.raises(Cancelled):
        Yielding(user, lambda: False).check()


def test_a_preview_whose_full_pass_never_came_stays_a_preview(session, tmp_path):
    """A preview left behind (its worker died, or the job went back to the queue before the full pass) is read
    back, charted and exported as a preview: never as a full measurement, never on the frontier."""
    from compression.engine import compress
    from compression.recipes import Recipe
    from compression.report import results_frame
    from compression.workload import Workload

    ms, model, _ = session
    cm = compress(model, Recipe.parse("prune(sparsity=0.5)"), Workload(None, None, None, [], scratch=tmp_path))
    pre = ms.preview(cm, cm.save(tmp_path / "art"), recipe_name="prune(sparsity=0.5)", method="prune")
    s = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    s.add_baseline("fp", "tiny", {}, {}, {})
    s.mark_prepared("fp", str(tmp_path), {})
    (jid,) = s.enqueue("fp", [Recipe.parse("prune(sparsity=0.5)").key], "hw", priority=0)
    s.claim("hw", "w:1")
    s.add_partial(jid, pre.to_row())
    s.requeue([jid], states=("running",))  # the full pass never ran
    row = results_frame(s, "fp").iloc[0]
    assert row["accuracy_label"] == "preview" and row["test_rows"] == pre.test_rows < len(ms.tests)
    assert Measurement.from_row(s.results()[0]["data"]).preview
    df = charts.prepare(results_frame(s, "fp"))
    assert "preview (n=" in df["hover"].iloc[0] and not charts.frontier(df, "lat_b1", "accuracy").iloc[0]
