"""Layer-wise Hessians of the reconstruction loss ||XW' - XW||^2: one in_features x in_features matrix per
Linear, from calibration text of the train split (never the test split). SparseGPT and GPTQ both start here.
"""
from __future__ import annotations

import torch

CALIBRATION_TEXTS = 128  # the SparseGPT and GPTQ papers calibrate on 128 sequences


def layer_hessians(model: torch.nn.Module, layers: list[tuple[str, torch.nn.Linear]], workload,
                   n_texts: int = CALIBRATION_TEXTS) -> dict[str, torch.Tensor]:
    """Per Linear in ``layers``, H = mean over calibration tokens of x x^T (float32, in_features square).

    The tokens are those of the train split's first ``n_texts`` texts, run through ``model`` as it is now
    (so a caller that prunes block by block sees the earlier blocks already pruned). Padding is left out
    where a layer's input is per token. The paper's factor 2 (H = 2 X^T X) is left out: it cancels in the
    OBS updates and in a dampening taken relative to the mean diagonal.

    Example::

        >>> H = layer_hessians(model, family(model).linears(model)[:2], workload)
        >>> H[name].shape == (lin.in_features, lin.in_features)
    """
    texts = workload.train["text"].tolist()[:n_texts]
    acc = {n: torch.zeros(m.in_features, m.in_features) for n, m in layers}
    count = {n: 0 for n, _ in layers}
    tokens: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(_module, args):
            x = args[0].detach().float()
            mask = tokens["mask"]
            # per-token inputs lose their padding rows; DeBERTa's position projections are not per token
            x = x[mask.bool()] if x.shape[:-1] == mask.shape else x.reshape(-1, x.shape[-1])
            acc[name].addmm_(x.T, x)
            count[name] += x.shape[0]
        return record

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in layers]
    training = model.training
    model.eval()  # dropout off: the activations a deployed model sees
    try:
        with torch.no_grad():
            for i in range(0, len(texts), 16):
                batch = workload.encode(texts[i:i + 16])
                tokens["mask"] = batch["attention_mask"]
                model(**batch)
    finally:
        for h in handles:
            h.remove()
        model.train(training)
    return {n: acc[n] / max(1, count[n]) for n in acc}
