"""Calibrated low-bit weights: GPTQ against round-to-nearest, the Hessians from the train split, and 2/4/8-bit
weights on ONNX Runtime's MatMulNBits kernel (packing, the layers it replaces, the saved file, the spec's rules)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from compression.artifacts import load, onnx_model, weight_bytes
from compression.engine import compress
from compression.methods import nbits as nbits_mod
from compression.methods.gptq import gptq, grid
from compression.methods.hessian import layer_hessians
from compression.methods.quant import rtn
from compression.recipes import Recipe
from compression.specs import QuantSpec, SpecError
from compression.workload import Workload
from conftest import make_csv
from family_models import build, check


def rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def correlated_inputs(n: int = 1024, d: int = 64, seed: int = 0) -> torch.Tensor:
    """Token inputs whose features co-vary strongly, as hidden states do."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) * torch.linspace(2.0, 0.05, d)[:, None]  # a few strong directions
    return torch.randn(n, d, generator=g) @ mix + 0.01 * torch.randn(n, d, generator=g)


@pytest.mark.parametrize("bits, group", [(3, 0), (3, 16), (4, 32), (2, 16)])
def test_gptq_output_error_beats_round_to_nearest_on_correlated_inputs(bits, group):
    x = correlated_inputs()
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    h = 2 * x.T @ x / x.shape[0]
    q = gptq(w, h, bits, group, "sym")
    near, _ = rtn(w, bits, group or 64, "sym")
    err_gptq = torch.linalg.norm(x @ q["decoded"].T - x @ w.T)
    err_rtn = torch.linalg.norm(x @ near.T - x @ w.T)
    assert err_gptq < 0.9 * err_rtn, (float(err_gptq), float(err_rtn))
    # the codes are on the b-bit grid and decode to exactly the weights it returns
    g = group or 64
    codes = q["codes"].reshape(32, -1, g)
    assert int(codes.max()) < 2 ** bits
    assert max(len(torch.unique(row)) for row in codes.reshape(-1, g)) <= 2 ** bits
    decoded = (codes.float() - 2 ** (bits - 1)) * q["scale"][:, :, None]
    assert torch.allclose(decoded.reshape(32, 64), q["decoded"], atol=1e-6)


def inputs_of_unequal_size(n: int = 1024, d: int = 64, seed: int = 0) -> torch.Tensor:
    """Correlated inputs whose features also differ in size by 100x, in no particular order (as hidden
    states' channels do): the order GPTQ rounds them in then matters."""
    g = torch.Generator().manual_seed(seed)
    return correlated_inputs(n, d, seed) * torch.logspace(1, -1, d)[torch.randperm(d, generator=g)]


def decode(q: dict, bits: int, group: int) -> torch.Tensor:
    """The weights a stored form (codes, per-group scales, zero points) reads back as."""
    rows, cols = q["codes"].shape
    zero = q["zero"].float() if "zero" in q else torch.full_like(q["scale"], 2 ** (bits - 1))
    codes = q["codes"].float().reshape(rows, -1, group)
    return ((codes - zero[:, :, None]) * q["scale"][:, :, None]).reshape(rows, cols)


@pytest.mark.parametrize("bits, group", [(3, 0), (3, 16), (4, 32)])
@pytest.mark.parametrize("scheme", ["sym", "asym"])
def test_act_order_lowers_the_layers_output_error_and_keeps_the_stored_layout(bits, group, scheme):
    x = inputs_of_unequal_size()
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(5))
    h = 2 * x.T @ x / x.shape[0]
    plain = gptq(w, h, bits, group, scheme)
    ordered = gptq(w, h, bits, group, scheme, act_order=True)
    err = {k: float(torch.linalg.norm(x @ q["decoded"].T - x @ w.T)) for k, q in (("plain", plain), ("act", ordered))}
    assert err["act"] < 0.85 * err["plain"], err
    # codes in the plain left-to-right layout, one scale (and zero point) per group: they decode to what runs
    assert ordered["codes"].shape == w.shape and ordered["scale"].shape == plain["scale"].shape
    assert torch.equal(decode(ordered, bits, group or 64), ordered["decoded"])


