"""Structured pruning of BERT-style encoders: attention heads, FFN neurons, whole layers, physically removed.

Importance comes from training batches (never the test split):
- ``grad``: |d loss / d gate| for a gate of 1s multiplied into each head / neuron (Michel et al. 2019);
  for layers, the first-order Taylor score sum |w * dL/dw| over the layer's weights;
- ``norm``: the L2 norm of the weights that belong to the unit.
"""
from __future__ import annotations

import torch

from ..artifacts import CompressedModel
from ..specs import HeadsSpec, LayersSpec, NeuronsSpec, SpecError
from ..training import TrainSettings, train

IMPORTANCE_BATCHES = 8


def encoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    try:
        return model.base_model.encoder.layer
    except AttributeError:
        raise SpecError("structured pruning needs a BERT-style encoder (model.base_model.encoder.layer)") from None


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


def _recover(model, steps: int, workload) -> None:
    if steps:
        train(model, workload.tokenizer, workload.train["text"].tolist(), workload.train["label"].tolist(),
              TrainSettings(steps=steps, lr=5e-5, seed=workload.seed, max_len=workload.seq_len),
              progress=lambda f, m: workload.progress(0.1 + 0.7 * f, m), cancel=workload.cancel)
    model.eval()


def prune_heads(model: torch.nn.Module, spec: HeadsSpec, workload) -> CompressedModel:
    layers = encoder_layers(model)
    heads = model.config.num_attention_heads
    hd = layers[0].attention.self.query.out_features // heads
    if spec.importance == "grad":
        scores = _gate_importance(model, workload, [l.attention.output.dense for l in layers], heads * hd, hd)
    else:
        scores = torch.stack([
            torch.stack([sum(lin.weight[h * hd:(h + 1) * hd].norm() ** 2 for lin in
                             (l.attention.self.query, l.attention.self.key, l.attention.self.value))
                         + l.attention.output.dense.weight[:, h * hd:(h + 1) * hd].norm() ** 2
                         for h in range(l.attention.self.query.out_features // hd)]).detach()
            for l in layers])
    keep = _lowest(scores, spec.fraction)
    for l, k in zip(layers, keep):
        idx = torch.cat([torch.arange(h * hd, (h + 1) * hd) for h in torch.nonzero(k).flatten().tolist()])
        att = l.attention
        att.self.query, att.self.key, att.self.value = (_keep_rows(x, idx) for x in
                                                        (att.self.query, att.self.key, att.self.value))
        att.output.dense = _keep_cols(att.output.dense, idx)
        att.self.num_attention_heads = int(k.sum())
        att.self.all_head_size = len(idx)
    _recover(model, spec.recover_steps, workload)
    kept = [int(k.sum()) for k in keep]
    cm = CompressedModel.fp32(model)
    cm.notes.append(f"kept {sum(kept)} of {heads * len(layers)} attention heads (per layer: {kept})")
    cm.info.update(heads_kept=kept, heads_total=heads * len(layers))
    return cm


def prune_neurons(model: torch.nn.Module, spec: NeuronsSpec, workload) -> CompressedModel:
    layers = encoder_layers(model)
    inter = layers[0].intermediate.dense.out_features
    if spec.importance == "grad":
        scores = _gate_importance(model, workload, [l.output.dense for l in layers], inter, 1)
    else:
        scores = torch.stack([(l.intermediate.dense.weight.norm(dim=1) * l.output.dense.weight.norm(dim=0)).detach()
                              for l in layers])
    # per layer, the same share: each FFN keeps (1 - fraction) of its neurons
    keep = torch.zeros_like(scores, dtype=torch.bool)
    n_keep = max(1, int(round((1 - spec.fraction) * inter)))
    for i, row in enumerate(scores):
        keep[i, torch.argsort(row, descending=True)[:n_keep]] = True
    for l, k in zip(layers, keep):
        idx = torch.nonzero(k).flatten()
        l.intermediate.dense = _keep_rows(l.intermediate.dense, idx)
        l.output.dense = _keep_cols(l.output.dense, idx)
    _recover(model, spec.recover_steps, workload)
    cm = CompressedModel.fp32(model)
    cm.notes.append(f"each feed-forward block keeps {n_keep} of {inter} neurons")
    cm.info.update(neurons_kept=n_keep, neurons_total=inter)
    return cm


def drop_layers(model: torch.nn.Module, spec: LayersSpec, workload) -> CompressedModel:
    layers = encoder_layers(model)
    n = len(layers)
    n_keep = max(1, n - int(round(spec.fraction * n)))
    if spec.importance == "grad":
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
    model.base_model.encoder.layer = torch.nn.ModuleList([layers[i] for i in kept])
    model.config.num_hidden_layers = len(kept)
    _recover(model, spec.recover_steps, workload)
    cm = CompressedModel.fp32(model)
    cm.notes.append(f"kept {len(kept)} of {n} layers ({', '.join(map(str, kept))})")
    cm.info.update(layers_kept=kept, layers_total=n)
    return cm
