"""Structured pruning: attention heads, FFN neurons, whole layers, physically removed, in every family.

Where the parts are comes from the family's adapter (families.py). A head is pruned with its key/value
head: with grouped key/value heads (Llama-style) the unit is one key/value head and its query heads.

Importance comes from training batches (never the test split):
- ``grad``: |d loss / d gate| for a gate of 1s multiplied into each head / neuron (Michel et al. 2019);
  for layers, the first-order Taylor score sum |w * dL/dw| over the layer's weights;
- ``norm``: the L2 norm of the weights that belong to the unit.
"""
from __future__ import annotations

import torch

from ..artifacts import CompressedModel
from ..families import family
from ..specs import HeadsSpec, LayersSpec, NeuronsSpec
from ..training import TrainSettings, cross_entropy, train
from .distill import teacher_loss

IMPORTANCE_BATCHES = 8


def _batches(workload, n: int = IMPORTANCE_BATCHES, size: int = 32):
    df = workload.train.sample(n=min(len(workload.train), n * size), random_state=workload.seed)
    for i in range(0, len(df), size):
        part = df.iloc[i:i + size]
        yield workload.encode(part["text"].tolist()), torch.tensor(part["label"].to_numpy(), dtype=torch.long)


def _gate_importance(model, workload, modules: list[torch.nn.Module], width: int, group: int) -> torch.Tensor:
    """|dL/dg| for gates multiplied into each module's input, one gate per ``group`` input features."""
    gates = [torch.ones(width // group, requires_grad=True) for _ in modules]
    handles = [m.register_forward_pre_hook(lambda mod, inp, g=g: (inp[0] * g.repeat_interleave(group),))
               for m, g in zip(modules, gates)]
    score = torch.zeros(len(modules), width // group)
    model.eval()  # no dropout: the scores should not be noise
    try:
        for batch, labels in _batches(workload):
            loss = torch.nn.functional.cross_entropy(model(**batch).logits, labels)
            grads = torch.autograd.grad(loss, gates)
            score += torch.stack([g.abs() for g in grads])
    finally:
        for h in handles:
            h.remove()
    model.zero_grad(set_to_none=True)
    return score


def _keep_rows(lin: torch.nn.Linear, idx: torch.Tensor) -> torch.nn.Linear:
    new = torch.nn.Linear(lin.in_features, len(idx), bias=lin.bias is not None)
    with torch.no_grad():
        new.weight.copy_(lin.weight[idx])
        if lin.bias is not None:
            new.bias.copy_(lin.bias[idx])
    return new


def _keep_cols(lin: torch.nn.Linear, idx: torch.Tensor) -> torch.nn.Linear:
    new = torch.nn.Linear(len(idx), lin.out_features, bias=lin.bias is not None)
    with torch.no_grad():
        new.weight.copy_(lin.weight[:, idx])
        if lin.bias is not None:
            new.bias.copy_(lin.bias)
    return new


def _lowest(scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """Global keep-mask: drop the ``fraction`` lowest scores overall, but every row keeps its best unit."""
    flat = scores.flatten()
    n_drop = int(round(fraction * flat.numel()))
    keep = torch.ones_like(flat, dtype=torch.bool)
    if n_drop:
        keep[torch.argsort(flat)[:n_drop]] = False
    keep = keep.view_as(scores)
    best = scores.argmax(dim=1)
    keep[torch.arange(len(scores)), best] = True
    return keep


def _recover(model, spec, workload, cm: CompressedModel, layer_map: list[int] | None = None) -> None:
    """Fine-tune after removal (when asked), and say so in ``cm``'s notes."""
    if spec.recover_steps:
        train(model, workload.tokenizer, workload.train["text"].tolist(), workload.train["label"].tolist(),
              TrainSettings(steps=spec.recover_steps, lr=spec.recover_lr, seed=workload.seed, max_len=workload.seq_len),
              loss_fn=recovery_loss(spec, workload, layer_map),
              progress=lambda f, m: workload.progress(0.1 + 0.7 * f, m), cancel=workload.cancel)
        cm.notes.append(f"then {spec.recover_steps} fine-tuning steps{recovery_words(spec, workload)}")
    model.eval()


def recovery_loss(spec, workload, layer_map: list[int] | None = None):
    """Cross-entropy on the labels, or (recover_alpha below 1 or recover_hidden above 0, a teacher at hand)
    distillation-aware; ``layer_map`` names the teacher layer each kept layer was (for hidden states)."""
    if (spec.recover_alpha >= 1 and not spec.recover_hidden) or workload.teacher is None:
        return cross_entropy
    return teacher_loss(workload.teacher, spec.recover_alpha, spec.recover_temperature,
                        hidden=spec.recover_hidden, layer_map=layer_map)


def recovery_words(spec, workload) -> str:
    """What the recovery learned from besides the labels, for a run's notes: " against the original's
    answers and hidden states", or "" (labels only)."""
    if workload.teacher is None:
        return ""
    what = (["answers"] if spec.recover_alpha < 1 else []) + (["hidden states"] if spec.recover_hidden else [])
    return f" against the original's {' and '.join(what)}" if what else ""


def _head_rows(fam, model) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
    """Per head unit: its rows in q (and the output's columns), its rows in k and v; and the unit count."""
    hd, heads, kv = fam.head_dim(model), fam.heads(model), fam.kv_heads(model)
    g = heads // kv
    q_rows = [torch.arange(u * g * hd, (u + 1) * g * hd) for u in range(kv)]
    kv_rows = [torch.arange(u * hd, (u + 1) * hd) for u in range(kv)]
    return q_rows, kv_rows, kv


def prune_heads(model: torch.nn.Module, spec: HeadsSpec, workload) -> CompressedModel:
    fam = family(model)
    fam.linears(model)  # Conv1D -> Linear
    layers = fam.blocks(model)
    q_rows, kv_rows, units = _head_rows(fam, model)
    heads = fam.heads(model)
    group = len(q_rows[0])
    if spec.importance == "grad":
        scores = _gate_importance(model, workload, [fam.part(l, fam.o) for l in layers], group * units, group)
    else:
        def unit_norm(l, u):
            idx = fam.head_rows(l, model, q_rows[u], kv_rows[u])
            return (sum(fam.part(l, p).weight[i].norm() ** 2 for p, i in idx.items())
                    + fam.part(l, fam.o).weight[:, q_rows[u]].norm() ** 2)
        scores = torch.stack([torch.stack([unit_norm(l, u) for u in range(units)]).detach() for l in layers])
    if fam.head_bias:  # one position bias per head, shared by all blocks: every block keeps the same heads
        keep = _lowest(scores.sum(0, keepdim=True), spec.fraction).expand(len(layers), -1)
    else:
        keep = _lowest(scores, spec.fraction)
    for l, k in zip(layers, keep):
        units_kept = torch.nonzero(k).flatten().tolist()
        q_idx = torch.cat([q_rows[u] for u in units_kept])
        kv_idx = torch.cat([kv_rows[u] for u in units_kept])
        for path, idx in fam.head_rows(l, model, q_idx, kv_idx).items():
            fam.set_part(l, path, _keep_rows(fam.part(l, path), idx))
        fam.set_part(l, fam.o, _keep_cols(fam.part(l, fam.o), q_idx))
    if fam.head_bias:
        bias = model.get_submodule(fam.head_bias)
        g = heads // units
        cols = torch.cat([torch.arange(u * g, (u + 1) * g) for u in torch.nonzero(keep[0]).flatten().tolist()])
        new = torch.nn.Embedding(bias.num_embeddings, len(cols))
        with torch.no_grad():
            new.weight.copy_(bias.weight[:, cols])
        fam.set_part(model, fam.head_bias, new)
    fam.sync(model)
    g = heads // units
    kept = [int(k.sum()) * g for k in keep]
    cm = CompressedModel.fp32(model)
    shared = " (one layer shared across depth)" if fam.shared else ""
    cm.notes.append(f"kept {sum(kept)} of {heads * len(layers)} attention heads (per layer: {kept}){shared}")
    _recover(model, spec, workload, cm)
    cm.info.update(heads_kept=kept, heads_total=heads * len(layers))
    return cm


def prune_neurons(model: torch.nn.Module, spec: NeuronsSpec, workload) -> CompressedModel:
    fam = family(model)
    fam.linears(model)
    layers = fam.blocks(model)
    inter = fam.part(layers[0], fam.ffn_out).in_features

    def ins(l):
        return [fam.part(l, p) for p in fam.ffn_in]

    if spec.importance == "grad":
        scores = _gate_importance(model, workload, [fam.part(l, fam.ffn_out) for l in layers], inter, 1)
    else:
        def in_norm(l):
            n = sum(m.weight.norm(dim=1) for m in ins(l))
            return n.view(2, inter).sum(0) if fam.fused_glu else n
        scores = torch.stack([(in_norm(l) * fam.part(l, fam.ffn_out).weight.norm(dim=0)).detach() for l in layers])
    # per layer, the same share: each FFN keeps (1 - fraction) of its neurons
    keep = torch.zeros_like(scores, dtype=torch.bool)
    n_keep = max(1, int(round((1 - spec.fraction) * inter)))
    for i, row in enumerate(scores):
        keep[i, torch.argsort(row, descending=True)[:n_keep]] = True
    for l, k in zip(layers, keep):
        idx = torch.nonzero(k).flatten()
        rows = torch.cat([idx, idx + inter]) if fam.fused_glu else idx  # fused: [input | gate]
        for p in fam.ffn_in:
            fam.set_part(l, p, _keep_rows(fam.part(l, p), rows))
        fam.set_part(l, fam.ffn_out, _keep_cols(fam.part(l, fam.ffn_out), idx))
    cm = CompressedModel.fp32(model)
    cm.notes.append(f"each feed-forward block keeps {n_keep} of {inter} neurons")
    _recover(model, spec, workload, cm)
    cm.info.update(neurons_kept=n_keep, neurons_total=inter)
    return cm


def drop_layers(model: torch.nn.Module, spec: LayersSpec, workload) -> CompressedModel:
    fam = family(model)
    layers = fam.blocks(model)
    n = fam.num_layers(model)
    n_keep = max(1, n - int(round(spec.fraction * n)))
    if fam.shared:  # every application runs the same weights: only how many of them run can change
        score = torch.arange(n, 0, -1, dtype=torch.float)
    elif spec.importance == "grad":
        model.eval()
        score = torch.zeros(n)
        for batch, labels in _batches(workload, n=4):
            model.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(**batch).logits, labels).backward()
            for i, l in enumerate(layers):
                score[i] += sum(float((p.detach() * p.grad).abs().sum()) for p in l.parameters() if p.grad is not None)
        model.zero_grad(set_to_none=True)
    else:
        score = torch.tensor([sum(float(p.detach().norm() ** 2) for p in l.parameters()) for l in layers])
    kept = sorted(torch.argsort(score, descending=True)[:n_keep].tolist())
    fam.set_blocks(model, kept)
    cm = CompressedModel.fp32(model)
    how = " (the first ones: the layer's weights are shared across depth)" if fam.shared else ""
    cm.notes.append(f"kept {len(kept)} of {n} layers ({', '.join(map(str, kept))}){how}")
    _recover(model, spec, workload, cm, layer_map=kept)  # kept layer j was the original's layer kept[j]
    cm.info.update(layers_kept=kept, layers_total=n)
    return cm
