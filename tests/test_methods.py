"""Every registered method, mild and aggressive, on a tiny random BERT: it does what its spec says,
keeps outputs close when mild, changes them when aggressive, never touches its input, and its saved
artifact reloads to the same numbers."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from compression.artifacts import count_params, load, weight_bytes
from compression.engine import compress
from compression.recipes import Recipe
from compression.registry import CATALOGUE
from compression.specs import LowRankSpec, PruneSpec, QuantSpec, SpecError
from compression.workload import Workload
from conftest import make_csv, make_tiny_model

ALL = [(name, i, s) for name, e in CATALOGUE.items() for i, s in enumerate(e.examples)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    d = tmp_path_factory.mktemp("m")
    path = make_tiny_model(d / "bert", head=True, hidden=64, intermediate=128)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    df = pd.read_csv(make_csv(d / "d.csv", n=120))
    df = pd.DataFrame({"text": df["review"], "label": (df["sentiment"] == "positive").astype(int)})
    batch = dict(tok(df["text"].tolist()[:32], padding=True, truncation=True, max_length=64, return_tensors="pt"))
    return model, tok, df, batch


def workload(tiny, tmp_path):
    model, tok, df, _ = tiny
    return Workload(tok, df, df, ["negative", "positive"], scratch=tmp_path)


def logits(cm, batch):
    return cm.predict(batch)


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("name", CATALOGUE)
def test_every_catalogue_entry_resolves(name):
    e = CATALOGUE[name]
    assert callable(e.apply_fn())
    assert len(e.examples) == 2
    if e.live_knob is not None:  # the live slider lands a setting in seconds: no training
        assert e.post_training and e.live_knob in {f.name for f in dataclasses.fields(e.spec)}


@pytest.mark.parametrize("method, which, spec", ALL, ids=[f"{m}-{'mild' if i == 0 else 'aggressive'}" for m, i, _ in ALL])
def test_method_contract(method, which, spec, tiny, tmp_path):
    model, tok, df, batch = tiny
    before = copy.deepcopy(model.state_dict())
    ref = model(**batch).logits.detach().numpy()
    cm = compress(model, Recipe((spec,)), workload(tiny, tmp_path))
    for k, v in model.state_dict().items():  # the input is never changed
        assert torch.equal(v, before[k]), k
    out = logits(cm, batch)
    assert np.isfinite(out).all()
    if which == 0 and CATALOGUE[method].post_training:
        assert rel(out, ref) < 0.15, "a mild setting keeps the outputs close"
    elif which == 1 and CATALOGUE[method].lossless:  # the same weights on another runtime
        assert rel(out, ref) < 1e-4, "a lossless setting keeps the outputs"
    elif which == 1:
        assert rel(out, ref) > 1e-3, "an aggressive setting changes the outputs"
    # the saved artifact reloads to the same numbers
    files = cm.save(tmp_path / "art")
    again = load(tmp_path / "art")
    np.testing.assert_allclose(logits(again, batch), out, rtol=1e-3, atol=1e-3)
    assert weight_bytes(files) > 0


def fp32_bytes(model, tmp_path):
    from compression.artifacts import CompressedModel

    return weight_bytes(CompressedModel.fp32(model).save(tmp_path / "fp32"))


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("group", [0, 16])
def test_rtn_codes_and_packed_size(bits, group, tiny, tmp_path):
    from compression.methods.quant import distinct_per_group

    model, *_ = tiny
    cm = compress(model, Recipe((QuantSpec(bits=bits, kernel="rtn", group_size=group),)), workload(tiny, tmp_path))
    packed = cm.packed
    assert packed and cm.latency_label == "simulated" and "stand-in" in cm.kernel
    n_weights = n_scales = 0
    for p in packed.values():
        assert distinct_per_group(p) <= 2 ** bits
        n = int(np.prod(p.shape))
        n_weights += n
        n_scales += n // p.meta["group"]
        codes = p.tensors["codes"].numel()
        assert abs(codes - bits * n / 8) <= 0.05 * bits * n / 8 + 1
    files = cm.save(tmp_path / "a")
    assert weight_bytes(files) < fp32_bytes(model, tmp_path)


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.9])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_prune_hits_requested_sparsity_and_file_shrinks(sparsity, scope, tiny, tmp_path):
    model, *_ = tiny
    cm = compress(model, Recipe((PruneSpec(sparsity=sparsity, scope=scope),)), workload(tiny, tmp_path))
    assert abs(cm.info["sparsity"] - sparsity) <= 0.01
    enc = [m.weight for n, m in cm.module.named_modules() if "encoder.layer" in n and isinstance(m, torch.nn.Linear)]
    zeros = sum(int((w == 0).sum()) for w in enc) / sum(w.numel() for w in enc)
    assert abs(zeros - sparsity) <= 0.01
    cls = cm.module.classifier.weight
    assert torch.count_nonzero(cls) == cls.numel()  # the head is outside the default scope
    if sparsity >= 0.5:
        assert weight_bytes(cm.save(tmp_path / "a")) < fp32_bytes(model, tmp_path)


def test_prune_with_poly_schedule_and_recovery_holds_zeros(tiny, tmp_path):
    from compression.methods.prune import poly_sparsity

    assert poly_sparsity(0, 0.5, 0.8, 0, 100) == 0.5 and poly_sparsity(100, 0.5, 0.8, 0, 100) == 0.8
    assert poly_sparsity(200, 0.5, 0.8, 0, 100) == 0.8
    model, *_ = tiny
    spec = PruneSpec(sparsity=0.8, recover_steps=20, schedule="poly", initial_sparsity=0.5)
    cm = compress(model, Recipe((spec,)), workload(tiny, tmp_path))
    assert abs(cm.info["sparsity"] - 0.8) <= 0.01


def test_lowrank_replaces_layers_with_requested_rank(tiny, tmp_path):
    from compression.methods.lowrank import LowRankLinear

    model, *_ = tiny
    cm = compress(model, Recipe((LowRankSpec(rank=8),)), workload(tiny, tmp_path))
    lows = [m for m in cm.module.modules() if isinstance(m, LowRankLinear)]
    assert lows and all(m.rank == 8 and m.first.weight.shape[0] == 8 for m in lows)
    assert weight_bytes(cm.save(tmp_path / "a")) < fp32_bytes(model, tmp_path)
    # a rank that would not save weights leaves the layer whole
    cm = compress(model, Recipe((LowRankSpec(rank_fraction=1.0),)), workload(tiny, tmp_path))
    assert not [m for m in cm.module.modules() if isinstance(m, LowRankLinear)]


def test_torch_int8_runs_int8_modules_and_shrinks(tiny, tmp_path):
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    model, *_ = tiny
    cm = compress(model, Recipe((QuantSpec(bits=8),)), workload(tiny, tmp_path))
    assert any(isinstance(m, QLinear) for m in cm.module.modules()) and cm.latency_label == "measured"
    cm8 = compress(model, Recipe((QuantSpec(bits=8, embeddings="8"),)), workload(tiny, tmp_path))
    b0, b1, b2 = (fp32_bytes(model, tmp_path), weight_bytes(cm.save(tmp_path / "a")),
                  weight_bytes(cm8.save(tmp_path / "b")))
    assert b2 < b1 < b0
    # every weight is still counted (the parameters axis and bits per weight use it)
    assert count_params(cm.module)[0] == count_params(model)[0] == sum(p.numel() for p in model.parameters())


def test_onnx_runtime_int8_is_a_runnable_terminal_artifact(tiny, tmp_path):
    model, _, _, batch = tiny
    cm = compress(model, Recipe((QuantSpec(bits=8, kernel="ort", embeddings="8"),)), workload(tiny, tmp_path))
    assert cm.runtime == "onnxruntime" and cm.session is not None
    ref = model(**batch).logits.detach().numpy()
    assert rel(cm.predict(batch), ref) < 0.15
    # graph overhead dominates a tiny model's file, so compare with its own fp32 export
    assert weight_bytes(cm.save(tmp_path / "o")) < 0.6 * (tmp_path / "fp32.onnx").stat().st_size
    with pytest.raises(SpecError, match="last step"):
        Recipe((QuantSpec(bits=8, kernel="ort"), PruneSpec()))


def _int8_weight_codes(path) -> np.ndarray:
    """Every int8 weight code an ONNX graph holds (its quantized initializers), as one flat array."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    codes = [numpy_helper.to_array(t).ravel() for t in g.initializer if t.data_type == onnx.TensorProto.INT8]
    return np.concatenate(codes).astype(np.int32)


