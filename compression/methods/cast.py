"""Half precision: bf16 (fast here: the CPU has AMX) or fp16, weights and activations alike."""
from __future__ import annotations

import torch

from ..artifacts import CompressedModel
from ..specs import CastSpec

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cast(model: torch.nn.Module, spec: CastSpec, workload) -> CompressedModel:
    m = model.to(DTYPES[spec.dtype])
    cm = CompressedModel("dense", "torch", f"{spec.dtype} matmul (torch, oneDNN)", module=m)
    cm.notes.append(f"every weight stored and computed in {spec.dtype}")
    cm.info.update(dtype=spec.dtype, bits=16)
    return cm
