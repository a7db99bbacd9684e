"""The same model on OpenVINO's CPU plugin (an optional runtime: ``pip install -r requirements-openvino.txt``).

- ``runtime(engine=openvino)``: the baseline's fp32 ONNX export read into OpenVINO. OpenVINO's own default
  inference precision applies, as deployed: bf16 on a CPU with bf16 units (AVX-512 BF16 or AMX), so this
  setting is not always lossless there; fp32 elsewhere. The notes say which it ran in.
- ``quant(kernel=openvino)``: NNCF's post-training int8 (``nncf.quantize`` with its transformer preset: static
  activation scales from 128 train-split sentences, never the test split, SmoothQuant and bias correction);
  the word and position embeddings in int8 with ``embeddings=8`` (only the words where the int8 graph fails
  to compile: a graph that computes its position ids can fail OpenVINO's constant folding), or left in fp32.

It was added because it measured the fastest int8 path on an AMD EPYC with AVX-512 VNNI (README, Benchmarks).

Example::

    >>> cm = ov_int8(model, QuantSpec(bits=8, kernel="openvino", embeddings="8"), workload)
    >>> cm.predict(workload.encode(["a fine film"]))   # logits, from OpenVINO's int8 kernels
"""
from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
from pathlib import Path

import torch

from ..artifacts import CompressedModel, openvino_model
from ..specs import QuantSpec, RuntimeSpec, SpecError
from .ort_graph import _Calibration, plain_fp32
from .quant import seven_bit_weights


def _openvino():
    try:
        import openvino
    except ImportError as e:
        raise SpecError("OpenVINO is not installed here: pip install -r requirements-openvino.txt "
                        "(or pick another kernel)") from e
    return openvino


@functools.lru_cache(maxsize=1)
def _precision(ov) -> str:
    """The precision OpenVINO's CPU plugin runs fp32 layers in by default on this CPU: bf16 or fp32 (asked once:
    the CPU does not change under a process)."""
    name = str(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")).replace("<Type: '", "").rstrip("'>")
    return {"float32": "fp32", "f32": "fp32", "bfloat16": "bf16", "bf16": "bf16", "float16": "fp16", "f16": "fp16"}.get(name, name)


def _lookups(ir, keep: str) -> list[str]:
    """The table lookups (Gather from a weight) NNCF must leave in fp32: all of them (``keep="none"``), all but
    the word embeddings, the largest table (``"words"``), or only the small ones (``"tables"``: the words and every
    table as wide as theirs, the absolute positions, go to 8 bits; token types and per-head relative-position
    buckets stay fp32)."""
    found = []
    for op in ir.get_ops():
        if op.get_type_name() == "Gather":
            table = op.input_value(0).get_node()
            shape = table.get_output_partial_shape(0)
            if table.get_type_name() == "Constant" and len(shape) == 2:
                found.append((shape[0].get_length(), shape[1].get_length(), op.get_friendly_name()))
    found.sort()
    if keep == "tables" and found:  # 8 bits: the tables as wide as the words' (positions), but not token types
        width = found[-1][1]
        return [name for rows, cols, name in found if cols != width or rows <= 16]
    return [name for *_, name in (found[:-1] if keep == "words" and found else found)]


def _save(ov, model, out: Path) -> Path:
    # compress_to_fp16=False: the file holds exactly the weights described (fp32 stays fp32, int8 stays int8)
    ov.save_model(model, str(out), compress_to_fp16=False)
    return out


def _kernel(ov, what: str) -> str:
    return f"{what} (OpenVINO {ov.__version__.split('-')[0]} CPU plugin, rest in {_precision(ov)})"


def ov_fp32(model: torch.nn.Module, spec: RuntimeSpec, workload) -> CompressedModel:
    """The fp32 weights on OpenVINO, run at its default inference precision."""
    ov = _openvino()
    ir = ov.Core().read_model(str(plain_fp32(model, workload)))
    out = _save(ov, ir, Path(workload.scratch) / "model.openvino.xml")
    prec = _precision(ov)
    cm = openvino_model(out, _kernel(ov, "fp32 weights"))
    cm.notes.append("the same fp32 weights, exported to ONNX and run on OpenVINO" +
                    (f"; OpenVINO computes in {prec} on this CPU by default, so answers may differ slightly"
                     if prec != "fp32" else ""))
    cm.info.update(bits=32, engine="openvino", inference_precision=prec)
    return cm


def ov_int8(model: torch.nn.Module, spec: QuantSpec, workload) -> CompressedModel:
    """NNCF's post-training int8 of the exported graph, calibrated on train-split sentences."""
    ov = _openvino()
    # NNCF sends usage telemetry unless a consent file in the user's home says no; this tool sends nothing on its
    # users' behalf. NNCF's own switch for that (it only turns its telemetry off) is this variable.
    os.environ.setdefault("NNCF_CI", "1")
    import nncf

    ir = ov.Core().read_model(str(plain_fp32(model, workload)))
    names = [i.get_any_name() for i in ir.inputs]
    # one sentence per item: NNCF's statistics (SmoothQuant's among them) are meant per sample
    items = [{k: v[i:i + 1] for k, v in b.items()} for b in _Calibration(workload, names).batches
             for i in range(len(next(iter(b.values()))))]
    workload.progress(0.05, f"NNCF: int8 scales from {len(items)} training sentences")
    logging.getLogger("nncf").setLevel(logging.ERROR)
    seven, why = seven_bit_weights()
    # NNCF's own fix for CPUs without VNNI: every MatMul's weights in half the int8 range (its default fixes
    # only the first layers after the inputs, which left a tiny ELECTRA's logits 31% off on an AVX2-only EPYC)
    advanced = nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix.ENABLE) if seven else None

    def quantize(keep: str):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return nncf.quantize(ir, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                                 subset_size=len(items), ignored_scope=nncf.IgnoredScope(names=_lookups(ir, keep)),
                                 advanced_parameters=advanced)

    tables = "none"
    if spec.embeddings == "8":
        # words and positions in 8 bits; where computed position ids next to the int8 table fail OpenVINO's
        # constant folding when it compiles (RoBERTa's did on an earlier OpenVINO), only the words
        q, tables = quantize("tables"), "tables"
        try:
            ov.Core().compile_model(q, "CPU")
        except Exception:  # noqa: BLE001 - OpenVINO raises a bare RuntimeError from its plugin
            workload.progress(0.5, "NNCF: the position table stays fp32 here; quantizing again")
            q, tables = quantize("words"), "words"
    else:
        q = quantize("none")
    out = _save(ov, q, Path(workload.scratch) / "model.openvino-int8.xml")
    prec = _precision(ov)
    cm = openvino_model(out, _kernel(ov, "int8 MatMul, static activation scales"))
    cm.notes.append(f"exported to ONNX, quantized by NNCF: MatMuls in int8 with activation scales from "
                    f"{len(items)} training sentences (SmoothQuant, bias correction)"
                    + {"tables": "; word and position embeddings in 8 bits", "words": "; word embeddings in 8 bits (the "
                       "position table stays fp32: this graph computes its position ids)", "none": ""}[tables]
                    + (f"; the layers left in floating point run in {prec}, OpenVINO's default on this CPU"
                       if prec != "fp32" else "") + why)
    cm.info.update(bits=8, kernel="openvino", inference_precision=prec, weight_range_bits=7 if seven else 8,
                   tables_8bit=tables)
    return cm
