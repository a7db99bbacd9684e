"""What `compress` returns, and the saved forms: safetensors plus a small JSON manifest, never a pickle.

Each kind of compressed model has one saver and one loader here; the saved files are what the size
column measures and what the dashboard offers as a download.

Example::

    >>> cm = CompressedModel.fp32(model)
    >>> files = cm.save(Path("out"))      # weight files only: their bytes are the model's size
    >>> again = load(Path("out"))
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .families import BY_TYPE
from .packed import Packed
from .runtimes import LowRankLinear, dynamic_int8, onnx_session, openvino_session

MANIFEST = "manifest.json"


@dataclass
class CompressedModel:
    """A compressed classifier: a torch module, or an ONNX Runtime or OpenVINO session, with how it runs."""

    kind: str  # the saved form: dense (fp32/bf16/RTN-packed), int8-dynamic, onnx, ...
    runtime: str  # what executes it: torch, onnxruntime or openvino
    kernel: str  # the kernel that ran its matmuls, e.g. "fbgemm int8 (dynamic activations)"
    module: torch.nn.Module | None = None
    session: Any = None
    latency_label: str = "measured"  # simulated when the kernel is a stand-in for one missing here
    notes: list[str] = field(default_factory=list)  # plain words, one per step
    info: dict = field(default_factory=dict)  # method facts: bits per weight, sparsity, layers kept...
    onnx_path: Path | None = None  # the .onnx (or OpenVINO .xml) file behind ``session``
    # weights the saver writes compactly instead of as plain tensors, by state_dict name (see Packed)
    packed: dict[str, Packed] = field(default_factory=dict)

    @classmethod
    def fp32(cls, module: torch.nn.Module) -> "CompressedModel":
        return cls("dense", "torch", "fp32 matmul (torch)", module=module)

    def predict(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        """Logits for one tokenized batch, as float32 numpy."""
        if self.session is not None:
            feeds = {i.name: batch[i.name].numpy().astype(np.int64) for i in self.session.get_inputs()
                     if i.name in batch}
            return np.asarray(self.session.run(None, feeds)[0], dtype=np.float32)
        with torch.no_grad():
            return self.module(**batch).logits.float().numpy()

    def save(self, out: Path) -> list[Path]:
        """Write the weight files and a manifest; return the weight files (their bytes are the size)."""
        out.mkdir(parents=True, exist_ok=True)
        files = SAVERS[self.kind](self, out)
        manifest = {"kind": self.kind, "runtime": self.runtime, "kernel": self.kernel,
                    "latency_label": self.latency_label, "notes": self.notes, "info": self.info,
                    "weight_files": [f.name for f in files]}
        (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if self.module is not None and hasattr(self.module, "config"):
            self.module.config.save_pretrained(out)
        return files


def load(path: Path) -> CompressedModel:
    """Rebuild a saved compressed model from its folder (safetensors + manifest + config.json)."""
    manifest = json.loads((path / MANIFEST).read_text())
    cm = LOADERS[manifest["kind"]](path, manifest)
    cm.notes, cm.info = manifest.get("notes", []), manifest.get("info", {})
    cm.latency_label = manifest.get("latency_label", "measured")
    return cm


def _skeleton(path: Path) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(path)
    return AutoModelForSequenceClassification.from_config(config).eval()


def _write(cm: CompressedModel, out: Path, plain: dict[str, torch.Tensor], name: str,
           extra_meta: dict | None = None) -> list[Path]:
    """Plain tensors (minus packed ones) plus every packed tensor, into one safetensors file."""
    tensors = {k: v.contiguous() for k, v in plain.items() if k not in cm.packed}
    meta = {}
    for k, p in cm.packed.items():
        for part, t in p.tensors.items():
            tensors[f"{k}.{p.fmt}.{part}"] = t.contiguous()
        meta[k] = {"fmt": p.fmt, "shape": list(p.shape), **p.meta}
    f = out / name
    md = {"packed": json.dumps(meta), "structure": json.dumps(structure(cm.module)), **(extra_meta or {})}
    save_file(_dedupe(tensors), str(f), metadata=md)
    return [f]


def structure(module: torch.nn.Module) -> dict[str, list]:
    """The shapes of every Linear, norm, embedding and factorized layer, so a loader can rebuild a model whose
    layers were shrunk, split or removed by a method (the config alone describes the original)."""
    out: dict[str, list] = {}
    for n, m in module.named_modules():
        if isinstance(m, LowRankLinear):
            out[n] = ["lowrank", m.in_features, m.rank, m.out_features, m.second.bias is not None]
        elif isinstance(m, torch.nn.Linear):  # optimum-quanto's QLinear too
            out[n] = ["linear", m.in_features, m.out_features, m.bias is not None]
        elif isinstance(m, torch.nn.LayerNorm):  # ModernBERT's first block has none: a kept later block brings one
            out[n] = ["layernorm", list(m.normalized_shape), m.eps, m.bias is not None]
        elif isinstance(m, torch.nn.Embedding):  # MPNet's per-head position bias loses columns with its heads
            out[n] = ["embedding", m.num_embeddings, m.embedding_dim]
        elif type(m).__name__ == "Linear" and hasattr(m, "_weight_bias"):  # torch's dynamic int8 Linear
            out[n] = ["linear", m.in_features, m.out_features, m._weight_bias()[1] is not None]
    return out


def restore_structure(module: torch.nn.Module, shapes: dict[str, list]) -> torch.nn.Module:
    """Replace the skeleton's layers whose recorded shape differs (the inverse of :func:`structure`)."""
    for n, spec in shapes.items():
        parent, _, attr = n.rpartition(".")
        owner = module.get_submodule(parent) if parent else module
        cur = getattr(owner, attr, None)
        if spec[0] == "lowrank" and not isinstance(cur, LowRankLinear):
            setattr(owner, attr, LowRankLinear(spec[1], spec[2], spec[3], bias=spec[4]))
        elif spec[0] == "linear" and (not isinstance(cur, torch.nn.Linear)
                                      or (cur.in_features, cur.out_features) != (spec[1], spec[2])):
            setattr(owner, attr, torch.nn.Linear(spec[1], spec[2], bias=spec[3]))
        elif spec[0] == "layernorm" and not isinstance(cur, torch.nn.LayerNorm):
            setattr(owner, attr, torch.nn.LayerNorm(spec[1], eps=spec[2], bias=spec[3]))
        elif spec[0] == "embedding" and tuple(cur.weight.shape) != (spec[1], spec[2]):
            setattr(owner, attr, torch.nn.Embedding(spec[1], spec[2]))
    if getattr(getattr(module, "config", None), "model_type", None) in BY_TYPE:
        BY_TYPE[module.config.model_type].sync(module)  # heads per block follow the restored shapes
    return module


