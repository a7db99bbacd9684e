"""Per-layer sensitivity: compress one unit (an encoder layer) at a time and score it on the validation split.

A unit is one of the family adapter's layers, all its Linear layers together, at one level of the method:
pruning at a sparsity, or round-to-nearest quantization at a bit-width. Every score lands in the store as
it finishes (``val_evals``), so a stopped run continues where it stopped; the run itself is a job in the
jobs table, so it is cancelled and shows progress like a sweep. Only the train (calibration) and
validation splits are loaded: the test split is never read here.

Example::

    >>> bench = ValBench(store, fp)
    >>> bench.evaluate(unit_recipe("prune", unit=3, level=0.7, n_layers=6))["accuracy"]
    0.79
    >>> table(store, fp, "prune", [0.3, 0.5], n_layers=6)      # unit x level -> drop in points
"""
from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .artifacts import weight_bytes
from .config import UserError
from .engine import compress
from .evals import put_val_eval, request_of, sentence, set_outcome, table, unit_recipe, val_eval
from .families import family
from .measure import TestSet, quality
from .models import load_tokenizer, quiet_transformers
from .recipes import Recipe
from .splits import load_split
from .store import Store
from .timing import set_threads
from .training import CancelToken, Progress
from .workload import Workload

class ValBench:
    """The prepared baseline with its train and validation splits (never the test split), scoring recipes on
    validation and keeping each score in the store."""

    def __init__(self, store: Store, baseline: str, progress: Progress | None = None,
                 cancel: CancelToken | None = None):
        from transformers import AutoModelForSequenceClassification

        row = store.baseline(baseline)
        if not row or not row.get("prepared"):
            raise UserError(f"baseline {baseline[:12]} is not prepared yet; prepare it first")
        set_threads()
        quiet_transformers()
        self.store, self.baseline, path = store, baseline, Path(row["path"])
        info = json.loads((path / "baseline.json").read_text())
        labels = info["label_names"]
        self.model = AutoModelForSequenceClassification.from_pretrained(path / "model", use_safetensors=True).eval()
        tok = load_tokenizer(path / "model")
        train, val = (load_split(path / "data", name, len(labels)) for name in ("train", "val"))
        seq_len = int(info.get("seq_len") or 64)
        self.val = TestSet(tok, val, seq_len)  # the measurement's batching, on the validation rows
        self.scratch = Path(tempfile.mkdtemp(prefix="compress-val-"))
        self.workload = Workload(tok, train, val, labels, seq_len=seq_len, seed=int(info.get("seed", 0)),
                                 progress=progress or (lambda f, m: None), cancel=cancel or CancelToken(),
                                 teacher=self.model, scratch=self.scratch)
        self.n_layers = family(self.model).num_layers(self.model)
        self._base: dict | None = None
        self._latency: dict[str, float] = {}

    @property
    def base(self) -> dict:
        """The baseline's own validation score (the reference every drop is measured from)."""
        if self._base is None:
            self._base = self.evaluate(Recipe(()))
        return self._base

    def evaluate(self, recipe: Recipe, latency: bool = False) -> dict:
        """Validation accuracy, loss, the paired change against the baseline (95% CI), saved size; with
        ``latency`` a short batch-1 timing on validation inputs too. Stored scores are reused."""
        got = val_eval(self.store, self.baseline, recipe.key)
        if got is not None and (not latency or recipe.key in self._latency):
            return {**got, "latency_ms": self._latency.get(recipe.key)}
        self.workload.cancel.check()
        t = time.perf_counter()
        cm = compress(self.model, recipe, self.workload)
        if latency:
            self._latency[recipe.key] = _short_timing(cm, self.val)
        if got is not None:
            return {**got, "latency_ms": self._latency[recipe.key]}
        logits = self.val.logits(cm)
        pred, y = logits.argmax(1), self.val.y
        z = logits - logits.max(1, keepdims=True)
        loss = float(-(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean())
        out = self.scratch / "size"
        shutil.rmtree(out, ignore_errors=True)
        size = weight_bytes(cm.save(out))
        shutil.rmtree(out, ignore_errors=True)
        base_pred = None if not recipe.steps else np.asarray(self.base["predictions"])
        q = quality(pred, y, base_pred, self.workload.seed)
        data = {**q, "loss": loss, "rows": int(len(y)), "size_bytes": int(size), "name": recipe.name,
                "seconds": time.perf_counter() - t, "split": "val"}
        put_val_eval(self.store, self.baseline, recipe.key, data, pred.tolist())
        return {**data, "predictions": pred.tolist(), "latency_ms": self._latency.get(recipe.key)}

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


def _short_timing(cm, val: TestSet, warmup: int = 3, runs: int = 15) -> float:
    """Median batch-1 milliseconds over validation sentences padded to the sequence length: a search-only
    estimate (the chosen recipe is then timed by the full protocol)."""
    times = []
    for i in range(warmup + runs):
        batch = val.b1[i % len(val.b1)]
        t = time.perf_counter()
        with torch.no_grad():
            cm.predict(batch)
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def run_sensitivity(store: Store, job: dict, progress: Progress, cancel: CancelToken,
                    bench: ValBench | None = None) -> None:
    """The body of a sensitivity job: score every (unit, level) not yet stored, one at a time."""
    req = request_of(job["recipe"])
    method, levels, base_kw = req["method"], req["levels"], req.get("base") or {}
    bench = bench or ValBench(store, job["baseline"], progress, cancel)
    progress(0.01, "scoring the baseline on the validation split")
    base = bench.base
    n = bench.n_layers
    set_outcome(store, job["id"], {"kind": "sensitivity", "layers": n, "method": method, "levels": levels})
    cells = [(u, lv) for u in range(n) for lv in levels]
    for k, (u, lv) in enumerate(cells):
        cancel.check()
        progress(0.02 + 0.97 * k / len(cells), f"layer {u} at {lv}: {k + 1}/{len(cells)} on validation")
        bench.evaluate(unit_recipe(method, u, lv, n, base_kw))
    df = table(store, job["baseline"], method, levels, n, base_kw)
    set_outcome(store, job["id"], {"kind": "sensitivity", "layers": n, "method": method, "levels": levels,
                                   "baseline_accuracy": base["accuracy"], "sentence": sentence(df)})


