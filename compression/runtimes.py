"""What runs a compressed model, below both the methods that build it and the loaders that rebuild it.

The methods (methods/quant.py, methods/lowrank.py) and the saved forms (artifacts.py) need the same
three things; they live here so that the saved forms never import a method.

Example::

    >>> qm = dynamic_int8(model, ["bert.encoder.layer.0.output.dense"])   # model's Linear layers swapped in place
    >>> sess = onnx_session(Path("model.int8.onnx"))                      # the protocol's threads
    >>> sess = openvino_session(Path("model.xml"))                        # the same calls, on OpenVINO
"""
from __future__ import annotations

from pathlib import Path

import torch

from . import config

# a graph's metadata key naming ONNX Runtime graph optimizers its session must leave off (comma-separated)
DISABLED_OPTIMIZERS_KEY = "onnxruntime.disabled_optimizers"


class LowRankLinear(torch.nn.Module):
    """y = B(A x) + b: ``first`` maps in -> r (no bias), ``second`` maps r -> out."""

    def __init__(self, in_features: int, rank: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.first = torch.nn.Linear(in_features, rank, bias=False)
        self.second = torch.nn.Linear(rank, out_features, bias=bias)

    def forward(self, x):
        return self.second(self.first(x))


def dynamic_int8(model: torch.nn.Module, names: list[str]) -> torch.nn.Module:
    """Swap the named Linear layers for torch's dynamic int8 Linear (fbgemm, per-channel weights).

    Activations are quantized per batch at run time, so the matmul itself runs in int8.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    # in place: every caller hands over a copy it owns (compress's deep copy, a freshly loaded skeleton), and a
    # second deep copy of the model costs a live-knob release a few tenths of a second
    return quantize_dynamic(model, {n: per_channel_dynamic_qconfig for n in names}, inplace=True)


def onnx_session(path: Path):
    """An ONNX Runtime session on the CPU with the protocol's threads (2 intra-op, 1 inter-op), and otherwise
    ONNX Runtime's own defaults, as deployed: its idle threads spin for a while after each run. The timing
    protocol (timing.py) keeps that spinning off the interleaved baseline by pausing between blocks.

    A graph that names optimizers to leave off (``DISABLED_OPTIMIZERS_KEY`` in its metadata, written by the
    fused ONNX settings) gets them left off, as a deployment of that file would pass them."""
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = config.threads(), 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    off = [x for x in props.get(DISABLED_OPTIMIZERS_KEY, "").split(",") if x]
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"],
                                **({"disabled_optimizers": off} if off else {}))


class _OVInput:
    def __init__(self, name: str):
        self.name = name


class OpenVINOSession:
    """An OpenVINO compiled model behind ONNX Runtime's two calls (``get_inputs()``, ``run(None, feeds)``), so
    predicting and timing treat both runtimes alike."""

    def __init__(self, compiled):
        self.compiled = compiled
        self.request = compiled.create_infer_request()  # one request, reused: what a deployed server holds
        self._inputs = [_OVInput(i.get_any_name()) for i in compiled.inputs]

    def get_inputs(self) -> list[_OVInput]:
        return self._inputs

    def run(self, _outputs, feeds: dict):
        return [self.request.infer(feeds)[self.compiled.output(0)]]


def openvino_session(path: Path) -> OpenVINOSession:
    """OpenVINO's CPU plugin on ``path`` (.xml beside its .bin) with the protocol's threads and otherwise its own
    defaults, as deployed: among them its inference precision, which is bf16 on a CPU with bf16 units (the
    int8 layers stay int8; the rest then runs in bf16) and fp32 elsewhere."""
    try:
        import openvino as ov
    except ImportError as e:
        raise RuntimeError("OpenVINO is not installed: pip install -r requirements-openvino.txt") from e
    core = ov.Core()
    return OpenVINOSession(core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": config.threads()}))
