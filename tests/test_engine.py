"""compress() leaves both of its inputs as they were; a worker session caches the baseline's test logits."""
from __future__ import annotations

import pandas as pd
import pytest

from compression import Recipe
from compression.engine import compress
from compression.workload import Workload
from conftest import make_csv, make_tiny_model


@pytest.fixture
def tiny(tmp_path):
    """A tiny random BERT classifier, its tokenizer and 60 labelled rows."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = make_tiny_model(tmp_path / "bert", head=True)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    df = pd.read_csv(make_csv(tmp_path / "d.csv", n=60))
    return model, tok, pd.DataFrame({"text": df["review"], "label": (df["sentiment"] == "positive").astype(int)})


def test_a_chain_leaves_the_callers_workload_untouched(tiny, tmp_path):
    model, tok, df = tiny
    w = Workload(tok, df, df, ["negative", "positive"], scratch=tmp_path, onnx_cache=tmp_path / "fp32.onnx")
    before = dict(vars(w))
    cm = compress(model, Recipe.parse("prune(sparsity=0.5)>lowrank(rank=4)"), w)
    assert cm.module is not model and len(cm.notes) == 2  # both steps ran
    assert vars(w) == before  # the baseline's ONNX cache is still the caller's, for the next job


def test_a_second_worker_session_reads_the_baselines_test_logits_from_its_cache(tiny, tmp_path):
    """Turning the live knob on starts a worker; with the baseline's logits cached it skips the accuracy pass."""
    import numpy as np

    from compression.artifacts import CompressedModel
    from compression.measure import MeasureSession

    model, tok, test = tiny
    first = MeasureSession(CompressedModel.fp32(model), tok, test, cache=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("baseline-logits-*.npy"))) == 1

    class Unusable(CompressedModel):
        def predict(self, batch):
            raise AssertionError("the cached logits should have been used")

    again = MeasureSession(Unusable("dense", "torch", "fp32", module=model), tok, test, cache=tmp_path / "cache")
    np.testing.assert_array_equal(again.base_logits, first.base_logits)
    other = test.iloc[:40]  # other test rows: another key, computed afresh
    assert MeasureSession(CompressedModel.fp32(model), tok, other, cache=tmp_path / "cache").base_logits.shape[0] == 40


def test_the_default_is_the_newest_prepared_of_its_preparations(tmp_path):
    """A workspace that prepared the default before the bucketed fine-tune keeps that row; once the default
    is prepared again, the app, the live knob and the benchmarks use the new one."""
    from compression import api
    from compression.store import Store

    s = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    src = {"kind": "default"}
    s.add_baseline("old", "default, unbucketed", src, src, {"training": {"steps": 240}})
    s.mark_prepared("old", str(tmp_path), {})
    s.add_baseline("new", "default, bucketed", src, src, {"training": {"steps": 240, "buckets": True}})
    assert api.default_baseline(s)["fingerprint"] == "old"  # the new one is still being prepared
    s.mark_prepared("new", str(tmp_path), {})
    assert api.default_baseline(s)["fingerprint"] == "new"