@pytest.mark.parametrize("scheme, most", [("sym", 0.9), ("asym", 0.97)])
def test_mse_clip_lowers_the_rounding_error(scheme, most):
    """Shrinking a group's range clips its largest weights but rounds all the others on a finer step: the
    group's squared error goes down (most at 3 bits with symmetric groups, whose step is the coarsest)."""
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(6))
    x = correlated_inputs(seed=6)
    h = 2 * x.T @ x / x.shape[0]
    near, plain_packed = rtn(w, 3, 16, scheme)
    clipped, packed = rtn(w, 3, 16, scheme, clip="mse")
    assert torch.linalg.norm(clipped - w) < most * torch.linalg.norm(near - w)
    assert packed.tensors["scale"].float().mean() < plain_packed.tensors["scale"].float().mean()
    plain, fitted = gptq(w, h, 3, 16, scheme), gptq(w, h, 3, 16, scheme, clip="mse")
    out = lambda d: float(torch.linalg.norm(x @ d.T - x @ w.T))  # noqa: E731
    assert out(fitted["decoded"]) < out(plain["decoded"])
    assert torch.equal(decode(fitted, 3, 16), fitted["decoded"])


def test_gptq_without_correlation_rounds_like_rtn():
    """With H = I no column's error can be compensated by another: GPTQ's grid and codes are RTN's."""
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(2))
    for scheme in ("sym", "asym"):
        q = gptq(w, torch.eye(64), 4, 32, scheme)
        near, packed = rtn(w, 4, 32, scheme)
        assert torch.equal(q["decoded"], near)
        assert torch.equal(q["scale"].half().reshape(-1), packed.tensors["scale"])


def test_gptq_second_column_is_the_least_squares_fit_rounded():
    """A direct check on a 2-input layer: once column 1 is rounded, the column-2 weights that best restore the
    layer's output (least squares over the calibration inputs) are found, then rounded on the same grid."""
    x = correlated_inputs(n=4096, d=2, seed=3)
    w = torch.randn(64, 2, generator=torch.Generator().manual_seed(4))
    q = gptq(w, 2 * x.T @ x / x.shape[0], 3, 0, "sym", damp=0.0)["decoded"]
    near, _ = rtn(w, 3, 2, "sym")
    assert torch.equal(q[:, 0], near[:, 0])  # nothing comes before the first column
    # least squares: v minimising ||x0 (w0 - q0) + x1 (w1 - v)|| for each output row
    target = x[:, :1] * (w[:, 0] - q[:, 0]) + x[:, 1:] * w[:, 1]  # (n, rows)
    best = torch.linalg.lstsq(x[:, 1:].double(), target.double()).solution[0].float()
    scale, stored, _ = grid(w, 3, "sym")
    expected = torch.clamp(torch.round(best / scale[:, 0]), -4, 3) * stored[:, 0]
    assert torch.allclose(q[:, 1], expected, atol=1e-5)
    assert not torch.equal(q[:, 1], near[:, 1]), "on correlated inputs some rows round differently from RTN"


def test_layer_hessians_read_the_train_split_only():
    lin = torch.nn.Linear(4, 3)

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, input_ids, attention_mask):
            return self.lin(torch.nn.functional.one_hot(input_ids, 4).float())

    class Tok:
        def __call__(self, texts, **_):
            ids = torch.tensor([[len(t) % 4, 0] for t in texts])
            return {"input_ids": ids, "attention_mask": torch.tensor([[1, 0]] * len(texts))}

    model = Toy()
    train = pd.DataFrame({"text": ["a", "bb", "ccc"], "label": [0, 1, 0]})
    val = pd.DataFrame({"text": ["dddd"] * 3, "label": [0, 1, 0]})
    wl = Workload(Tok(), train, val, ["n", "p"])
    h = layer_hessians(model, [("lin", lin)], wl)["lin"]
    # three non-padding tokens with one-hot features 1, 2, 3 (padding, feature 0, left out)
    assert torch.allclose(h, torch.diag(torch.tensor([0.0, 2 / 3, 2 / 3, 2 / 3])))
    other_val = Workload(Tok(), train, train.assign(text=["x", "yy", "zzz"]), ["n", "p"])
    assert torch.equal(layer_hessians(model, [("lin", lin)], other_val)["lin"], h)
    other_train = Workload(Tok(), train.assign(text=["x", "y", "zzz"]), val, ["n", "p"])
    assert not torch.equal(layer_hessians(model, [("lin", lin)], other_train)["lin"], h)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("scheme", ["sym", "asym"])