NO_VNNI = {"sse2", "avx", "avx2", "fma"}  # an AMD EPYC of the first Zen generation
VNNI = NO_VNNI | {"avx512f", "avx512_vnni"}


@pytest.mark.parametrize("kernel", ["ort", "ort-fused", "ort-static"])
def test_onnx_runtime_int8_keeps_weights_to_7_bits_on_a_cpu_without_vnni(tiny, tmp_path, monkeypatch, kernel):
    """Without VNNI, ONNX Runtime's uint8 x int8 kernel sums pairs of products in 16 bits and clamps: 8-bit
    weights there changed a tiny RoBERTa's logits by 67%. So on such a CPU the weights keep to 7 bits, and
    the notes say why; with VNNI they use the full range."""
    from compression import config

    model, _, _, batch = tiny
    ref = model(**batch).logits.detach().numpy()
    widest = {}
    for name, flags in (("no-vnni", NO_VNNI), ("vnni", VNNI)):
        monkeypatch.setattr(config, "cpu_flags", lambda flags=flags: set(flags))
        cm = compress(model, Recipe((QuantSpec(bits=8, kernel=kernel),)), workload(tiny, tmp_path / name))
        files = [f for f in cm.save(tmp_path / name / "art") if f.suffix == ".onnx"]
        widest[name] = int(np.abs(_int8_weight_codes(files[0])).max())
        assert cm.info["weight_range_bits"] == (7 if name == "no-vnni" else 8)
        assert ("7 bits" in " ".join(cm.notes)) == (name == "no-vnni"), cm.notes
        if name == "no-vnni":  # 7-bit weights cannot overflow, whatever CPU runs this test
            assert rel(cm.predict(batch), ref) < 0.15
    assert widest["no-vnni"] <= 64 < widest["vnni"], widest