def _read(f: Path) -> tuple[dict[str, torch.Tensor], dict[str, Packed], dict]:
    from safetensors import safe_open

    with safe_open(str(f), "pt") as fh:
        md = fh.metadata() or {}
    t = load_file(str(f))
    pmeta = json.loads(md.get("packed", "{}"))
    packed = {}
    for k, m in pmeta.items():
        pre = f"{k}.{m['fmt']}."
        parts = {n[len(pre):]: t.pop(n) for n in list(t) if n.startswith(pre)}
        packed[k] = Packed(m["fmt"], tuple(m["shape"]), parts, {a: b for a, b in m.items() if a not in ("fmt", "shape")})
    return t, packed, md


def _set_tensor(module: torch.nn.Module, name: str, value: torch.Tensor) -> None:
    mod_name, _, attr = name.rpartition(".")
    mod = module.get_submodule(mod_name) if mod_name else module
    with torch.no_grad():
        getattr(mod, attr).copy_(value.to(getattr(mod, attr).dtype))


# ---------------------------------------------------------------- dense torch modules (fp32, bf16, RTN)

def _save_dense(cm: CompressedModel, out: Path) -> list[Path]:
    return _write(cm, out, cm.module.state_dict(), "model.safetensors",
                  {"dtype": str(next(cm.module.parameters()).dtype)})


def _load_dense(path: Path, manifest: dict) -> CompressedModel:
    f = path / "model.safetensors"
    plain, packed, md = _read(f)
    m = restore_structure(_skeleton(path), json.loads(md.get("structure", "{}")))
    dtype = getattr(torch, md.get("dtype", "torch.float32").replace("torch.", ""))
    m = m.to(dtype)
    m.load_state_dict(plain, strict=False)
    for k, p in packed.items():
        _set_tensor(m, k, p.decode())
    return CompressedModel(manifest["kind"], manifest["runtime"], manifest["kernel"], module=m, packed=packed)


