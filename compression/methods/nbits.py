"""2/4/8-bit weights on ONNX Runtime's n-bit weight kernel (the MatMulNBits contrib op), latency measured.

The baseline is exported to fp32 ONNX once (the cache), then ``onnxruntime.quantization.matmul_nbits_quantizer``
rewrites the MatMul of every Linear inside the blocks (the same layers as the torch path; the pooler and the
classifier head stay fp32) into MatMulNBits, with the weights chosen by:

- ``rtn``: ONNX Runtime's own round-to-nearest (its C++ block quantizer);
- ``hqq``: ONNX Runtime's HQQ, scales and zero points fitted to the weights with no calibration data;
- ``gptq``: our GPTQ (``gptq.py``; ONNX Runtime's bundled GPTQ packs only 4 bits and quantizes every
  MatMul, the head included), on Hessians from 128 train-split texts, packed in MatMulNBits' layout here.

With ``clip=mse`` the RTN codes are ours too (``quant.rtn_codes``), since ONNX Runtime's rounder has no range search.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from ..artifacts import CompressedModel, onnx_model
from ..packed import pack_bits
from ..families import family
from ..specs import QuantSpec
from .gptq import gptq
from .hessian import layer_hessians
from .quant import _quiet_ort_quantizer, export_onnx, gptq_words, rtn_codes

# MatMulNBits' accuracy_level 4 quantizes each activation block to int8 and runs an int8 dot product. On the
# default model at seq 64 (2 threads, AVX-512 VNNI), 4-bit weights ran 8.1 ms at batch 1 with it and 12.1 ms with
# fp32 compute (level 0), against 11.1 ms for ONNX Runtime fp32: only level 4 beats the fp32 graph.
ACCURACY_LEVEL = 4


def _key(weight_t: np.ndarray) -> str:
    """A MatMul's weight (in, out) found again among the torch Linear weights (out, in) by its bytes."""
    return hashlib.sha1(np.ascontiguousarray(weight_t, dtype=np.float32).tobytes()).hexdigest()


