"""SmoothQuant-style scale migration before ONNX Runtime int8 (compression/methods/smooth.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from compression.engine import compress
from compression.plain import plain_name
from compression.recipes import Recipe
from compression.specs import QuantSpec, SpecError
from compression.workload import Workload

TEXTS = ["a good film", "a bad film, really", "fine", "awful and long", "quietly wonderful", "a mess"] * 8


def _setup(tmp_path, name="bert"):
    from family_models import build, check

    model, tok, _ = check(build(name, tmp_path / name))
    df = pd.DataFrame({"text": TEXTS, "label": [1, 0, 1, 0, 1, 0] * 8})
    wl = Workload(tok, df, df, ["neg", "pos"], scratch=tmp_path, onnx_cache=tmp_path / "onnx" / "fp32.onnx")
    batch = dict(tok(TEXTS[:6], padding=True, return_tensors="pt"))
    with torch.no_grad():
        ref = model(**batch).logits.numpy()
    return model, wl, batch, ref


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("name,graph", [("bert", "fused"), ("bert", "plain"), ("gpt2", "plain"), ("qwen2", "plain")])
def test_smoothing_alone_leaves_the_fp32_outputs_unchanged(name, graph, tmp_path):
    """The migration divides each activation channel by s and multiplies the weight row by s: in fp32 the graph
    computes the same logits, whether s went through an inserted Mul, into attention's V (BERT's fused graph) or
    into a pre-LN block's norm (GPT-2's LayerNorm, Qwen2's RMSNorm gain, found through GPT-2's Reshapes)."""
    import onnx
    import onnxruntime as ort

    from compression.methods.ort_graph import fused_fp32, plain_fp32
    from compression.methods.smooth import gemm_as_matmul, smooth_graph

    model, wl, batch, _ = _setup(tmp_path, name=name)
    if name == "bert":
        _with_outliers(model, "bert")
    with torch.no_grad():
        ref = model(**batch).logits.numpy()
    src = fused_fp32(model, wl)[0] if graph == "fused" else plain_fp32(model, wl)
    g = onnx.load(str(src))
    gemm_as_matmul(g)
    src = tmp_path / "matmul.onnx"
    onnx.save(g, str(src))
    out = tmp_path / "smoothed.onnx"
    info = smooth_graph(src, out, 0.8, wl, min_ratio=0)  # every input, outliers or not
    assert info["smoothed"] >= 6 and info["rows"] == len(TEXTS), info  # 2 layers x (qkv, attn out, ffn in, ffn out)
    if name == "bert":
        assert info["folded"] == (2 if graph == "fused" else 0), info  # each layer's attention output into its V
    else:
        assert info["folded_into"].get("a layer norm's gain" if name == "gpt2" else "a norm's gain", 0) >= 4, info
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    got = sess.run(["logits"], {k: v.numpy() for k, v in batch.items() if k in names})[0]
    assert _rel(got, ref) < 1e-4, _rel(got, ref)
    assert sum(n.op_type == "Mul" for n in onnx.load(str(out)).graph.node) == \
        sum(n.op_type == "Mul" for n in onnx.load(str(src)).graph.node) + info["muls"]


def _with_outliers(model, name, factor=100.0, channels=(3, 11)):
    """Give a few hidden channels ``factor`` times the others' range without changing what the model computes
    in fp32: the producer's output channel is multiplied and the consuming weight's input row divided. On BERT
    that is attention's V (its context channels feed only the output projection); on GPT-2 (pre-LN) each block's
    LayerNorm gains (they feed only the next Linear). BERT's output projection is also scaled up 10x first, so
    that its rounding shows in the logits of a random-init model, whose residual stream otherwise swamps it."""
    with torch.no_grad():
        mods = dict(model.named_modules())
        if name == "bert":
            values = [n for n in mods if n.endswith("attention.self.value")]
            assert values, list(mods)
            for v, out in ((mods[n], mods[n.replace("self.value", "output.dense")]) for n in values):
                out.weight *= 10
                for c in channels:
                    v.weight[c] *= factor
                    v.bias[c] *= factor
                    out.weight[:, c] /= factor
        else:
            for blk in model.transformer.h:
                for ln, lin in ((blk.ln_1, blk.attn.c_attn), (blk.ln_2, blk.mlp.c_fc)):
                    for c in channels:  # Conv1D: y = x W + b, W is in x out
                        ln.weight[c] *= factor
                        ln.bias[c] *= factor
                        lin.weight[c, :] /= factor


@pytest.mark.parametrize("name,kernel", [("bert", "ort"), ("bert", "ort-fused"), ("gpt2", "ort")])
def test_smoothing_brings_int8_closer_to_fp32_when_a_few_channels_carry_outliers(name, kernel, tmp_path):
    """A few channels 100x the rest coarsen the one activation scale for all the others; smoothing moves that range
    into the per-channel weight scales, and the int8 logits land much closer to fp32's. The fp32 model is the
    same function with and without the outliers, so the comparison isolates the rounding."""
    model, wl, batch, _ = _setup(tmp_path, name=name)
    _with_outliers(model, name)
    with torch.no_grad():
        ref = model(**batch).logits.numpy()
    plain = compress(model, Recipe.parse(f"quant(bits=8,kernel={kernel})"), wl).predict(batch)
    smooth = compress(model, Recipe.parse(f"quant(bits=8,kernel={kernel},smooth=0.8)"), wl)
    err_plain, err_smooth = _rel(plain, ref), _rel(smooth.predict(batch), ref)
    assert err_smooth < 0.5 * err_plain, (err_plain, err_smooth)
    assert smooth.info["smooth"]["smoothed"] >= (2 if name == "bert" else 4)  # at least the outlier inputs
    if kernel == "ort-fused":
        assert smooth.info["smooth"]["folded"] == 2, smooth.info  # the outliers sit where 1/s folds into V
    assert any("SmoothQuant, alpha 0.8" in n for n in smooth.notes), smooth.notes


def test_gemm_layers_reach_the_int8_kernel(tmp_path):
    """The dynamo export makes GPT-2's Conv1D layers (and every encoder's classifier head) Gemm ops, which ONNX
    Runtime's dynamic int8 does not quantize: they are rewritten as MatMul + Add first, so the file shrinks and
    the notes say so."""
    import onnx

    model, wl, batch, ref = _setup(tmp_path, name="gpt2")
    cm = compress(model, Recipe.parse("quant(bits=8,kernel=ort)"), wl)
    assert cm.info["gemm_as_matmul"] >= 8, cm.info  # 2 layers x (qkv, attn out, ffn in, ffn out)
    graph = onnx.load(str(tmp_path / "model.int8.onnx")).graph
    assert not [n for n in graph.node if n.op_type == "Gemm"]
    assert sum(n.op_type == "MatMulInteger" for n in graph.node) >= 9
    assert any("Gemm ops rewritten as MatMul + Add" in n for n in cm.notes), cm.notes
    assert _rel(cm.predict(batch), ref) < 0.05


def test_smoothing_runs_on_a_family_without_fused_attention(tmp_path):
    """A decoder's export has no Attention op to fold into, but its pre-LN norms feed only the next Linear, so
    their gains take 1/s; the saved artifact reloads to the same numbers."""
    from compression.artifacts import load

    model, wl, batch, _ = _setup(tmp_path, name="gpt2")
    _with_outliers(model, "gpt2")
    with torch.no_grad():
        ref = model(**batch).logits.numpy()
    cm = compress(model, Recipe.parse("quant(bits=8,kernel=ort,smooth=0.5)"), wl)
    assert cm.info["smooth"]["folded_into"]["a layer norm's gain"] == 5, cm.info  # 2 x (ln_1, ln_2), ln_f
    assert any("5 folded into a layer norm's gain" in n for n in cm.notes), cm.notes
    out = cm.predict(batch)
    assert _rel(out, ref) < 0.15
    cm.save(tmp_path / "art")
    assert np.allclose(load(tmp_path / "art").predict(batch), out, atol=1e-4)


def test_inputs_without_outlier_channels_get_no_mul(tmp_path):
    """A Mul costs time at batch 1 (about 16 us each on a 2-core EPYC); where no channel stands out it buys nothing,
    so such inputs are left alone and the notes count them. With the threshold at 0 every input is smoothed.
    BERT's plain export folds nothing (post-LN: each norm also feeds the residual path), so each input is one or
    the other."""
    import onnx

    from compression.methods import smooth
    from compression.methods.ort_graph import plain_fp32

    model, wl, batch, _ = _setup(tmp_path)
    _with_outliers(model, "bert")  # outliers in each layer's attention output only
    graph = onnx.load(str(plain_fp32(model, wl)))
    smooth.gemm_as_matmul(graph)
    src = tmp_path / "matmul.onnx"
    onnx.save(graph, str(src))
    picky = smooth.smooth_graph(src, tmp_path / "picky.onnx", 0.8, wl)
    every = smooth.smooth_graph(src, tmp_path / "every.onnx", 0.8, wl, min_ratio=0)
    assert every["skipped"] == 0 and every["folded"] == picky["folded"] == 0, (picky, every)
    assert every["muls"] == picky["muls"] + picky["skipped"], (picky, every)
    assert picky["skipped"] >= 1 and picky["muls"] >= 2, picky  # the two attention outputs kept
    muls = lambda p: sum(n.op_type == "Mul" for n in onnx.load(str(p)).graph.node)
    assert muls(tmp_path / "every.onnx") - muls(tmp_path / "picky.onnx") == picky["skipped"]
    assert "left as they were" in smooth.smooth_note(picky)


@pytest.mark.parametrize("kernel", ["torch", "rtn", "nbits", "openvino", "quanto"])
def test_smoothing_is_refused_where_no_activation_shares_one_int8_scale(kernel):
    kw = {"group_size": 128} if kernel == "nbits" else {}
    with pytest.raises(SpecError, match="kernel=ort, ort-fused or ort-static"):
        QuantSpec(bits=8 if kernel != "nbits" else 4, kernel=kernel, smooth=0.5, **kw)
    with pytest.raises(SpecError, match="quant.smooth"):
        QuantSpec(bits=8, kernel="ort", smooth=1.5)
    assert QuantSpec(bits=8, kernel="ort-static", smooth=0.8).smooth == 0.8


def test_smoothing_reads_in_plain_words():
    assert plain_name("quant(bits=8,kernel=ort-fused,smooth=0.8)") == \
        "8-bit weights on ONNX Runtime, layers fused with large input values evened out first (SmoothQuant 0.8)"
