"""No hidden state: packed weights are a declared field of the compressed model (not an attribute stuck
on a torch module), and quantizing on ONNX Runtime leaves the process's loggers as it found them."""
from __future__ import annotations

import logging

import pandas as pd
import pytest

from compression.artifacts import load
from compression.engine import compress
from compression.recipes import Recipe
from compression.specs import PruneSpec, QuantSpec
from compression.workload import Workload
from conftest import make_csv, make_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    d = tmp_path_factory.mktemp("m")
    path = make_tiny_model(d / "bert", head=True, hidden=64, intermediate=128)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    df = pd.read_csv(make_csv(d / "d.csv", n=60))
    df = pd.DataFrame({"text": df["review"], "label": (df["sentiment"] == "positive").astype(int)})
    return model, AutoTokenizer.from_pretrained(path), df


@pytest.mark.parametrize("spec, fmt", [(PruneSpec(sparsity=0.5), "sparse"),
                                       (QuantSpec(bits=4, kernel="rtn"), "rtn"),
                                       (QuantSpec(bits=8, kernel="torch", embeddings="8"), "rtn")])
def test_packed_is_a_field_that_survives_save_and_load(spec, fmt, tiny, tmp_path):
    model, tok, df = tiny
    cm = compress(model, Recipe((spec,)), Workload(tok, df, df, ["negative", "positive"], scratch=tmp_path))
    assert cm.packed and {p.fmt for p in cm.packed.values()} == {fmt}
    assert not any(hasattr(m, "_packed") for m in cm.module.modules())
    cm.save(tmp_path / "a")
    again = load(tmp_path / "a")
    assert again.packed.keys() == cm.packed.keys()
    assert {k: p.shape for k, p in again.packed.items()} == {k: p.shape for k, p in cm.packed.items()}


def test_ort_quantization_leaves_the_loggers_alone(tiny, tmp_path, caplog):
    model, tok, df = tiny
    root = logging.getLogger()
    level, handlers, filters = root.level, list(root.handlers), list(root.filters)
    cm = compress(model, Recipe((QuantSpec(bits=8, kernel="ort"),)),
                  Workload(tok, df, df, ["negative", "positive"], scratch=tmp_path))
    assert cm.runtime == "onnxruntime"
    assert (root.level, root.handlers, root.filters) == (level, handlers, filters)
    # its pre-processing advice is dropped during the call (and only then)
    assert not [r for r in caplog.records if "onnxruntime" in r.pathname and r.levelno < logging.ERROR]
