"""Distillation, structured pruning, chains and cancellation on a tiny random BERT."""
from __future__ import annotations

import math
import threading
import time

import pandas as pd
import pytest
import torch

from compression import Recipe, hardware_id, resolve
from compression.engine import compress
from compression.executors import run_worker
from compression.methods.distill import distill_loss, spaced_layers
from compression.specs import DistillSpec, HeadsSpec, LayersSpec, NeuronsSpec, SpecError
from compression.store import Store
from compression.workload import Workload
from conftest import make_csv, make_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    d = tmp_path_factory.mktemp("m")
    path = make_tiny_model(d / "bert", head=True, layers=4, hidden=64, intermediate=128)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    df = pd.read_csv(make_csv(d / "d.csv", n=120))
    df = pd.DataFrame({"text": df["review"], "label": (df["sentiment"] == "positive").astype(int)})
    return model, tok, df


def wl(tiny, tmp_path):
    model, tok, df = tiny
    return Workload(tok, df, df, ["negative", "positive"], scratch=tmp_path, teacher=model)


def test_distillation_loss_matches_hand_computation():
    s = torch.tensor([[2.0, 0.0]])
    t = torch.tensor([[0.0, 2.0]])
    y = torch.tensor([0])
    alpha, T = 0.25, 2.0
    ce = -math.log(math.exp(2) / (math.exp(2) + 1))
    p = [math.exp(0) / (1 + math.e), math.e / (1 + math.e)]  # teacher softened by T: logits (0, 1)
    q = [math.e / (1 + math.e), 1 / (1 + math.e)]  # student softened: logits (1, 0)
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    expected = alpha * ce + (1 - alpha) * T * T * kl
    assert abs(float(distill_loss(s, t, y, alpha, T)) - expected) < 1e-5
    assert abs(float(distill_loss(s, s, y, alpha, T)) - alpha * ce) < 1e-6  # same logits: no KL term


def test_spaced_layers_keep_the_last():
    assert spaced_layers(6, 3) == [1, 3, 5] and spaced_layers(6, 1) == [5] and spaced_layers(4, 2) == [1, 3]


@pytest.mark.parametrize("spec, layers, width", [
    (DistillSpec(student_layers=2, steps=3), 2, 64),
    (DistillSpec(student_layers=3, width=32, steps=3), 3, 32),
    (DistillSpec(student_layers=2, layer_map="0,2", steps=3, hidden_mse=1.0), 2, 64),
    (DistillSpec(student_layers=1, width=16, width_init="random", steps=2), 1, 16),
])
def test_student_has_requested_layers_and_width(spec, layers, width, tiny, tmp_path):
    model, *_ = tiny
    cm = compress(model, Recipe((spec,)), wl(tiny, tmp_path))
    s = cm.module
    assert len(s.base_model.encoder.layer) == layers and s.config.num_hidden_layers == layers
    assert s.base_model.embeddings.word_embeddings.weight.shape[1] == width
    assert len(model.base_model.encoder.layer) == 4  # the teacher is untouched


def test_heads_neurons_layers_really_shrink(tiny, tmp_path):
    model, tok, df = tiny
    batch = dict(tok(df["text"].tolist()[:8], padding=True, return_tensors="pt"))
    cm = compress(model, Recipe((HeadsSpec(fraction=0.5, importance="grad"),)), wl(tiny, tmp_path))
    q = [l.attention.self.query.out_features for l in cm.module.base_model.encoder.layer]
    assert sum(q) == 64 * 4 // 2 and min(q) >= 16  # half the heads gone; every layer keeps one (head dim 16)
    assert torch.isfinite(cm.module(**batch).logits).all()
    cm = compress(model, Recipe((NeuronsSpec(fraction=0.75, importance="grad"),)), wl(tiny, tmp_path))
    assert all(l.intermediate.dense.out_features == 32 and l.output.dense.in_features == 32
               for l in cm.module.base_model.encoder.layer)
    cm = compress(model, Recipe((LayersSpec(fraction=0.5, importance="norm"),)), wl(tiny, tmp_path))
    assert len(cm.module.base_model.encoder.layer) == 2
    assert torch.isfinite(cm.module(**batch).logits).all()


