"""Quantization: real int8 kernels where they exist here, round-to-nearest (RTN) low-bit weights otherwise.

- ``torch``: dynamic int8 Linear (fbgemm): int8 weights and an int8 matmul; measured latency.
- ``rtn``: b-bit codes with per-group scales, written packed; at run time they are decoded to fp32,
  so the accuracy is real but the latency is a stand-in (labelled simulated).
- ``embeddings``: the word-embedding table stored in 8 or 4 bits (decoded at load; lookups cost nothing).
"""
from __future__ import annotations

import numpy as np
import torch

from ..artifacts import CompressedModel, Packed, pack_bits
from ..specs import QuantSpec, SpecError
from . import HEAD, select_modules


def dynamic_int8(model: torch.nn.Module, names: list[str]) -> torch.nn.Module:
    """Swap the named Linear layers for torch's dynamic int8 Linear (fbgemm, per-channel weights).

    Activations are quantized per batch at run time, so the matmul itself runs in int8.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    return quantize_dynamic(model, {n: per_channel_dynamic_qconfig for n in names}, inplace=False)


def rtn(w: torch.Tensor, bits: int, group: int, scheme: str) -> tuple[torch.Tensor, Packed]:
    """Round-to-nearest quantization of a 2-D weight in groups of ``group`` along the input dimension.

    Returns the decoded weight (exactly what will run) and its packed form.
    Example: ``rtn(torch.randn(8, 64), bits=4, group=32, scheme="sym")``.
    """
    out_f, in_f = w.shape
    if in_f % group:
        raise SpecError(f"quant.group_size={group} does not divide the layer's input size {in_f}")
    g = w.detach().float().reshape(-1, group)  # (out * in / group, group)
    levels = 2 ** bits
    if scheme == "sym":
        qmax = levels // 2 - 1
        scale = (g.abs().amax(dim=1, keepdim=True) / qmax).clamp(min=1e-12)
        q = torch.clamp(torch.round(g / scale), -qmax - 1, qmax)
        codes = (q + levels // 2).to(torch.uint8)
        tensors = {"scale": scale.squeeze(1).half()}
        decoded = q * tensors["scale"].float().unsqueeze(1)  # decode with the fp16 scales that are stored
    else:
        lo, hi = g.amin(dim=1, keepdim=True), g.amax(dim=1, keepdim=True)
        scale = ((hi - lo) / (levels - 1)).clamp(min=1e-12)
        zero = torch.clamp(torch.round(-lo / scale), 0, levels - 1)
        tensors = {"scale": scale.squeeze(1).half(), "zero": zero.squeeze(1).to(torch.uint8)}
        scale = tensors["scale"].float().unsqueeze(1)
        q = torch.clamp(torch.round(g / scale) + zero, 0, levels - 1)
        codes = q.to(torch.uint8)
        decoded = (q - zero) * scale
    tensors["codes"] = torch.from_numpy(pack_bits(codes.numpy(), bits))
    packed = Packed("rtn", (out_f, in_f), tensors, {"bits": bits, "group": group, "scheme": scheme})
    return decoded.reshape(out_f, in_f).to(w.dtype), packed


def _embeddings(model: torch.nn.Module, bits: int) -> dict[str, Packed]:
    """Store the word-embedding table in ``bits`` bits, one scale per row."""
    emb = model.get_input_embeddings()
    name = next(n for n, m in model.named_modules() if m is emb) + ".weight"
    decoded, packed = rtn(emb.weight, bits, emb.weight.shape[1], "sym")
    with torch.no_grad():
        emb.weight.copy_(decoded)
    return {name: packed}


def quantize(model: torch.nn.Module, spec: QuantSpec, workload) -> CompressedModel:
    """Quantize the Linear layers (not the classifier head) as the spec says."""
    kernel = spec.resolved_kernel
    packed: dict[str, Packed] = dict(getattr(model, "_packed", {}))
    notes = []
    if spec.embeddings != "none":
        packed.update(_embeddings(model, int(spec.embeddings)))
        notes.append(f"word embeddings stored in {spec.embeddings} bits")
    layers = select_modules(model, exclude=HEAD)
    if kernel == "torch":
        qm = dynamic_int8(model, [n for n, _ in layers])
        cm = CompressedModel("int8-dynamic", "torch", "fbgemm int8 matmul, dynamic activations", module=qm)
        notes.insert(0, f"{len(layers)} Linear layers store int8 weights and run an int8 matmul")
    elif kernel == "rtn":
        for name, lin in layers:
            group = spec.group_size or lin.in_features
            decoded, p = rtn(lin.weight, spec.bits, group, spec.scheme)
            with torch.no_grad():
                lin.weight.copy_(decoded)
            packed[f"{name}.weight"] = p
        qm = model
        cm = CompressedModel("dense", "torch", f"fp32 matmul on decoded {spec.bits}-bit weights (stand-in: "
                                               f"no fast {spec.bits}-bit kernel here)", module=qm,
                             latency_label="simulated")
        grp = f"groups of {spec.group_size}" if spec.group_size else "one scale per output channel"
        notes.insert(0, f"{len(layers)} Linear layers store {spec.bits}-bit weights ({spec.scheme}, {grp})")
    else:
        raise SpecError(f"quant.kernel={kernel} is not available in this build")
    qm._packed = packed
    cm.notes = notes
    cm.info.update(bits=spec.bits, quantized_layers=len(layers), kernel=kernel)
    return cm


def distinct_per_group(p: Packed) -> int:
    """The most distinct codes in any group (tests check it is at most 2**bits)."""
    from ..artifacts import unpack_bits

    n = int(np.prod(p.shape))
    codes = unpack_bits(p.tensors["codes"].numpy(), p.meta["bits"], n).reshape(-1, p.meta["group"])
    return max(len(np.unique(row)) for row in codes)
