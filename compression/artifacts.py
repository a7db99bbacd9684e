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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

MANIFEST = "manifest.json"


@dataclass
class CompressedModel:
    """A compressed classifier: a torch module or an ONNX Runtime session, with how it runs."""

    kind: str  # the saved form: fp32, int8-dynamic, ...
    runtime: str  # what executes it: torch or onnxruntime
    kernel: str  # the kernel that ran its matmuls, e.g. "fbgemm int8 (dynamic activations)"
    module: torch.nn.Module | None = None
    session: Any = None
    latency_label: str = "measured"  # simulated when the kernel is a stand-in for one missing here
    notes: list[str] = field(default_factory=list)  # plain words, one per step
    info: dict = field(default_factory=dict)  # method facts: bits per weight, sparsity, layers kept...

    @classmethod
    def fp32(cls, module: torch.nn.Module) -> "CompressedModel":
        return cls("fp32", "torch", "fp32 matmul (torch)", module=module)

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


# ---------------------------------------------------------------- fp32 (also bf16/fp16 casts later)

def _save_plain(cm: CompressedModel, out: Path) -> list[Path]:
    from safetensors.torch import save_model

    f = out / "model.safetensors"
    save_model(cm.module, str(f))
    return [f]


def _load_plain(path: Path, manifest: dict) -> CompressedModel:
    from safetensors.torch import load_model

    m = _skeleton(path)
    load_model(m, str(path / "model.safetensors"))
    return CompressedModel(manifest["kind"], manifest["runtime"], manifest["kernel"], module=m)


# ---------------------------------------------------------------- torch dynamic int8

def _dynamic_linears(module: torch.nn.Module):
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    return [(n, m) for n, m in module.named_modules() if isinstance(m, QLinear)]


def _save_int8_dynamic(cm: CompressedModel, out: Path) -> list[Path]:
    qnames = [n for n, _ in _dynamic_linears(cm.module)]
    tensors: dict[str, torch.Tensor] = {}
    for k, v in cm.module.state_dict().items():
        if isinstance(v, torch.Tensor) and not any(k.startswith(q + ".") for q in qnames):
            tensors[k] = v.contiguous()
    for n, m in _dynamic_linears(cm.module):
        w, b = m._weight_bias()
        tensors[f"{n}.weight.int8"] = w.int_repr().contiguous()
        tensors[f"{n}.weight.scales"] = w.q_per_channel_scales().float().contiguous()
        tensors[f"{n}.weight.zero_points"] = w.q_per_channel_zero_points().to(torch.int8).contiguous()
        if b is not None:
            tensors[f"{n}.bias"] = b.detach().contiguous()
    f = out / "model.int8.safetensors"
    save_file(_dedupe(tensors), str(f), metadata={"quantized": json.dumps(qnames)})
    return [f]


def _load_int8_dynamic(path: Path, manifest: dict) -> CompressedModel:
    from safetensors import safe_open

    from .methods.quant import dynamic_int8

    f = path / "model.int8.safetensors"
    with safe_open(str(f), "pt") as fh:
        qnames = json.loads(fh.metadata()["quantized"])
    t = load_file(str(f))
    m = _skeleton(path)
    qm = dynamic_int8(m, qnames)
    qm.load_state_dict({k: v for k, v in t.items() if not k.endswith((".int8", ".scales", ".zero_points"))
                        and not any(k == q + ".bias" for q in qnames)}, strict=False)
    for n, lin in _dynamic_linears(qm):
        w = torch._make_per_channel_quantized_tensor(
            t[f"{n}.weight.int8"], t[f"{n}.weight.scales"].double(), t[f"{n}.weight.zero_points"].long(), 0)
        lin.set_weight_bias(w, t.get(f"{n}.bias"))
    return CompressedModel("int8-dynamic", manifest["runtime"], manifest["kernel"], module=qm)


def _dedupe(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage; clone the second and later views of one buffer."""
    seen: set[int] = set()
    out = {}
    for k, v in tensors.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


SAVERS: dict[str, Callable[[CompressedModel, Path], list[Path]]] = {
    "fp32": _save_plain,
    "int8-dynamic": _save_int8_dynamic,
}
LOADERS: dict[str, Callable[[Path, dict], CompressedModel]] = {
    "fp32": _load_plain,
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
            if k.endswith(("scale", "zero_point", "position_ids", "token_type_ids")) and x.numel() <= 1:
                continue
            if k.endswith(("position_ids", "dtype")):
                continue
            if x.is_quantized:
                x = x.int_repr()
            ptr = x.untyped_storage().data_ptr() if x.numel() else id(x)
            if ptr in seen:
                continue
            seen.add(ptr)
            total += x.numel()
            nonzero += int(torch.count_nonzero(x))
    return total, nonzero