def pack_matmul_nbits(codes: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, bits: int,
                      block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """MatMulNBits' inputs B, scales and zero_points from unsigned codes (out, in), scales and zero points
    (out, blocks): B is (out, blocks, block·bits/8) uint8, each block's codes low bits first.

    Without zero points the kernel takes 2^(bits-1) as every block's zero (our symmetric codes' offset).
    Example: ``pack_matmul_nbits(codes, scale, None, 4, 128)``.
    """
    n, k = codes.shape
    blocks = -(-k // block)
    padded = np.zeros((n, blocks * block), dtype=np.uint8)
    padded[:, :k] = codes
    b = pack_bits(padded, bits).reshape(n, blocks, block * bits // 8)
    zp = None
    if zero is not None:
        per_byte = 8 // bits
        z = np.zeros((n, -(-blocks // per_byte) * per_byte), dtype=np.uint8)
        z[:, :blocks] = zero
        zp = pack_bits(z, bits).reshape(n, -1)
    return b, scale.astype(np.float32).reshape(n, blocks), zp


def _gptq_quantizer(config, prepared: dict[str, tuple]):
    """ONNX Runtime's RTN node rewriter, fed our codes (GPTQ, or RTN with clipped ranges) instead of its own
    rounding for each weight."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantizer

    class GPTQCodes(DefaultWeightOnlyQuantizer):
        def qbits_block_quant(self, fp32weight):
            return prepared[_key(fp32weight)]

    return GPTQCodes(config)


@contextlib.contextmanager
def _quiet_nbits():
    """ONNX Runtime's n-bit quantizer calls ``logging.basicConfig(level=INFO)`` on import and logs every node
    at INFO: keep its loggers at ERROR for the call and put the root logger back as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    chatty = [logging.getLogger(n) for n in ("onnxruntime.quantization.matmul_nbits_quantizer", "neural_compressor")]
    levels = [c.level for c in chatty]
    for c in chatty:
        c.setLevel(logging.ERROR)
    try:
        with _quiet_ort_quantizer(), warnings.catch_warnings():  # HQQ warns about read-only numpy arrays
            warnings.simplefilter("ignore")
            yield
    finally:
        for c, v in zip(chatty, levels):
            c.setLevel(v)
        for h in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(h)
        root.setLevel(level)


def nbits(model: torch.nn.Module, spec: QuantSpec, workload) -> CompressedModel:
    """Quantize the Linear layers inside the blocks to ``spec.bits`` on MatMulNBits (see the module doc)."""
    import onnx

    with _quiet_nbits():
        from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                     HQQWeightOnlyQuantConfig, MatMulNBitsQuantizer)

    layers = family(model).linears(model, "body")
    wanted = {_key(lin.weight.detach().T.numpy()): (name, lin) for name, lin in layers}
    cache = getattr(workload, "onnx_cache", None)
    scratch = Path(workload.scratch)
    fp32 = cache if cache is not None and cache.exists() else export_onnx(
        model, cache or scratch / "fp32.onnx", tokenizer=workload.tokenizer)
    graph = onnx.load(str(fp32))
    inits = {i.name: i for i in graph.graph.initializer}
    found, exclude = {}, []
    for node in graph.graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits and len(inits[node.input[1]].dims) == 2:
            key = _key(onnx.numpy_helper.to_array(inits[node.input[1]]))
            if key in wanted:
                found[key] = wanted[key]
            else:
                exclude.append(node.name)  # the head or a projection outside the blocks: stays fp32

    sym = spec.scheme == "sym"
    config = (HQQWeightOnlyQuantConfig(block_size=spec.group_size, bits=spec.bits) if spec.algorithm == "hqq" else
              DefaultWeightOnlyQuantConfig(block_size=spec.group_size, is_symmetric=sym, bits=spec.bits,
                                           accuracy_level=ACCURACY_LEVEL))
    quantizer = MatMulNBitsQuantizer(graph, algo_config=config, nodes_to_exclude=exclude)
    if spec.algorithm == "gptq" or spec.clip != "none":  # our codes, not ONNX Runtime's own rounding
        hessians = layer_hessians(model, list(found.values()), workload) if spec.algorithm == "gptq" else {}
        prepared = {}
        for key, (name, lin) in found.items():
            if spec.algorithm == "gptq":
                q = gptq(lin.weight, hessians.pop(name), spec.bits, spec.group_size, spec.scheme,
                         act_order=spec.act_order == "on", clip=spec.clip)
            else:
                q = rtn_codes(lin.weight, spec.bits, spec.group_size, spec.scheme, spec.clip)
            zero = q["zero"].numpy() if "zero" in q else None
            prepared[key] = pack_matmul_nbits(q["codes"].numpy(), q["scale"].numpy(), zero, spec.bits, spec.group_size)
        quantizer.node_quantizer = _gptq_quantizer(config, prepared)
    with _quiet_nbits():
        quantizer.process()
    out_graph = quantizer.model.model
    for node in out_graph.graph.node:
        attrs = {a.name for a in node.attribute}
        if node.op_type == "MatMulNBits" and "accuracy_level" not in attrs:  # ORT's HQQ leaves it unset (fp32)
            node.attribute.append(onnx.helper.make_attribute("accuracy_level", ACCURACY_LEVEL))
    out = scratch / "model.nbits.onnx"
    onnx.save(out_graph, str(out))
    cm = onnx_model(out, f"MatMulNBits {spec.bits}-bit weights, groups of {spec.group_size}, int8 compute "
                         "(ONNX Runtime)")
    cm.info.update(_params(out_graph), bits=spec.bits, quantized_layers=len(found), kernel="nbits",
                   algorithm=spec.algorithm)
    how = ({"rtn": "rounded to nearest", "hqq": "scales fitted by HQQ", "gptq": ""}[spec.algorithm]
           + gptq_words(spec)).lstrip(", ")
    cm.notes.append(f"exported to ONNX; {len(found)} of {len(layers)} Linear layers store {spec.bits}-bit weights "
                    f"({spec.scheme}, groups of {spec.group_size}, {how}) on ONNX Runtime's "
                    "MatMulNBits kernel")
    return cm


def _params(graph) -> dict[str, int]:
    """Parameters and nonzero ones, counting each MatMulNBits weight as its K·N weights (not its packed bytes)."""
    from onnx import numpy_helper

    quantized = {x for n in graph.graph.node if n.op_type == "MatMulNBits" for x in n.input[1:]}
    params = 0
    for n in graph.graph.node:
        if n.op_type == "MatMulNBits":
            attrs = {a.name: a.i for a in n.attribute}
            params += attrs["K"] * attrs["N"]
    nonzero = params
    for init in graph.graph.initializer:
        if init.name in quantized:
            continue
        a = numpy_helper.to_array(init)
        if a.size > 1 and a.dtype != np.int64:
            params += a.size
            nonzero += int(np.count_nonzero(a))
    return {"params": params, "nonzero_params": nonzero}