def test_pack_matmul_nbits_is_the_kernels_layout(bits, scheme):
    """Our packed codes through a one-node MatMulNBits graph (fp32 compute) give X @ decoded weights."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(bits)
    n, k, block = 8, 48, 32  # K not a multiple of the block: the last block is padded
    blocks = 2
    codes = rng.integers(0, 2 ** bits, size=(n, k), dtype=np.uint8)
    scale = rng.uniform(0.01, 0.1, size=(n, blocks)).astype(np.float32)
    zero = rng.integers(0, 2 ** bits, size=(n, blocks), dtype=np.uint8) if scheme == "asym" else None
    zfull = zero if zero is not None else np.full((n, blocks), 2 ** (bits - 1))
    idx = np.arange(k) // block
    decoded = (codes.astype(np.float32) - zfull[:, idx]) * scale[:, idx]  # (n, k)
    b, s, zp = nbits_mod.pack_matmul_nbits(codes, scale, zero, bits, block)
    inits = [onnx.numpy_helper.from_array(b, "B"), onnx.numpy_helper.from_array(s, "S")]
    inputs = ["X", "B", "S"]
    if zp is not None:
        inits.append(onnx.numpy_helper.from_array(zp, "Z"))
        inputs.append("Z")
    node = helper.make_node("MatMulNBits", inputs, ["Y"], domain="com.microsoft", K=k, N=n, bits=bits,
                            block_size=block, accuracy_level=0)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [3, k])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [3, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.standard_normal((3, k)).astype(np.float32)
    np.testing.assert_allclose(sess.run(None, {"X": x})[0], x @ decoded.T, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The family matrix's tiny BERT (2 layers, hidden 64, FFN 128), its tokenizer, texts and a batch."""
    d = tmp_path_factory.mktemp("m")
    model, tok, _ = check(build("bert", d / "bert"))
    df = pd.read_csv(make_csv(d / "d.csv", n=120)).rename(columns={"review": "text"})
    df["label"] = (df.pop("sentiment") == "positive").astype(int)
    batch = dict(tok(df["text"].tolist()[:32], padding=True, truncation=True, max_length=64, return_tensors="pt"))
    return model.eval(), tok, df, batch


@pytest.mark.parametrize("extra", [dict(algorithm="gptq"), dict(algorithm="gptq", act_order="on", clip="mse"),
                                   dict(algorithm="rtn", clip="mse")])
def test_gptq_weights_run_on_matmulnbits_exactly(extra, tiny, tmp_path, monkeypatch):
    """4-bit GPTQ (or clipped RTN) on ONNX Runtime's kernel (fp32 compute here, to compare) gives the logits of
    the torch model holding the same weights: every Linear inside the blocks found and packed, the head fp32."""
    import onnx

    model, tok, df, batch = tiny
    monkeypatch.setattr(nbits_mod, "ACCURACY_LEVEL", 0)
    wl = Workload(tok, df, df, ["negative", "positive"], scratch=tmp_path / "a")
    cm = compress(model, Recipe((QuantSpec(bits=4, kernel="nbits", group_size=32, **extra),)), wl)
    torch_gptq = compress(model, Recipe((QuantSpec(bits=4, kernel="rtn", group_size=32, **extra),)),
                          Workload(tok, df, df, ["negative", "positive"], scratch=tmp_path / "b"))
    out, same = cm.predict(batch), torch_gptq.predict(batch)
    ref = model(**batch).logits.detach().numpy()
    assert rel(out, same) < 1e-4 and rel(out, ref) > 100 * rel(out, same)
    graph = onnx.load(str(cm.onnx_path))
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count("MatMulNBits") == 12 and "Gemm" in ops  # 2 layers x 6 Linear; pooler and head stay fp32
    assert cm.runtime == "onnxruntime" and cm.latency_label == "measured" and "MatMulNBits" in cm.kernel
    fp32 = onnx_model(tmp_path / "a" / "fp32.onnx", "fp32")
    assert cm.info["params"] == fp32.info["params"]  # each packed weight counts as its K*N weights, not its bytes


