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


def test_gptq_weights_run_on_matmulnbits_exactly(tiny, tmp_path, monkeypatch):
    """4-bit GPTQ on ONNX Runtime's kernel (fp32 compute here, to compare) gives the logits of the torch model
    holding the same GPTQ weights: every Linear inside the blocks found and packed, the head left fp32."""
    import onnx

    model, tok, df, batch = tiny
    monkeypatch.setattr(nbits_mod, "ACCURACY_LEVEL", 0)
    wl = Workload(tok, df, df, ["negative", "positive"], scratch=tmp_path / "a")
    cm = compress(model, Recipe((QuantSpec(bits=4, kernel="nbits", group_size=32, algorithm="gptq"),)), wl)
    torch_gptq = compress(model, Recipe((QuantSpec(bits=4, kernel="rtn", group_size=32, algorithm="gptq"),)),
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