# ---------------------------------------------------------------- torch dynamic int8

def _dynamic_linears(module: torch.nn.Module):
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    return [(n, m) for n, m in module.named_modules() if isinstance(m, QLinear)]


def _save_int8_dynamic(cm: CompressedModel, out: Path) -> list[Path]:
    qnames = [n for n, _ in _dynamic_linears(cm.module)]
    plain = {k: v for k, v in cm.module.state_dict().items()
             if isinstance(v, torch.Tensor) and not any(k.startswith(q + ".") for q in qnames)}
    for n, m in _dynamic_linears(cm.module):
        w, b = m._weight_bias()
        plain[f"{n}.weight.int8"] = w.int_repr()
        plain[f"{n}.weight.scales"] = w.q_per_channel_scales().float()
        plain[f"{n}.weight.zero_points"] = w.q_per_channel_zero_points().to(torch.int8)
        if b is not None:
            plain[f"{n}.bias"] = b.detach()
    return _write(cm, out, plain, "model.int8.safetensors", {"quantized": json.dumps(qnames)})


def _load_int8_dynamic(path: Path, manifest: dict) -> CompressedModel:
    t, packed, md = _read(path / "model.int8.safetensors")
    qnames = json.loads(md["quantized"])
    m = restore_structure(_skeleton(path), json.loads(md.get("structure", "{}")))
    for k, p in packed.items():
        _set_tensor(m, k, p.decode())
    qm = dynamic_int8(m, qnames)
    sd = qm.state_dict()  # keeps the quantized layers' own entries; the plain tensors overwrite the rest
    sd.update({k: v for k, v in t.items() if not k.endswith((".int8", ".scales", ".zero_points"))
               and not any(k == q + ".bias" for q in qnames)})
    qm.load_state_dict(sd)
    for n, lin in _dynamic_linears(qm):
        w = torch._make_per_channel_quantized_tensor(
            t[f"{n}.weight.int8"], t[f"{n}.weight.scales"].double(), t[f"{n}.weight.zero_points"].long(), 0)
        lin.set_weight_bias(w, t.get(f"{n}.bias"))
    return CompressedModel("int8-dynamic", manifest["runtime"], manifest["kernel"], module=qm, packed=packed)