def test_act_order_and_clip_weights_are_the_stored_ones_and_reload(tiny, tmp_path):
    """3-bit GPTQ with act-order and clipped ranges in torch: the saved codes and scales decode to exactly the
    weights that ran, and the reloaded artifact gives the same answers."""
    from compression.packed import unpack_bits

    model, tok, df, batch = tiny
    spec = QuantSpec(bits=3, kernel="rtn", group_size=16, algorithm="gptq", act_order="on", clip="mse",
                     scheme="asym")
    cm = compress(model, Recipe((spec,)), Workload(tok, df, df, ["negative", "positive"], scratch=tmp_path / "w"))
    weights = dict(cm.module.named_parameters())
    assert len(cm.packed) == 12
    for name, p in cm.packed.items():
        rows, cols = p.shape
        q = {"codes": torch.from_numpy(unpack_bits(p.tensors["codes"].numpy(), 3, rows * cols).reshape(rows, cols)),
             "scale": p.tensors["scale"].float().reshape(rows, -1), "zero": p.tensors["zero"].reshape(rows, -1)}
        assert torch.equal(decode(q, 3, 16), weights[name].detach()), name
    assert "most first" in " ".join(cm.notes) and "clipped" in " ".join(cm.notes)
    cm.save(tmp_path / "art")
    np.testing.assert_allclose(load(tmp_path / "art").predict(batch), cm.predict(batch), atol=1e-5)


def test_nbits_artifact_is_the_onnx_file_and_smaller(tiny, tmp_path):
    model, tok, df, batch = tiny
    wl = Workload(tok, df, df, ["negative", "positive"], scratch=tmp_path / "w")
    size = {}
    for bits in (4, 8):
        cm = compress(model, Recipe((QuantSpec(bits=bits, kernel="nbits", group_size=32, algorithm="hqq"
                                               if bits == 4 else "rtn", scheme="asym"),)), wl)
        files = cm.save(tmp_path / f"art{bits}")
        assert any(f.suffix == ".onnx" for f in files)
        size[bits] = weight_bytes(files)
        np.testing.assert_allclose(load(tmp_path / f"art{bits}").predict(batch), cm.predict(batch), atol=1e-5)
    fp32 = (tmp_path / "w" / "fp32.onnx").stat().st_size
    linear = 2 * (4 * 64 * 64 + 2 * 64 * 128)  # weights the 2 layers' Linears hold
    assert size[4] < size[8] < fp32
    assert fp32 - size[4] > 0.8 * linear * 4 * (1 - 4.5 / 32)  # about 4.5 bits a weight with the scales


@pytest.mark.parametrize("kw, words", [
    (dict(bits=3, kernel="nbits", group_size=128), ["kernel=nbits", "no 3-bit kernel", "kernel=rtn"]),
    (dict(bits=4, kernel="nbits"), ["group_size from 16 to 256"]),
    (dict(bits=4, kernel="nbits", group_size=128, algorithm="hqq"), ["scheme=asym"]),
    (dict(bits=8, kernel="nbits", group_size=128, algorithm="hqq", scheme="asym"), ["algorithm=rtn or gptq"]),
    (dict(bits=3, kernel="rtn", algorithm="hqq", scheme="asym"), ["kernel=nbits"]),
    (dict(bits=8, kernel="ort", algorithm="gptq"), ["kernel=nbits or kernel=rtn"]),
    (dict(bits=4, kernel="nbits", group_size=64, embeddings="8"), ["embeddings=none"]),
    (dict(bits=3, kernel="rtn", act_order="on"), ["act_order=on", "algorithm=gptq"]),
    (dict(bits=8, kernel="torch", clip="mse"), ["clip=mse", "kernel=rtn"]),
    (dict(bits=4, kernel="nbits", group_size=64, algorithm="hqq", scheme="asym", clip="mse"), ["algorithm=rtn or gptq"]),
])
def test_nbits_spec_refusals_are_one_sentence(kw, words):
    with pytest.raises(SpecError) as e:
        QuantSpec(**kw)
    msg = str(e.value)
    assert all(w in msg for w in words), msg
    assert msg.count(". ") == 0 and "\n" not in msg


def test_nbits_is_terminal_and_auto_stays_in_torch():
    assert QuantSpec(bits=4, kernel="nbits", group_size=128).terminal
    assert QuantSpec(bits=4, group_size=128).resolved_kernel == "rtn"  # auto: chainable, stored rows keep meaning
    assert QuantSpec(bits=8, algorithm="gptq").resolved_kernel == "rtn"
    assert QuantSpec(bits=8).resolved_kernel == "torch"
    with pytest.raises(SpecError, match="terminal|last|after"):
        Recipe.parse("quant(bits=4,kernel=nbits,group_size=128)>prune(sparsity=0.5)")
    assert "ONNX Runtime's 4-bit kernel" in QuantSpec(bits=4, kernel="nbits", group_size=128).describe()
    assert "GPTQ" in QuantSpec(bits=3, kernel="rtn", algorithm="gptq").describe()