@pytest.mark.parametrize("make, words", [
    (lambda: PruneSpec(sparsity=1.0), "prune.sparsity=1.0 is out of range"),
    (lambda: QuantSpec(bits=1, kernel="rtn"), "quant.bits=1"),
    (lambda: QuantSpec(bits=16, kernel="rtn"), "quant.bits=16"),
    (lambda: LowRankSpec(rank=0), "rank 0 would keep nothing"),
    (lambda: PruneSpec(schedule="poly"), "recover_steps"),
])
def test_impossible_knobs_are_rejected_on_construction(make, words):
    with pytest.raises(SpecError, match=words.replace(".", r"\.").replace("(", r"\(")):
        make()


@pytest.mark.parametrize("spec, words", [
    (LowRankSpec(rank=10000), "exceeds min"),
    (QuantSpec(bits=4, group_size=128), "does not divide"),
])
def test_impossible_knobs_for_this_model_are_rejected_when_applied(spec, words, tiny, tmp_path):
    model, *_ = tiny
    with pytest.raises(SpecError, match=words):
        compress(model, Recipe((spec,)), workload(tiny, tmp_path))


def test_quanto_w8a8_runs_int8_and_reloads(tiny, tmp_path):
    from optimum.quanto import QLinear

    model, _, _, batch = tiny
    cm = compress(model, Recipe((QuantSpec(bits=8, kernel="quanto"),)), workload(tiny, tmp_path))
    assert any(isinstance(m, QLinear) for m in cm.module.modules())
    assert count_params(cm.module)[0] == count_params(model)[0]  # scales are not counted as weights
    ref = model(**batch).logits.detach().numpy()
    out = cm.predict(batch)
    assert rel(out, ref) < 0.15
    files = cm.save(tmp_path / "q")
    np.testing.assert_allclose(load(tmp_path / "q").predict(batch), out, rtol=1e-3, atol=1e-4)
    assert weight_bytes(files) < fp32_bytes(model, tmp_path)