def _dedupe(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage; clone the second and later views of one buffer."""
    seen: set[int] = set()
    out = {}
    for k, v in tensors.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


# ---------------------------------------------------------------- optimum-quanto

def _unquantized_outputs(model: torch.nn.Module) -> list[str]:
    """Quanto modules whose output quantization calibration switched off (``streamline``: the output only feeds
    float functions such as softmax or an add). quantization_map() does not record it, and a reload would
    quantize those outputs again: other numbers (GPT-2, Qwen2, ModernBERT)."""
    from optimum.quanto.nn import QModuleMixin

    return [n for n, m in model.named_modules() if isinstance(m, QModuleMixin) and "output" in m._quantize_hooks
            and m._quantize_hooks["output"].id not in m._forward_hooks]


def _save_quanto(cm: CompressedModel, out: Path) -> list[Path]:
    from optimum.quanto import quantization_map

    return _write(cm, out, cm.module.state_dict(), "model.quanto.safetensors",
                  {"quantization_map": json.dumps(quantization_map(cm.module)),
                   "unquantized_outputs": json.dumps(_unquantized_outputs(cm.module))})


def _load_quanto(path: Path, manifest: dict) -> CompressedModel:
    from optimum.quanto import requantize

    t, packed, md = _read(path / "model.quanto.safetensors")
    m = restore_structure(_skeleton(path), json.loads(md.get("structure", "{}")))
    for k, p in packed.items():
        _set_tensor(m, k, p.decode())
    requantize(m, t, json.loads(md["quantization_map"]))
    for n in json.loads(md.get("unquantized_outputs", "[]")):
        m.get_submodule(n).disable_output_quantization()
    return CompressedModel("quanto", manifest["runtime"], manifest["kernel"], module=m.eval(), packed=packed)


# ---------------------------------------------------------------- ONNX Runtime

def _save_onnx(cm: CompressedModel, out: Path) -> list[Path]:
    f = out / "model.onnx"
    shutil.copyfile(cm.onnx_path, f)
    return [f]


def _load_onnx(path: Path, manifest: dict) -> CompressedModel:
    return onnx_model(path / "model.onnx", manifest["kernel"])


def onnx_model(path: Path, kernel: str) -> CompressedModel:
    """An ONNX Runtime session (see :func:`runtimes.onnx_session`) with its parameter counts."""
    import onnx
    from onnx import numpy_helper

    params = nonzero = 0
    for init in onnx.load(str(path), load_external_data=True).graph.initializer:
        a = numpy_helper.to_array(init)
        if a.size > 1 and a.dtype != np.int64:
            params += a.size
            nonzero += int(np.count_nonzero(a))
    cm = CompressedModel("onnx", "onnxruntime", kernel, session=onnx_session(path))
    cm.info.update(params=params, nonzero_params=nonzero)
    cm.onnx_path = path
    return cm


# ---------------------------------------------------------------- OpenVINO

def _save_openvino(cm: CompressedModel, out: Path) -> list[Path]:
    files = []
    for suffix in (".xml", ".bin"):  # the graph and its weights: a deployment loads both
        f = out / f"model{suffix}"
        shutil.copyfile(cm.onnx_path.with_suffix(suffix), f)
        files.append(f)
    return files


def _load_openvino(path: Path, manifest: dict) -> CompressedModel:
    return openvino_model(path / "model.xml", manifest["kernel"])


def openvino_model(path: Path, kernel: str) -> CompressedModel:
    """An OpenVINO compiled model (see :func:`runtimes.openvino_session`) with its parameter counts: the
    weight constants, int8 ones included (scales, zero points and shapes are not parameters)."""
    import openvino as ov

    params = nonzero = 0
    for op in ov.Core().read_model(str(path)).get_ops():
        if op.get_type_name() != "Constant" or op.get_output_element_type(0) == ov.Type.i64:
            continue
        shape = op.get_output_shape(0)
        if len(shape) == 2 and min(shape) > 1:  # weight matrices and tables, not per-channel scales
            a = op.get_data()
            params += a.size
            nonzero += int(np.count_nonzero(a))
    cm = CompressedModel("openvino", "openvino", kernel, session=openvino_session(path))
    cm.info.update(params=params, nonzero_params=nonzero)
    cm.onnx_path = path  # the .xml; its .bin lies beside it
    return cm


SAVERS: dict[str, Callable[[CompressedModel, Path], list[Path]]] = {
    "openvino": _save_openvino,
    "onnx": _save_onnx,
    "quanto": _save_quanto,
    "dense": _save_dense,
    "int8-dynamic": _save_int8_dynamic,
}
LOADERS: dict[str, Callable[[Path, dict], CompressedModel]] = {
    "openvino": _load_openvino,
    "onnx": _load_onnx,
    "quanto": _load_quanto,
    "dense": _load_dense,
    "int8-dynamic": _load_int8_dynamic,
}


def weight_bytes(files: list[Path]) -> int:
    return sum(f.stat().st_size for f in files)


def count_params(module: torch.nn.Module) -> tuple[int, int]:
    """(parameters, nonzero parameters), counted through the state_dict so quantized modules count."""
    total = nonzero = 0
    seen: set[int] = set()
    for k, v in module.state_dict().items():
        if isinstance(v, tuple):  # packed params of a quantized Linear: (weight, bias)
            vs = [x for x in v if isinstance(x, torch.Tensor)]
        elif isinstance(v, torch.Tensor):
            vs = [v]
        else:
            continue
        for x in vs:
            if k.endswith(("._scale", "._shift", "input_scale", "output_scale")):
                continue  # quantization metadata (quanto's per-channel scales), not weights
            if k.endswith(("scale", "zero_point", "position_ids", "token_type_ids")) and x.numel() <= 1:
                continue
            if k.endswith(("position_ids", "dtype")):
                continue
            ptr = x.data_ptr() if x.numel() else id(x)  # a tied weight is counted once
            if ptr in seen:
                continue
            seen.add(ptr)
            if x.is_quantized:  # (its int copy is temporary: its address says nothing about sharing)
                x = x.int_repr()
            total += x.numel()
            nonzero += int(torch.count_nonzero(x))
    return total, nonzero
