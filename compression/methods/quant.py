"""Quantization: real int8 kernels where they exist here, round-to-nearest (RTN) low-bit weights otherwise.

- ``torch``: dynamic int8 Linear (fbgemm): int8 weights and an int8 matmul; measured latency.
- ``rtn``: b-bit codes with per-group scales, written packed; at run time they are decoded to fp32,
  so the accuracy is real but the latency is a stand-in (labelled simulated). ``algorithm=gptq`` picks
  the codes with GPTQ (``gptq.py``) instead of rounding each weight to its nearest level.
- ``nbits``: 2/4/8-bit weights on ONNX Runtime's MatMulNBits kernel (``nbits.py``); measured latency.
- ``embeddings``: the word-embedding table stored in 8 or 4 bits (decoded at load; lookups cost nothing).
- ``unseen``: the table's rows of tokens that never occur in the train split in 2 bits, or dropped (zeros).
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
import torch

from .. import config
from ..artifacts import CompressedModel, Packed, onnx_model
from ..packed import pack_bits, unpack_bits
from ..families import family
from ..layerwise import levels
from ..runtimes import dynamic_int8
from ..specs import QuantSpec, SpecError
from .gptq import grid, gptq, round_to_grid
from .hessian import layer_hessians


def rtn(w: torch.Tensor, bits: int, group: int, scheme: str, clip: str = "none") -> tuple[torch.Tensor, Packed]:
    """Round-to-nearest quantization of a 2-D weight in groups of ``group`` along the input dimension.

    Returns the decoded weight (exactly what will run) and its packed form. ``clip="mse"`` shrinks each
    group's range to the one with the least squared rounding error (``gptq.grid``).
    Example: ``rtn(torch.randn(8, 64), bits=4, group=32, scheme="sym")``.
    """
    q = rtn_codes(w, bits, group, scheme, clip)
    return q["decoded"], packed_codes(q["codes"], q["scale"], q.get("zero"), bits, group, scheme)


def rtn_codes(w: torch.Tensor, bits: int, group: int, scheme: str, clip: str = "none") -> dict[str, torch.Tensor]:
    """Round-to-nearest codes in ``gptq.gptq``'s form: ``codes`` (out, in), ``scale`` (out, groups), ``zero``
    (asym) and ``decoded``, the weights that will run."""
    out_f, in_f = w.shape
    if in_f % group:
        raise SpecError(f"quant.group_size={group} does not divide the layer's input size {in_f}")
    g = w.detach().float().reshape(-1, group)  # (out * in / group, group)
    scale, stored, zero = grid(g, bits, scheme, clip)
    codes, decoded = round_to_grid(g, scale, stored, zero, bits)
    q = {"codes": codes.reshape(out_f, in_f), "scale": stored.reshape(out_f, -1),
         "decoded": decoded.reshape(out_f, in_f).to(w.dtype)}
    if zero is not None:
        q["zero"] = zero.reshape(out_f, -1).to(torch.uint8)
    return q


def packed_codes(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, bits: int, group: int,
                 scheme: str) -> Packed:
    """The saved form of b-bit codes (out, in) with per-group scales (out, groups) and zero points (asym)."""
    tensors = {"scale": scale.reshape(-1).half(), "codes": torch.from_numpy(pack_bits(codes.numpy(), bits))}
    if zero is not None:
        tensors["zero"] = zero.reshape(-1).to(torch.uint8)
    return Packed("rtn", tuple(codes.shape), tensors, {"bits": bits, "group": group, "scheme": scheme})


def seen_rows(workload, n_rows: int) -> torch.Tensor:
    """Which rows of the word-embedding table the train split uses (a bool mask): the ids of its texts as the
    model reads them (truncated to the baseline's length), plus every special token. Only the train split is
    read, like all calibration; the mask is kept on the workload, since every candidate of a search asks again."""
    cached = getattr(workload, "_seen_rows", None)
    if cached is not None and len(cached) == n_rows:
        return cached
    tok = workload.tokenizer
    ids = tok(workload.train["text"].astype(str).tolist(), truncation=True, max_length=workload.seq_len)["input_ids"]
    seen = np.zeros(n_rows, dtype=bool)
    flat = np.fromiter((i for row in ids for i in row), dtype=np.int64)
    seen[flat[flat < n_rows]] = True
    specials = np.asarray([i for i in tok.all_special_ids if i is not None and 0 <= i < n_rows], dtype=np.int64)
    seen[specials] = True
    workload._seen_rows = torch.from_numpy(seen)
    return workload._seen_rows


def _rows(w: torch.Tensor, bits: int, prefix: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Some rows of a table, decoded, and their saved parts (``bits`` 32: the fp32 values; else one scale a row)."""
    if bits == 32 or not len(w):
        return w.detach().clone(), ({f"{prefix}.values": w.detach().float()} if len(w) else {})
    decoded, packed = rtn(w, bits, w.shape[1], "sym")
    return decoded, {f"{prefix}.{k}": v for k, v in packed.tensors.items()}


def _embeddings(model: torch.nn.Module, spec: QuantSpec, workload) -> tuple[dict[str, Packed], str]:
    """Store the word-embedding table in ``spec.embeddings`` bits, one scale per row; with ``spec.unseen`` the rows
    of tokens the train split never uses go in 2 bits or are dropped (saved as a row mask and two groups)."""
    emb = model.get_input_embeddings()
    name = next(n for n, m in model.named_modules() if m is emb) + ".weight"
    w = emb.weight
    bits = 32 if spec.embeddings == "none" else int(spec.embeddings)
    if spec.unseen == "same":
        decoded, packed = rtn(w, bits, w.shape[1], "sym")
        note = f"word embeddings stored in {bits} bits"
    else:
        seen = seen_rows(workload, w.shape[0])
        unseen_bits = 0 if spec.unseen == "drop" else int(spec.unseen)
        decoded = torch.zeros_like(w)
        tensors = {"seen": torch.from_numpy(np.packbits(seen.numpy(), bitorder="little"))}
        decoded[seen], part = _rows(w[seen], bits, "seen")
        tensors.update(part)
        if unseen_bits:
            decoded[~seen], part = _rows(w[~seen], unseen_bits, "unseen")
            tensors.update(part)
        packed = Packed("rows", tuple(w.shape), tensors, {"seen_bits": bits, "unseen_bits": unseen_bits})
        n = int((~seen).sum())
        how = "dropped (read back as zeros)" if spec.unseen == "drop" else f"stored in {unseen_bits} bits"
        note = (f"word embeddings: the {w.shape[0] - n:,} rows of tokens in the train split (and special tokens) in "
                f"{'fp32' if bits == 32 else f'{bits} bits'}; the {n:,} rows of tokens it never uses {how}")
    with torch.no_grad():
        emb.weight.copy_(decoded)
    return {name: packed}, note


def quantize(model: torch.nn.Module, spec: QuantSpec, workload) -> CompressedModel:
    """Quantize the Linear layers (not the classifier head) as the spec says."""
    kernel = spec.resolved_kernel
    if kernel.startswith("ort"):
        return onnx_int8(model, spec, workload)
    if kernel == "quanto":
        return quanto_w8a8(model, spec, workload)
    if kernel == "nbits":
        from .nbits import nbits

        return nbits(model, spec, workload)
    if kernel == "openvino":
        from .openvino import ov_int8

        return ov_int8(model, spec, workload)
    packed: dict[str, Packed] = {}
    notes = []
    if spec.embeddings != "none" or spec.unseen != "same":
        emb, note = _embeddings(model, spec, workload)
        packed.update(emb)
        notes.append(note)
    layers = family(model).linears(model, "body")
    bits = levels(model, layers, spec, "bits")  # per layer (compression/layerwise.py); 32 stays fp32
    layers = [(n, m) for n, m in layers if bits[n] != 32]
    if kernel == "torch":
        qm = dynamic_int8(model, [n for n, _ in layers])
        cm = CompressedModel("int8-dynamic", "torch", "fbgemm int8 matmul, dynamic activations", module=qm)
        notes.insert(0, f"{len(layers)} Linear layers store int8 weights and run an int8 matmul")
    elif kernel == "rtn":
        hessians = layer_hessians(model, layers, workload) if spec.algorithm == "gptq" else {}
        for name, lin in layers:
            group = spec.group_size or lin.in_features
            if spec.algorithm == "gptq":
                q = gptq(lin.weight, hessians.pop(name), bits[name], group, spec.scheme,
                         act_order=spec.act_order == "on", clip=spec.clip)
                decoded = q["decoded"]
                p = packed_codes(q["codes"], q["scale"], q.get("zero"), bits[name], group, spec.scheme)
            else:
                decoded, p = rtn(lin.weight, bits[name], group, spec.scheme, spec.clip)
            with torch.no_grad():
                lin.weight.copy_(decoded)
            packed[f"{name}.weight"] = p
        qm = model
        cm = CompressedModel("dense", "torch", f"fp32 matmul on decoded {spec.bits}-bit weights (stand-in: "
                                               f"no fast {spec.bits}-bit kernel here)", module=qm,
                             latency_label="simulated")
        grp = f"groups of {spec.group_size}" if spec.group_size else "one scale per output channel"
        how = gptq_words(spec)
        notes.insert(0, f"{len(layers)} Linear layers store {spec.bits}-bit weights ({spec.scheme}, {grp}){how}")
    else:
        raise SpecError(f"quant.kernel={kernel} is not available in this build")
    cm.packed = packed
    cm.notes = notes
    cm.info.update(bits=spec.bits, quantized_layers=len(layers), kernel=kernel, algorithm=spec.algorithm)
    return cm


def gptq_words(spec: QuantSpec) -> str:
    """How the levels were chosen, for a setting's notes: ", rounded by GPTQ on 128 training sentences, ..."."""
    words = ["rounded by GPTQ on 128 training sentences"] if spec.algorithm == "gptq" else []
    if spec.act_order == "on":
        words.append("the inputs that sway the output most first")
    if spec.clip == "mse":
        words.append("each group's range clipped to the least squared rounding error")
    return "".join(", " + w for w in words)


def distinct_per_group(p: Packed) -> int:
    """The most distinct codes in any group (tests check it is at most 2**bits)."""
    n = int(np.prod(p.shape))
    codes = unpack_bits(p.tensors["codes"].numpy(), p.meta["bits"], n).reshape(-1, p.meta["group"])
    return max(len(np.unique(row)) for row in codes)


class _Logits(torch.nn.Module):
    """Export wrapper: the family's int64 inputs in (positionally, in ``names`` order), logits out."""

    def __init__(self, model, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs):
        return self.model(**dict(zip(self.names, inputs))).logits


def export_onnx(model: torch.nn.Module, path: Path, seq_len: int = 64, tokenizer=None) -> Path:
    """fp32 ONNX via torch.onnx.export(dynamo=True), batch and sequence dynamic, weights inside the file.

    The inputs are the family's (``family(model).input_names``): RoBERTa takes no token types, GPT-2 none.
    Example: ``export_onnx(model, Path("fp32.onnx"), tokenizer=tok)``.
    """
    import io

    names = family(model).input_names(model, tokenizer)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.full((2, seq_len), 4 if model.config.pad_token_id == 3 else 3, dtype=torch.long)  # no pad id
    mask = torch.ones_like(x)
    mask[1, seq_len // 2:] = 0  # some padding: with an all-ones mask the tracer drops the mask from the graph
    example = {"input_ids": x, "attention_mask": mask}
    batch, seq = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("seq", min=2, max=512)
    dyn = {k: {0: batch, 1: seq} for k in names}
    tmp = path.with_suffix(".tmp.onnx")
    import warnings

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # the exporter is chatty
        warnings.simplefilter("ignore")
        torch.onnx.export(_Logits(model.float().eval(), names), tuple(example.get(n, torch.zeros_like(x)) for n in names),
                          str(tmp), dynamo=True, input_names=names, output_names=["logits"],
                          dynamic_shapes=(tuple(dyn.values()),), external_data=False, verbose=False)
    tmp.rename(path)
    return path


def onnx_int8(model: torch.nn.Module, spec: QuantSpec, workload) -> CompressedModel:
    """ONNX Runtime dynamic int8: export fp32 once (cached per baseline when the model is untouched),
    then quantize MatMul weights (and the embedding Gather with embeddings=8). The fused-graph and static
    kernels are in :mod:`.ort_graph`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if spec.embeddings == "4":
        raise SpecError(f"quant.kernel={spec.kernel} stores embeddings in 8 bits only; use embeddings=8 or none")
    if spec.kernel != "ort":
        from . import ort_graph

        return (ort_graph.fused_int8 if spec.kernel == "ort-fused" else ort_graph.static_int8)(model, spec, workload)
    cache = getattr(workload, "onnx_cache", None)
    scratch = Path(workload.scratch)
    fp32 = cache if cache is not None and cache.exists() else export_onnx(
        model, cache or scratch / "fp32.onnx", tokenizer=workload.tokenizer)
    out = scratch / "model.int8.onnx"
    ops = ["MatMul", "Gather"] if spec.embeddings == "8" else ["MatMul"]
    seven, why = seven_bit_weights()
    from .smooth import int8_source

    fp32, source_note, source_info = int8_source(fp32, spec, workload)
    with _quiet_ort_quantizer():
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=ops, reduce_range=seven)
    cm = onnx_model(out, "int8 MatMulInteger (ONNX Runtime, dynamic activations)")
    cm.notes.append("exported to ONNX; MatMul weights in int8 on ONNX Runtime's int8 kernel"
                    + ("; word embeddings in 8 bits" if spec.embeddings == "8" else "") + source_note + why)
    cm.info.update(bits=8, kernel="ort", weight_range_bits=7 if seven else 8, **source_info)
    return cm


def seven_bit_weights() -> tuple[bool, str]:
    """Whether ONNX Runtime's and OpenVINO's int8 weights keep to 7 bits on this CPU, and the note that says so.

    Without VNNI their uint8 x int8 kernels can overflow (``config.int8_saturates``): on an AMD EPYC with
    AVX2 only, a tiny RoBERTa's int8 logits were 67% off with 8-bit weights and 3% off with 7-bit ones.
    """
    if not config.int8_saturates():
        return False, ""
    return True, ("; weights kept to 7 bits of their 8: this CPU has no VNNI, and its int8 kernel would "
                  "overflow with the full range")


@contextlib.contextmanager
def _quiet_ort_quantizer():
    """Drop onnxruntime.quantization's warnings (about optional pre-processing) for the length of one call.

    It warns through the root logger (``logging.warning``), which also installs a stderr handler on a
    root logger that has none; both are undone here, so no other logger or later call is affected.
    """
    root = logging.getLogger()
    handlers = list(root.handlers)

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or "onnxruntime" not in Path(record.pathname).parts

    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)
        for h in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(h)


def quanto_w8a8(model: torch.nn.Module, spec: QuantSpec, workload) -> CompressedModel:
    """optimum-quanto W8A8: int8 weights and static int8 activations, scales calibrated on training batches."""
    from optimum.quanto import Calibration, freeze, qint8
    from optimum.quanto import quantize as quanto_quantize

    if spec.embeddings != "none":
        raise SpecError("quant.kernel=quanto quantizes Linear layers only; use embeddings=none")
    names = [n for n, _ in family(model).linears(model, "body")]
    quanto_quantize(model, weights=qint8, activations=qint8, include=names)
    texts = workload.train["text"].sample(n=min(128, len(workload.train)), random_state=workload.seed).tolist()
    with torch.no_grad(), Calibration(momentum=0.9):  # no_grad, not inference_mode: quanto needs it
        for i in range(0, len(texts), 32):
            model(**workload.encode(texts[i:i + 32]))
    freeze(model)
    cm = CompressedModel("quanto", "torch", "optimum-quanto int8 weights x int8 activations (static scales)",
                         module=model)
    cm.notes.append(f"{len(names)} Linear layers store int8 weights; activations scaled to int8 from 128 "
                    "training sentences")
    cm.info.update(bits=8, quantized_layers=len(names), kernel="quanto")
    return cm
