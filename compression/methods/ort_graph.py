"""The same weights on ONNX Runtime: fp32 as exported, the transformer optimizer's fused graph, and int8 on
either graph (dynamic activations, or static QDQ scales calibrated on the train split).

- ``runtime(engine=ort)``: the fp32 export as it is (ONNX Runtime's own graph optimizations only);
- ``runtime(engine=ort-fused)``: after ``onnxruntime.transformers.optimizer.optimize_model``. Attention fuses
  only on a TorchScript export of the model with eager attention (the dynamo export, SDPA or eager, leaves
  a pattern it does not match), so the fused path exports that way; a family whose model that exporter
  cannot trace falls back to the dynamo export, and the notes say which fused ops the graph holds. The
  residual add and layer norm stay two ops (Add, LayerNormalization), not SkipLayerNormalization: ONNX Runtime
  1.32's CPU SkipLayerNormalization took 103 us at [1, 64, 384] against 18 us for Add + LayerNormalization
  (AMD EPYC, Zen 5), so the fused default ran 1.16x faster without it. The saved graph asks its session to keep
  it that way (``DISABLED_OPTIMIZERS``: ONNX Runtime would otherwise fuse the pair again at load);
- ``quant(kernel=ort-fused)``: dynamic int8 on the fused graph (QAttention, int8 MatMuls);
- ``quant(kernel=ort-static)``: static int8, QDQ, the weight MatMuls' activation scales calibrated on 128
  train-split sentences (never the test split).

Example::

    >>> cm = run_on_ort(model, RuntimeSpec(engine="ort-fused"), workload)   # an ONNX Runtime session
    >>> cm.info["fused_ops"]      # {'Attention': 6, 'BiasGelu': 6, 'EmbedLayerNormalization': 1}
"""
from __future__ import annotations

import contextlib
import io
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ..artifacts import CompressedModel, onnx_model
from ..families import family
from ..specs import QuantSpec, RuntimeSpec, SpecError
from ..runtimes import DISABLED_OPTIMIZERS_KEY
from .quant import _Logits, _quiet_ort_quantizer, export_onnx, seven_bit_weights
from .smooth import int8_source

FUSED_OPS = ("Attention", "MultiHeadAttention", "EmbedLayerNormalization", "SkipLayerNormalization", "BiasGelu",
             "FastGelu", "Gelu", "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization")
CALIBRATION_ROWS = 128
# ONNX Runtime's own fusions to leave off when a session loads the fused graph (see the module docstring)
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


def plain_fp32(model: torch.nn.Module, workload) -> Path:
    """The baseline's dynamo fp32 export (cached per baseline when the model is untouched)."""
    cache = getattr(workload, "onnx_cache", None)
    if cache is not None and cache.exists():
        return cache
    return export_onnx(model, cache or Path(workload.scratch) / "fp32.onnx", tokenizer=workload.tokenizer)


def _export_eager(model: torch.nn.Module, path: Path, seq_len: int, tokenizer) -> Path:
    """fp32 ONNX from the TorchScript exporter (opset 17) with eager attention: the graph the transformer
    optimizer's Attention fusion matches. Batch and sequence stay dynamic."""
    names = family(model).input_names(model, tokenizer)
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    else:
        model.config._attn_implementation = "eager"
    x = torch.full((2, seq_len), 4 if model.config.pad_token_id == 3 else 3, dtype=torch.long)
    mask = torch.ones_like(x)
    mask[1, seq_len // 2:] = 0
    example = {"input_ids": x, "attention_mask": mask}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Logits(model.float().eval(), names), tuple(example.get(n, torch.zeros_like(x)) for n in names),
                          str(tmp), dynamo=False, opset_version=17, input_names=names, output_names=["logits"],
                          dynamic_axes={n: {0: "batch", 1: "seq"} for n in names} | {"logits": {0: "batch"}})
    tmp.rename(path)
    return path


