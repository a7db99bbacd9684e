"""Baselines: a model source and a dataset source, fine-tuned once ("prepared") and cached by fingerprint.

Example::

    >>> req = BaselineRequest(ModelSource.from_arg("default"), DatasetSource.default())
    >>> fp = register(store, req)          # adds the baseline row and its preparation job
    >>> prepared = load_prepared(Path(store.baseline(fp)["path"]))
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from . import config
from .config import UserError
from .data import DatasetSource, SplitSettings, content_hash, label_names, load_rows, split_rows
from .models import (ModelSource, check_memory, files_hash, load_for_labels, load_tokenizer, model_dir,
                     quiet_transformers)
from .store import BASELINE_RECIPE, PREPARE, Store
from .training import CancelToken, Progress, TrainSettings, train


@dataclass(frozen=True)
class BaselineRequest:
    model: ModelSource = field(default_factory=ModelSource)
    dataset: DatasetSource = field(default_factory=DatasetSource.default)
    split: SplitSettings = field(default_factory=SplitSettings)
    training: TrainSettings = field(default_factory=TrainSettings)
    force_train: bool = False

    @property
    def name(self) -> str:
        return f"{self.model.name} on {self.dataset.name}"

    def settings(self) -> dict:
        import transformers

        return {"split": self.split.__dict__, "training": self.training.to_dict(),
                "force_train": self.force_train, "torch": torch.__version__,
                "transformers": transformers.__version__}


def fingerprint(req: BaselineRequest, rows: pd.DataFrame | None = None) -> str:
    """sha256 over model file contents, dataset content and label map, split/training settings, versions."""
    rows = load_rows(req.dataset) if rows is None else rows
    h = hashlib.sha256()
    h.update(files_hash(model_dir(req.model)).encode())
    h.update(content_hash(rows).encode())
    h.update(json.dumps(label_names(rows)).encode())
    h.update(json.dumps(req.settings(), sort_keys=True).encode())
    return h.hexdigest()


def register(store: Store, req: BaselineRequest) -> str:
    """Validate the sources, add the baseline row, and queue its preparation and its own measurement.

    Bad sources raise UserError here, before anything is written.
    """
    # a wrong model path, then a model this machine cannot fine-tune, are reported before the dataset is
    # read or the weights are hashed for the fingerprint
    check_memory(model_dir(req.model))
    rows = load_rows(req.dataset)
    fp = fingerprint(req, rows)
    store.add_baseline(fp, req.name, req.model.to_dict(), req.dataset.to_dict(), req.settings())
    hw = config.hardware_id()
    if not store.baseline(fp)["prepared"]:
        store.enqueue(fp, [PREPARE], hw, priority=0)
    store.enqueue(fp, [BASELINE_RECIPE], hw, priority=1)  # the baseline measured like any result
    return fp


def request_from_row(row: dict) -> BaselineRequest:
    s = row["settings"]
    return BaselineRequest(ModelSource(**row["model_source"]), DatasetSource(**row["dataset_source"]),
                           SplitSettings(**s["split"]), TrainSettings(**s["training"]), s.get("force_train", False))


def prepare(store: Store, paths: config.Paths, fp: str, progress: Progress, cancel: CancelToken) -> dict:
    """Fine-tune the head (if needed) and save model, tokenizer and the split under the workspace.

    Writes into a temporary folder renamed at the end, so a killed preparation leaves nothing half-made.
    """
    from .measure import reference_accuracies, set_threads

    set_threads()
    quiet_transformers()
    row = store.baseline(fp)
    req = request_from_row(row)
    check_memory(model_dir(req.model))  # again here: free memory may have shrunk since it was queued
    progress(0.0, "reading the dataset")
    rows = load_rows(req.dataset)
    labels = label_names(rows)
    train_df, val_df, test_df = split_rows(rows, req.split)
    ids = {name: i for i, name in enumerate(labels)}
    for df in (train_df, val_df, test_df):
        df["label"] = df["label"].map(ids)
    progress(0.01, "loading the model")
    model, tokenizer, needs_training = load_for_labels(req.model, labels)
    log: dict = {"steps": 0}
    if needs_training or req.force_train:
        log = train(model, tokenizer, train_df["text"].tolist(), train_df["label"].tolist(), req.training,
                    progress=lambda f, m: progress(0.02 + 0.9 * f, m), cancel=cancel)
    model.eval()
    progress(0.93, "checking on the validation split")
    val_acc = _accuracy(model, tokenizer, val_df, req.training.max_len)
    refs = reference_accuracies(train_df, test_df)
    out = paths.baselines / fp[:16]
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "data").mkdir(parents=True)
    model.save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    for name, df in (("train", train_df), ("val", val_df), ("test", test_df)):
        df.to_csv(tmp / "data" / f"{name}.csv", index=False)
    info = {"label_names": labels, "rows": {"train": len(train_df), "val": len(val_df), "test": len(test_df)},
            "duplicates_dropped": int(len(rows) - len(train_df) - len(val_df) - len(test_df)),
            "trained_head": bool(needs_training or req.force_train), "train_log": log,
            "val_accuracy": val_acc, **refs, "params": sum(p.numel() for p in model.parameters()),
            "fingerprint": fp, "name": req.name, "seed": req.training.seed}
    (tmp / "baseline.json").write_text(json.dumps(info, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    store.mark_prepared(fp, str(out), info)
    progress(1.0, "prepared")
    return info


def _accuracy(model, tokenizer, df: pd.DataFrame, max_len: int) -> float:
    correct = 0
    with torch.no_grad():
        for i in range(0, len(df), 64):
            part = df.iloc[i:i + 64]
            enc = tokenizer(part["text"].tolist(), padding=True, truncation=True, max_length=max_len,
                            return_tensors="pt")
            correct += int((model(**enc).logits.argmax(1).numpy() == part["label"].to_numpy()).sum())
    return correct / max(1, len(df))


@dataclass
class Prepared:
    """A prepared baseline loaded from its folder."""

    path: Path
    model: torch.nn.Module
    tokenizer: object
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    info: dict


def load_prepared(path: Path) -> Prepared:
    from transformers import AutoModelForSequenceClassification

    quiet_transformers()
    if not (path / "baseline.json").exists():
        raise UserError(f"{path} is not a prepared baseline (no baseline.json); prepare it again")
    model = AutoModelForSequenceClassification.from_pretrained(path / "model", use_safetensors=True).eval()
    tok = load_tokenizer(path / "model")
    data = {k: pd.read_csv(path / "data" / f"{k}.csv", keep_default_na=False) for k in ("train", "val", "test")}
    return Prepared(path, model, tok, data["train"], data["val"], data["test"],
                    json.loads((path / "baseline.json").read_text()))