def test_device_latency_times_both_models_and_says_why_a_runtime_cannot_move(tiny, tmp_path):
    """The GPU column's code path, run on the CPU device here (CI has no GPU): interleaved medians and a
    ratio to the baseline; ONNX Runtime and fbgemm int8 get a plain reason instead of a number."""
    from compression.artifacts import CompressedModel
    from compression.measure import MeasureSession, TestSet
    from compression.timing import cuda_device, device_latency, device_module, release

    model, tok, df, _ = tiny
    ts = TestSet(tok, df)
    cast = compress(model, Recipe((LowRankSpec(rank=4),)), workload(tiny, tmp_path))
    mod, why = device_module(cast, "cpu")
    assert why == "" and mod is not cast.module  # a copy: the stored candidate stays where it was
    timings = device_latency(mod, model, ts, "cpu")
    assert [(t.device, t.batch) for t in timings] == [("gpu", 1), ("gpu", 32)]  # the GPU's column
    for t in timings:
        assert t.p50_ms > 0 and t.p90_ms >= t.p50_ms
        assert t.speedup == pytest.approx(t.base_p50_ms / t.p50_ms)
    int8 = compress(model, Recipe((QuantSpec(bits=8),)), workload(tiny, tmp_path))
    assert device_module(int8, "cuda") == (None, "not timed on the GPU: torch's dynamic int8 (fbgemm) is a CPU "
                                                 "kernel with no CUDA version")
    ort = compress(model, Recipe((QuantSpec(bits=8, kernel="ort", embeddings="8"),)), workload(tiny, tmp_path))
    assert "onnxruntime runs it on its CPU provider" in device_module(ort, "cuda")[1]
    # quanto's tensor subclasses cannot be deep-copied: the module itself goes over and comes back
    q = compress(model, Recipe((QuantSpec(bits=8, kernel="quanto"),)), workload(tiny, tmp_path))
    before = q.predict(ts.b32)
    assert device_module(q, "cpu", move=False)[0] is None  # how the baseline is sent: a copy or nothing
    qm, why = device_module(q, "cpu")
    assert why == "" and qm is q.module
    assert device_latency(qm, model, ts, "cpu")[0].p50_ms > 0
    release(q, qm)
    assert np.allclose(q.predict(ts.b32), before)
    # a whole measurement: GPU fields exactly where CUDA is present
    row = MeasureSession(CompressedModel.fp32(model), tok, df).measure(cast, cast.save(tmp_path / "lr")).to_row()
    if cuda_device() is None:
        assert not any(k.startswith("gpu") for k in row) and "gpu_latency" not in row["labels"]
    else:
        assert row["gpu"] == cuda_device() and row["gpu_lat_b1_p50_ms"] > 0
        assert row["labels"]["gpu_latency"] == "measured"


def test_wanda_keeps_the_weights_whose_inputs_are_large_where_magnitude_drops_them():
    from compression.methods.prune import masks_for

    lin = torch.nn.Linear(8, 4)
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.weight[:, 0] = 0.1  # small weights ...
    norms = {"l": torch.ones(8)}
    norms["l"][0] = 100.0  # ... on an input feature that is always large
    by_size = masks_for([("l", lin)], 0.25, "layer")["l"]
    wanda = masks_for([("l", lin)], 0.25, "layer", norms=norms)["l"]
    assert not by_size[:, 0].any() and wanda[:, 0].all()
    assert (~wanda).sum(1).tolist() == [2, 2, 2, 2]  # a quarter of each output row, exactly


@pytest.mark.parametrize("pattern, n, m", [("2:4", 2, 4), ("4:8", 4, 8)])
def test_an_n_m_pattern_keeps_n_of_every_m_weights_in_each_row(pattern, n, m, tiny, tmp_path):
    model, *_ = tiny
    cm = compress(model, Recipe((PruneSpec(sparsity=0.5, pattern=pattern, criterion="wanda"),)),
                  workload(tiny, tmp_path))
    for name, layer in cm.module.named_modules():
        if isinstance(layer, torch.nn.Linear) and "classifier" not in name and "pooler" not in name:
            w = layer.weight.detach()
            groups = (w[:, : w.shape[1] - w.shape[1] % m] != 0).reshape(w.shape[0], -1, m).sum(-1)
            assert (groups <= n).all(), name
    assert cm.info["sparsity"] == pytest.approx(0.5, abs=0.01)
    with pytest.raises(SpecError, match="keeps 2 of every 4"):
        PruneSpec(sparsity=0.3, pattern="2:4")


def test_distillation_aware_recovery_learns_from_the_original_models_answers(tiny, tmp_path):
    from compression.methods.structured import recovery_loss
    from compression.training import cross_entropy

    model, tok, df, batch = tiny
    w = Workload(tok, df, df, ["negative", "positive"], scratch=tmp_path, teacher=model)
    assert recovery_loss(PruneSpec(sparsity=0.5), w) is cross_entropy  # alpha 1: the labels only
    loss = recovery_loss(PruneSpec(sparsity=0.5, recover_alpha=0.0, recover_temperature=2.0), w)
    labels = torch.zeros(batch["input_ids"].shape[0], dtype=torch.long)
    assert float(loss(copy.deepcopy(model), batch, labels).detach()) == pytest.approx(0.0, abs=1e-6)  # copies the teacher
    assert float(cross_entropy(copy.deepcopy(model), batch, labels).detach()) > 0.1
    cm = compress(model, Recipe((PruneSpec(sparsity=0.8, recover_steps=3, recover_alpha=0.5),)), w)
    assert "against the original's answers" in cm.notes[0]