def test_chain_applies_in_order_and_reloads(tiny, tmp_path):
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    from compression.artifacts import load

    model, tok, df = tiny
    r = Recipe.parse("layers(fraction=0.5,importance=norm)>heads(fraction=0.25,importance=norm)>quant(bits=8)")
    cm = compress(model, r, wl(tiny, tmp_path))
    assert len(cm.module.base_model.encoder.layer) == 2
    assert any(isinstance(m, QLinear) for m in cm.module.modules())
    assert [n.split()[0] for n in cm.notes[:2]] == ["kept", "kept"] and "int8" in cm.notes[2]
    cm.save(tmp_path / "a")
    batch = dict(tok(df["text"].tolist()[:8], padding=True, return_tensors="pt"))
    torch.testing.assert_close(torch.from_numpy(load(tmp_path / "a").predict(batch)),
                               torch.from_numpy(cm.predict(batch)))


@pytest.mark.parametrize("make, words", [
    (lambda: DistillSpec(student_layers=0), "student_layers=0 is out of range"),
    (lambda: DistillSpec(alpha=1.5), "alpha=1.5 is out of range"),
    (lambda: DistillSpec(alpha=-0.1), "alpha=-0.1 is out of range"),
    (lambda: DistillSpec(temperature=0), "temperature=0.0 is out of range"),
    (lambda: HeadsSpec(fraction=1.0), "fraction=1.0 is out of range"),
    (lambda: DistillSpec(student_layers=2, layer_map="0,1,2"), "lists 3 layers"),
])
def test_impossible_training_knobs(make, words):
    with pytest.raises(SpecError, match=words.replace(".", r"\.")):
        make()


def test_more_student_layers_than_teacher_is_rejected(tiny, tmp_path):
    model, *_ = tiny
    with pytest.raises(SpecError, match="fewer than the teacher's 4 layers"):
        compress(model, Recipe((DistillSpec(student_layers=4, steps=1),)), wl(tiny, tmp_path))


def test_cancelled_long_job_is_cancelled_not_failed_and_stores_nothing(prepared):
    ws, _ = prepared
    paths = resolve(ws)
    store = Store(paths.store_url)
    (b,) = store.baselines()
    (jid,) = store.enqueue(b["fingerprint"], [Recipe((DistillSpec(student_layers=1, steps=20000),)).key],
                           hardware_id())
    t = threading.Thread(target=run_worker, args=(paths, store), kwargs={"idle_exit": 0.0})
    t.start()
    deadline = time.time() + 60
    while time.time() < deadline and "training step" not in (store.job(jid)["message"] or ""):
        time.sleep(0.1)
    store.cancel([jid])
    t.join(timeout=60)
    assert not t.is_alive()
    job = store.job(jid)
    assert job["state"] == "cancelled" and store.result_count(jid) == 0


@pytest.mark.parametrize("step", ["prune(sparsity=0.6,recover_steps=3", "heads(fraction=0.25,importance=norm,recover_steps=3"])
def test_the_recovery_learning_rate_reaches_the_optimizer(tiny, tmp_path, step):
    """recover_lr sets how far recovery moves the weights: 100x the rate moves the (never pruned) classifier
    much further from the original's, in unstructured and structured pruning alike."""
    model = tiny[0]

    def moved(lr: str) -> float:
        recipe = Recipe.parse(f"{step},recover_lr={lr})")
        assert recipe.name == f"{step},recover_lr={float(lr)})"  # the name the store and the Sweep page show
        cm = compress(model, recipe, wl(tiny, tmp_path))
        return float((cm.module.classifier.weight - model.classifier.weight).abs().sum())

    assert moved("1e-3") > 10 * moved("1e-5") > 0
    with pytest.raises(SpecError, match="recover_lr"):
        Recipe.parse(f"{step},recover_lr=0)")
