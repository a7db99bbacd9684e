"""Layer-wise Hessians of the reconstruction loss, H = 2·XᵀX / n, from calibration text of the train split.

GPTQ and SparseGPT both weigh a layer's weight errors by how its inputs co-vary: the error of the layer's
output on inputs X is (W' - W) H (W' - W)ᵀ / 2, summed over the rows.
"""
from __future__ import annotations

from typing import Callable

import torch

CALIBRATION_TEXTS = 128  # train-split texts, as GPTQ's and Wanda's papers used 128 calibration sequences


def layer_hessians(model: torch.nn.Module, layers: list[tuple[str, torch.nn.Linear]], workload,
                   n_texts: int = CALIBRATION_TEXTS, stop_early: bool = False) -> dict[str, torch.Tensor]:
    """Per Linear, its (in, in) Hessian 2·XᵀX / n over the calibration tokens (padding left out).

    The texts are the train split's first ``n_texts`` (never validation or test), read in the model's
    eval mode from one pass of the unchanged model. ``layers`` are ``(name, nn.Linear)`` pairs, as the
    family adapter's ``linears`` gives them.
    ``stop_early`` as in :func:`each_input`.
    Example: ``layer_hessians(model, family(model).linears(model, "body"), workload)["...query"].shape``.
    """
    hess = {n: torch.zeros(m.in_features, m.in_features, dtype=torch.float64) for n, m in layers}
    count = dict.fromkeys(hess, 0)

    def record(name: str, rows: torch.Tensor) -> None:
        rows = rows.double()
        hess[name] += rows.T @ rows
        count[name] += rows.shape[0]

    each_input(model, layers, workload, n_texts, record, stop_early)
    return {n: (2 * h / max(count[n], 1)).float() for n, h in hess.items()}


def forward_stages(model: torch.nn.Module, layers: list[tuple[str, torch.nn.Module]], workload) -> list[list]:
    """``layers`` (one block's Linears) in the order the forward pass calls them, those that read the very
    same input tensor grouped into one stage: for BERT [q, k, v], [attention out], [FFN in], [FFN out].
    Layers the pass never calls come last, one stage."""
    stages: list[tuple[list, object]] = []
    seen: set[str] = set()

    def hook(name):
        def grab(_module, args):
            if name in seen:
                return
            seen.add(name)
            if stages and stages[-1][1] is args[0]:
                stages[-1][0].append(name)
            else:
                stages.append(([name], args[0]))
        return grab

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in layers]
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(**workload.encode(workload.train["text"].tolist()[:2]))
    finally:
        for h in handles:
            h.remove()
        model.train(training)
    by_name = dict(layers)
    out = [[(n, by_name[n]) for n in names] for names, _ in stages]
    rest = [(n, m) for n, m in layers if n not in seen]
    return out + ([rest] if rest else [])


class _Enough(Exception):
    """Raised inside a calibration pass once every layer asked for has seen its input."""


def each_input(model: torch.nn.Module, layers: list[tuple[str, torch.nn.Module]], workload, n_texts: int,
               record: Callable[[str, torch.Tensor], None], stop_early: bool = False) -> None:
    """Run the train split's first ``n_texts`` through ``model`` (eval mode, batches of 16) and hand each
    layer's input rows, one per non-padding token, to ``record(name, rows)``: the one calibration pass that
    Hessians (GPTQ, SparseGPT) and input norms (Wanda) both read. ``stop_early`` ends each batch's pass once
    every layer has had its input (only for layers called once per pass: not ALBERT's shared ones)."""
    texts = workload.train["text"].tolist()[:n_texts]
    mask: dict[str, torch.Tensor] = {}
    fired: set[str] = set()

    def hook(name):
        def grab(_module, args):
            x = args[0].detach()
            tokens = mask["tokens"]
            # padding is left out where the input is per token (DeBERTa's position projections are not)
            record(name, x[tokens.bool()] if x.shape[:-1] == tokens.shape else x.reshape(-1, x.shape[-1]))
            fired.add(name)
            if stop_early and len(fired) == len(layers):
                raise _Enough  # the rest of the forward pass feeds no layer asked for
        return grab

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in layers]
    training = model.training
    model.eval()  # dropout off: the activations a deployed model sees
    try:
        with torch.no_grad():
            for i in range(0, len(texts), 16):
                workload.cancel.check()  # a prefetched setting yields to a release between batches (engine.Yielding)
                batch = workload.encode(texts[i:i + 16])
                mask["tokens"] = batch["attention_mask"]
                fired.clear()
                try:
                    model(**batch)
                except _Enough:
                    pass
    finally:
        for h in handles:
            h.remove()
        model.train(training)