def fused_fp32(model: torch.nn.Module, workload) -> tuple[Path, dict[str, int], str]:
    """The fused fp32 graph (cached beside the baseline's plain export), its fused op counts, and which
    exporter made it. Only the untouched baseline is cached: a changed model is exported again."""
    import onnx

    cache = getattr(workload, "onnx_cache", None)
    name = "fp32-fused-ln.onnx"  # a new name: graphs cached before hold SkipLayerNormalization
    out = cache.with_name(name) if cache is not None else Path(workload.scratch) / name
    how = "TorchScript export, eager attention"
    if not out.exists():
        src = out.with_name(out.stem + ".export.onnx")
        try:
            _export_eager(model, src, workload.seq_len, workload.tokenizer)
        except Exception:  # a family the TorchScript tracer cannot follow: fuse what the dynamo graph allows
            src, how = plain_fp32(model, workload), "dynamo export (the TorchScript exporter failed on this model)"
        fam = family(model)
        _fuse(src, out, fam.heads(model), fam.hidden(model))
        if src.name.endswith(".export.onnx"):
            src.unlink(missing_ok=True)
        out.with_suffix(".how").write_text(how)
    how = out.with_suffix(".how").read_text() if out.with_suffix(".how").exists() else how
    counts = Counter(n.op_type for n in onnx.load(str(out), load_external_data=False).graph.node)
    return out, {k: counts[k] for k in FUSED_OPS if counts.get(k)}, how


def _fuse(src: Path, out: Path, heads: int, hidden: int) -> None:
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    tmp = out.with_suffix(".tmp.onnx")
    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False  # slower than Add + LayerNormalization on ORT's CPU kernels
    with contextlib.redirect_stdout(io.StringIO()), _quiet_ort_quantizer():
        opt = optimize_model(str(src), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0,
                             optimization_options=options)
        opt.save_model_to_file(str(tmp), use_external_data_format=False)
    _keep_unfused(tmp)
    tmp.rename(out)


def _keep_unfused(path: Path) -> None:
    """Record in the graph the ORT fusions its session should leave off (runtimes.onnx_session reads it)."""
    import onnx

    m = onnx.load(str(path))
    onnx.helper.set_model_props(m, {**{p.key: p.value for p in m.metadata_props},
                                    DISABLED_OPTIMIZERS_KEY: ",".join(DISABLED_OPTIMIZERS)})
    onnx.save(m, str(path))


def _fused_note(ops: dict[str, int], how: str) -> str:
    if not ops:
        return f"the transformer optimizer found no pattern to fuse in this graph ({how})"
    return ("fused: " + ", ".join(f"{k} {v}" for k, v in ops.items()) + f" ({how}); residual add and layer norm "
            f"left unfused, faster on ONNX Runtime's CPU kernels (load it with disabled_optimizers="
            f"{list(DISABLED_OPTIMIZERS)})")


def run_on_ort(model: torch.nn.Module, spec: RuntimeSpec, workload) -> CompressedModel:
    """The same fp32 weights on ONNX Runtime, as exported or with the transformer optimizer's fusions (or on
    OpenVINO: methods/openvino.py)."""
    if spec.engine == "openvino":
        from .openvino import ov_fp32

        return ov_fp32(model, spec, workload)
    if spec.engine == "ort":
        src = plain_fp32(model, workload)
        out = Path(workload.scratch) / "model.fp32.onnx"
        out.write_bytes(src.read_bytes())
        cm = onnx_model(out, "fp32 MatMul (ONNX Runtime)")
        cm.notes.append("the same fp32 weights, exported to ONNX and run on ONNX Runtime")
    else:
        src, ops, how = fused_fp32(model, workload)
        out = Path(workload.scratch) / "model.fp32-fused.onnx"
        out.write_bytes(src.read_bytes())
        cm = onnx_model(out, "fp32 fused transformer kernels (ONNX Runtime)")
        cm.notes.append("the same fp32 weights on ONNX Runtime; " + _fused_note(ops, how))
        cm.info.update(fused_ops=ops)
    cm.info.update(bits=32, engine=spec.engine)
    return cm


