"""Unstructured pruning of the Linear weights inside the blocks, by magnitude, by Wanda's activation-aware
score or by SparseGPT or OBC (which also update the surviving weights), in any pattern or N:M, optionally gradual
with recovery.

The zeros are stored as a bitmask plus the surviving values, so the file shrinks; the dense kernels
that run them are no faster, and the latency column says so.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from ..artifacts import CompressedModel, Packed
from ..families import family
from ..layerwise import grouped_masks, levels, owl_levels
from ..specs import PruneSpec
from ..training import TrainSettings, train
from .allocate import measured_levels
from .hessian import each_input
from .sparsegpt import sparsegpt_prune
from .structured import recovery_loss, recovery_words


CALIBRATION_ROWS = 128  # train-split texts whose activations weigh the weights (Wanda used 128 sequences)
OWL_SPREAD, OWL_OUTLIER = 0.08, 5.0  # OWL's lambda and M (the paper's LLaMA settings; lambda 0.08 on validation here)


def input_norms(model: torch.nn.Module, layers: list[tuple[str, torch.nn.Module]], workload,
                rows: int = CALIBRATION_ROWS) -> dict[str, torch.Tensor]:
    """Per Linear, the L2 norm of each input feature over the calibration tokens (padding left out):
    Wanda's ||X_j||. The texts are the train split's first ``rows`` (never the test split); the pass is the one
    GPTQ's and SparseGPT's Hessians use (hessian.each_input)."""
    sq = {n: torch.zeros(m.in_features) for n, m in layers}

    def record(name: str, x: torch.Tensor) -> None:
        sq[name] += x.float().pow(2).sum(0)

    each_input(model, layers, workload, rows, record)
    return {n: v.sqrt() for n, v in sq.items()}


def _scores(layers, norms: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """What a weight is worth: |W|, or Wanda's |W| * ||X_j|| (each column scaled by its input's norm)."""
    return {n: m.weight.detach().abs() * (norms[n][None, :] if norms is not None else 1.0) for n, m in layers}


def _row_masks(scores: dict[str, torch.Tensor], sparsity: float, pattern: str) -> dict[str, torch.Tensor]:
    """Within each output row, keep the best (1 - sparsity) share, or the N best of every M in a row."""
    out = {}
    for n, sc in scores.items():
        if pattern != "unstructured":
            keep_n, group = (int(x) for x in pattern.split(":"))
            rows, cols = sc.shape
            usable = cols - cols % group  # a ragged tail (cols not a multiple of M) stays dense
            g = sc[:, :usable].reshape(rows, usable // group, group)
            top = g.topk(keep_n, dim=-1).indices
            keep = torch.zeros_like(g, dtype=torch.bool).scatter_(-1, top, True).reshape(rows, usable)
            out[n] = torch.cat([keep, torch.ones(rows, cols - usable, dtype=torch.bool)], dim=1)
            continue
        k = int(round(sparsity * sc.shape[1]))
        keep = torch.ones_like(sc, dtype=torch.bool)
        if k > 0:
            keep.scatter_(1, sc.topk(k, dim=1, largest=False).indices, False)
        out[n] = keep
    return out


def masks_for(layers: list[tuple[str, torch.nn.Module]], sparsity: float, scope: str,
              norms: dict[str, torch.Tensor] | None = None, pattern: str = "unstructured") -> dict[str, torch.Tensor]:
    """Keep-masks that zero the ``sparsity`` share of the lowest-scoring weights. Magnitude scores compare
    globally or per layer; Wanda scores (``norms`` given) and N:M patterns compare within each output row."""
    if sparsity <= 0:
        return {n: torch.ones_like(m.weight, dtype=torch.bool) for n, m in layers}
    if norms is not None or pattern != "unstructured":
        return _row_masks(_scores(layers, norms), sparsity, pattern)
    mags = {n: m.weight.detach().abs() for n, m in layers}  # once: the live knob's release waits on this
    if scope == "global":
        thresh = _kth(torch.cat([a.flatten() for a in mags.values()]), sparsity)
        return {n: a > thresh for n, a in mags.items()}
    return {n: a > _kth(a.flatten(), sparsity) for n, a in mags.items()}


def _kth(scores: torch.Tensor, share: float) -> float:
    """The value below or at which ``share`` of ``scores`` lie (numpy's partition: faster than kthvalue here)."""
    k = int(round(share * scores.numel()))
    if k <= 0:
        return float(scores.min()) - 1
    return float(np.partition(scores.numpy(), k - 1)[k - 1])


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
    owl = spec.allocation == "owl" and spec.sparsity > 0
    if spec.criterion == "wanda" or owl:
        workload.progress(0.02, f"weighing the weights by their inputs on {CALIBRATION_ROWS} train-split texts")
    norms = input_norms(model, layers, workload) if spec.criterion == "wanda" or owl else None
    by_name = owl_levels(model, layers, norms, spec.sparsity, OWL_SPREAD, OWL_OUTLIER) if owl else None
    measured = spec.allocation == "measured" and spec.sparsity > 0
    # the bar's share of measuring the blocks (methods/allocate.py): about SparseGPT + refit's time, a third of
    # OBC's; with recovery, fine-tuning is the job (it starts at 5%)
    start = 0.02 if not measured else 0.03 if spec.recover_steps else 0.1 if spec.criterion == "obc" else 0.35
    if measured:  # each block's level from its measured cost; sparsegpt/obc only
        by_name, by_block = measured_levels(model, layers, workload, spec.sparsity,
                                            progress=lambda f, m: workload.progress(0.02 + (start - 0.02) * f, m))
    masks = functools.partial(masks_for, layers, scope=spec.scope, norms=norms, pattern=spec.pattern)
    if spec.criterion in ("sparsegpt", "obc") and spec.sparsity > 0:  # pruned and updated once; recovery holds the zeros
        span = (0.05 if spec.recover_steps else 0.72) - start  # the bar's share: without recovery, pruning is the job
        sparsegpt_prune(model, layers, workload, spec.sparsity, spec.pattern,
                        progress=lambda f, m: workload.progress(start + span * f, m),
                        sequential=spec.calibration == "sequential", levels=by_name,
                        refit=spec.refit == "on", greedy=spec.criterion == "obc")
        kept = {n: m.weight.detach() != 0 for n, m in layers}

        def masks(_sparsity: float) -> dict[str, torch.Tensor]:  # schedule=poly is refused for sparsegpt
            return kept
    elif spec.per_layer or owl:  # each layer's own sparsity (compression/layerwise.py)
        masks = grouped_masks(functools.partial(masks_for, scope=spec.scope, norms=norms, pattern=spec.pattern),
                              layers, by_name or levels(model, layers, spec, "sparsity"), spec.sparsity)
    if spec.schedule == "poly":
        t1 = max(1, int(0.75 * spec.recover_steps))  # the last quarter fine-tunes at the final sparsity
        every = max(1, spec.recover_steps // 20)
        state = {"masks": masks(spec.initial_sparsity)}
        _apply(layers, state["masks"])

        def after_step(step: int) -> None:
            if step % every == 0 and step <= t1:
                state["masks"] = masks(poly_sparsity(step, spec.initial_sparsity, spec.sparsity, 0, t1))
            _apply(layers, state["masks"])
    else:
        state = {"masks": masks(spec.sparsity)}
        _apply(layers, state["masks"])

        def after_step(step: int) -> None:
            _apply(layers, state["masks"])  # the zeros stay zero while fine-tuning

    if spec.recover_steps:
        train(model, workload.tokenizer, workload.train["text"].tolist(), workload.train["label"].tolist(),
              TrainSettings(steps=spec.recover_steps, lr=spec.recover_lr, seed=workload.seed, max_len=workload.seq_len),
              loss_fn=recovery_loss(spec, workload), after_step=after_step, progress=lambda f, m: workload.progress(0.05 + 0.7 * f, m),
              cancel=workload.cancel)
        state["masks"] = masks(spec.sparsity) if spec.schedule == "poly" else state["masks"]
        _apply(layers, state["masks"])
    model.eval()
    packed: dict[str, Packed] = {}
    zeros = total = 0
    for n, m in layers:
        w = m.weight.detach()
        keep = w != 0
        bits = torch.from_numpy(np.packbits(keep.flatten().numpy(), bitorder="little"))
        packed[f"{n}.weight"] = Packed("sparse", tuple(w.shape), {"mask": bits, "values": w[keep].contiguous()})
        total += w.numel()
        zeros += w.numel() - int(keep.sum())
    cm = CompressedModel("dense", "torch", "fp32 dense matmul (zeros are still multiplied)", module=model,
                         packed=packed)
    teach = recovery_words(spec, workload)
    rec = f", then {spec.recover_steps} fine-tuning steps{teach} with the zeros held" if spec.recover_steps else ""
    unit = "layer" if spec.calibration == "sequential" else "block"
    how = {"magnitude": f"{spec.scope} magnitude threshold", "wanda": "Wanda scores, per output row",
           "sparsegpt": "SparseGPT, the surviving weights updated to make up for the pruned ones, "
                        f"calibrated {unit} by {unit} on train-split text"
                        + (", the kept weights then solved exactly by least squares" if spec.refit == "on" else ""),
           "obc": "OBC, each row's weights removed a few at a time and the rest solved exactly by least squares "
                  f"after each, calibrated {unit} by {unit} on train-split text"}[spec.criterion]
    pat = f", {spec.pattern} pattern" if spec.pattern != "unstructured" else ""
    if owl:
        pat += (f", layers from {min(by_name.values()):.0%} to {max(by_name.values()):.0%} by their share of "
                "outlier weights (OWL)")
    if measured and len(by_block) > 1:
        pat += (", blocks " + ", ".join(f"{lv:.0%}" for _, lv in sorted(by_block.items()))
                + " by their measured cost on train text")
    cm.notes.append(f"{zeros / total:.0%} of the encoder's weights are zero ({how}{pat}{rec})")
    cm.info.update(sparsity=zeros / total, pruned_layers=len(layers), criterion=spec.criterion, pattern=spec.pattern)
    return cm
