"""Unstructured magnitude (L1) pruning of the Linear weights inside the blocks, optionally gradual with recovery.

The zeros are stored as a bitmask plus the surviving values, so the file shrinks; the dense kernels
that run them are no faster, and the latency column says so.
"""
from __future__ import annotations

import numpy as np
import torch

from ..artifacts import CompressedModel, Packed
from ..families import family
from ..specs import PruneSpec
from ..training import TrainSettings, train


def masks_for(layers: list[tuple[str, torch.nn.Module]], sparsity: float, scope: str) -> dict[str, torch.Tensor]:
    """Keep-masks that zero the ``sparsity`` share of smallest-magnitude weights, globally or per layer."""
    if sparsity <= 0:
        return {n: torch.ones_like(m.weight, dtype=torch.bool) for n, m in layers}
    if scope == "global":
        scores = torch.cat([m.weight.detach().abs().flatten() for _, m in layers])
        k = int(round(sparsity * scores.numel()))
        thresh = torch.kthvalue(scores, k).values if k > 0 else scores.min() - 1
        return {n: m.weight.detach().abs() > thresh for n, m in layers}
    out = {}
    for n, m in layers:
        s = m.weight.detach().abs().flatten()
        k = int(round(sparsity * s.numel()))
        thresh = torch.kthvalue(s, k).values if k > 0 else s.min() - 1
        out[n] = m.weight.detach().abs() > thresh
    return out


def _apply(layers, masks):
    with torch.no_grad():
        for n, m in layers:
            m.weight.mul_(masks[n])


def poly_sparsity(step: int, s_i: float, s_f: float, t0: int, t1: int) -> float:
    """TF-MOT PolynomialDecay: s(t) = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0))**3, clipped to [t0, t1]."""
    t = min(max(step, t0), t1)
    return s_f + (s_i - s_f) * (1 - (t - t0) / max(1, t1 - t0)) ** 3


def prune(model: torch.nn.Module, spec: PruneSpec, workload) -> CompressedModel:
    layers = family(model).linears(model)
    if spec.schedule == "poly":
        t1 = max(1, int(0.75 * spec.recover_steps))  # the last quarter fine-tunes at the final sparsity
        every = max(1, spec.recover_steps // 20)
        state = {"masks": masks_for(layers, spec.initial_sparsity, spec.scope)}
        _apply(layers, state["masks"])

        def after_step(step: int) -> None:
            if step % every == 0 and step <= t1:
                s = poly_sparsity(step, spec.initial_sparsity, spec.sparsity, 0, t1)
                state["masks"] = masks_for(layers, s, spec.scope)
            _apply(layers, state["masks"])
    else:
        state = {"masks": masks_for(layers, spec.sparsity, spec.scope)}
        _apply(layers, state["masks"])

        def after_step(step: int) -> None:
            _apply(layers, state["masks"])  # the zeros stay zero while fine-tuning

    if spec.recover_steps:
        train(model, workload.tokenizer, workload.train["text"].tolist(), workload.train["label"].tolist(),
              TrainSettings(steps=spec.recover_steps, lr=5e-5, seed=workload.seed, max_len=workload.seq_len),
              after_step=after_step, progress=lambda f, m: workload.progress(0.05 + 0.7 * f, m),
              cancel=workload.cancel)
        state["masks"] = masks_for(layers, spec.sparsity, spec.scope) if spec.schedule == "poly" else state["masks"]
        _apply(layers, state["masks"])
    model.eval()
    packed: dict[str, Packed] = {}
    zeros = total = 0
    for n, m in layers:
        w = m.weight.detach()
        keep = w != 0
        bits = torch.from_numpy(np.packbits(keep.flatten().numpy(), bitorder="little"))
        packed[f"{n}.weight"] = Packed("sparse", tuple(w.shape), {"mask": bits, "values": w[keep].contiguous()})
        zeros += int((~keep).sum())
        total += w.numel()
    cm = CompressedModel("dense", "torch", "fp32 dense matmul (zeros are still multiplied)", module=model,
                         packed=packed)
    rec = f", then {spec.recover_steps} fine-tuning steps with the zeros held" if spec.recover_steps else ""
    cm.notes.append(f"{zeros / total:.0%} of the encoder's weights are zero ({spec.scope} threshold{rec})")
    cm.info.update(sparsity=zeros / total, pruned_layers=len(layers))
    return cm