def fused_int8(model: torch.nn.Module, spec: QuantSpec, workload) -> CompressedModel:
    """Dynamic int8 on the fused graph: QAttention and int8 MatMuls (and the embedding table with embeddings=8)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, ops, how = fused_fp32(model, workload)
    out = Path(workload.scratch) / "model.int8-fused.onnx"
    types = ["MatMul", "Attention"] + (["EmbedLayerNormalization", "Gather"] if spec.embeddings == "8" else [])
    seven, why = seven_bit_weights()
    src, source_note, source_info = int8_source(src, spec, workload)
    with _quiet_ort_quantizer():
        # the fused graph's contrib ops carry no type information the quantizer can read without this
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=types,
                         reduce_range=seven, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    _keep_unfused(out)
    cm = onnx_model(out, "int8 fused transformer kernels (ONNX Runtime, dynamic activations)")
    cm.notes.append("exported to ONNX, " + _fused_note(ops, how) + "; MatMul and Attention weights in int8"
                    + ("; word embeddings in 8 bits" if spec.embeddings == "8" else "") + source_note + why)
    cm.info.update(bits=8, kernel="ort-fused", fused_ops=ops, weight_range_bits=7 if seven else 8, **source_info)
    return cm


class _Calibration:
    """The static quantizer's data reader: train-split sentences, 16 at a time, with only the graph's inputs."""

    def __init__(self, workload, names: list[str]):
        train = workload.train["text"]
        texts = train.sample(n=min(CALIBRATION_ROWS, len(train)), random_state=workload.seed).tolist()
        self.batches = [{k: v.numpy().astype(np.int64) for k, v in workload.encode(texts[i:i + 16]).items() if k in names}
                        for i in range(0, len(texts), 16)]
        self.it = iter(self.batches)

    def get_next(self):
        return next(self.it, None)

    def rewind(self):
        self.it = iter(self.batches)


def static_int8(model: torch.nn.Module, spec: QuantSpec, workload) -> CompressedModel:
    """Static int8 QDQ: weight MatMuls (signed int8 weights per channel, unsigned int8 activations whose scales
    come from 128 train-split sentences); attention's activation x activation products stay fp32.

    Unsigned activations: with signed ones (S8S8) ONNX Runtime ran the default 3.4x slower at batch 1 on an AMD
    EPYC with AVX-512 (57 ms against 17 ms, same accuracy), having no fast S8S8 kernel there."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    src, source_note, source_info = int8_source(plain_fp32(model, workload), spec, workload)
    graph = onnx.load(str(src), load_external_data=False).graph
    tables = {i.name for i in graph.initializer if len(i.dims) == 2}
    ops = ("MatMul", "Gather") if spec.embeddings == "8" else ("MatMul",)
    # MatMul x weight, and Gather from an embedding table (not the shape Gathers with a constant index)
    nodes = [n.name for n in graph.node if (n.op_type == "MatMul" and n.input[1] in tables)
             or (n.op_type == "Gather" and "Gather" in ops and n.input[0] in tables)]
    if not nodes:
        raise SpecError("quant.kernel=ort-static found no weight MatMul in this model's graph")
    out = Path(workload.scratch) / "model.int8-static.onnx"
    reader = _Calibration(workload, [i.name for i in graph.input])
    seven, why = seven_bit_weights()
    with _quiet_ort_quantizer():
        quantize_static(str(src), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8, op_types_to_quantize=list(ops),
                        nodes_to_quantize=nodes, calibrate_method=CalibrationMethod.MinMax, reduce_range=seven)
    cm = onnx_model(out, "int8 QDQ MatMul (ONNX Runtime, static activation scales)")
    cm.notes.append(f"exported to ONNX; {len(nodes)} weight MatMuls in int8 with activation scales calibrated on "
                    f"{min(CALIBRATION_ROWS, len(workload.train))} training sentences"
                    + ("; word embeddings in 8 bits" if spec.embeddings == "8" else "") + source_note + why)
    cm.info.update(bits=8, kernel="ort-static", weight_range_bits=7 if seven else 8, **source_info)
    return cm
