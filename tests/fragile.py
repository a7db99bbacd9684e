"""A prepared tiny baseline whose layer 1 is fragile on purpose, for the sensitivity and search tests.

Layer 1's attention gets outlier channels: value row j becomes 1e5 x value row k (so its context is 1e5 x
channel k's), and the output projection's column j holds a / 1e5 while column k gives up a, for a of size
~10. Together they cancel (the model answers as before, give or take channel j's own small share), but
magnitude pruning zeroes the tiny column j first and round-to-nearest rounds it to 0 at any bit-width, so
compressing layer 1 alone leaves -a x context_k behind: a large error. Layers 0 and 2 are untouched.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import baseline_args, make_csv, make_tiny_model

FRAGILE = 1  # the layer made fragile
LAYERS = 3


def make_fragile(model_dir: Path, layer: int = FRAGILE, scale: float = 1e5, size: float = 10.0) -> None:
    """Rewrite a saved BERT classifier so that ``layer`` is fragile under pruning and quantization."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    att = model.bert.encoder.layer[layer].attention
    v, o = att.self.value, att.output.dense
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for j, k in zip(range(0, 4), range(4, 8)):
            v.weight[j] = scale * v.weight[k]
            v.bias[j] = scale * v.bias[k]
            a = size * torch.randn(o.weight.shape[0], generator=g)
            o.weight[:, j] = a / scale
            o.weight[:, k] -= a
    model.save_pretrained(model_dir)


@pytest.fixture(scope="session")
def fragile(tmp_path_factory):
    """(workspace, CLI baseline args, fingerprint): a prepared 3-layer tiny BERT with layer 1 fragile, and a
    pristine copy of the workspace folder (``<ws>.pristine``) taken before any analysis ran."""
    from compression import api
    from compression.cli import main

    root = tmp_path_factory.mktemp("fragile")
    model = make_tiny_model(root / "tiny3", layers=LAYERS)
    csv = make_csv(root / "reviews.csv", n=1000)  # 100 validation rows
    ws = root / "ws"
    args = baseline_args(model, csv) + ["--workspace", str(ws)]
    assert main(["prepare", *args]) == 0
    _, store = api.open_workspace(str(ws))
    fp = store.baselines()[0]["fingerprint"]
    make_fragile(Path(store.baseline(fp)["path"]) / "model")
    shutil.copytree(ws, root / "ws.pristine")
    return ws, args, fp
