"""Baselines: a model source and a dataset source, fine-tuned once ("prepared") and cached by fingerprint.

Example::

    >>> req = BaselineRequest(ModelSource.from_arg("default"), DatasetSource.default())
    >>> fp = register(store, req)          # adds the baseline row and its preparation job
    >>> prepared = load_prepared(Path(store.baseline(fp)["path"]))

The sequence length is a baseline setting (``training.max_len``, so it enters the fingerprint): the
user's, else 64 for the embedded dataset, else chosen from the data (:func:`settle_seq_len`). Training,
every method (through the Workload) and every measurement of the baseline use it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import config
from .config import UserError
from .data import (DatasetSource, SplitSettings, clean_rows, content_hash, label_names, load_rows, read_rows,
                   split_rows, summary)
from .models import (ModelSource, check_memory, files_hash, load_for_labels, load_tokenizer, model_dir,
                     quiet_transformers)
from .splits import SPLITS, check_split, load_split, save_splits
from .store import BASELINE_RECIPE, PREPARE, Store
from .training import CancelToken, Progress, TrainSettings, train

DEFAULT_SEQ_LEN = 64  # the embedded default's, as measured since the first release
# RoBERTa-style position ids start after the padding index: that many positions are never usable.
_PADDED_POSITIONS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet", "data2vec-text",
                     "longformer", "ibert", "bart"}


@dataclass(frozen=True)
class BaselineRequest:
    model: ModelSource = field(default_factory=ModelSource)
    dataset: DatasetSource = field(default_factory=DatasetSource.default)
    split: SplitSettings = field(default_factory=SplitSettings)
    training: TrainSettings = field(default_factory=TrainSettings)
    force_train: bool = False
    seq_len: int | None = None  # tokens; None: chosen from the data (see settle_seq_len)

    @property
    def name(self) -> str:
        return f"{self.model.name} on {self.dataset.name}"

    def settings(self) -> dict:
        import transformers

        return {"split": self.split.__dict__, "training": self.training.to_dict(),
                "force_train": self.force_train, "torch": torch.__version__,
                "transformers": transformers.__version__}


def fingerprint(req: BaselineRequest, rows: pd.DataFrame | None = None) -> str:
    """sha256 over model file contents, dataset content and label map, split/training settings (the settled
    sequence length among them: see settle_seq_len), versions."""
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
    clean, _ = clean_rows(rows, req.dataset.name)  # one class left, an id column as labels: refused here
    req = settle_seq_len(req, clean)
    fp = fingerprint(req, rows)
    store.add_baseline(fp, req.name, req.model.to_dict(), req.dataset.to_dict(), req.settings())
    hw = config.hardware_id()
    if not store.baseline(fp)["prepared"]:
        store.enqueue(fp, [PREPARE], hw, priority=0)
    store.enqueue(fp, [BASELINE_RECIPE], hw, priority=1)  # the baseline measured like any result
    return fp


def request_from_row(row: dict) -> BaselineRequest:
    s = row["settings"]
    # baselines prepared before length buckets existed were trained without them
    training = TrainSettings(**{"buckets": False, **s["training"]})
    return BaselineRequest(ModelSource(**row["model_source"]), DatasetSource(**row["dataset_source"]),
                           SplitSettings(**s["split"]), training, s.get("force_train", False), training.max_len)


def model_seq_limit(folder: Path, tokenizer) -> int:
    """The longest input the model takes: its position embeddings, and the tokenizer's model_max_length."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(folder)
    limits = []
    n = getattr(cfg, "max_position_embeddings", None)
    if isinstance(n, int) and n > 0:
        if getattr(cfg, "model_type", "") in _PADDED_POSITIONS:
            n -= (getattr(cfg, "pad_token_id", None) or 0) + 1
        limits.append(n)
    m = getattr(tokenizer, "model_max_length", None)
    if isinstance(m, int) and 0 < m < 1_000_000:  # unset, it is a huge sentinel
        limits.append(m)
    return min(limits) if limits else 512


def token_lengths(tokenizer, texts: list[str]) -> list[int]:
    """Each text's length in tokens, special tokens included, untruncated."""
    out = []
    for i in range(0, len(texts), 1024):
        out += [len(ids) for ids in tokenizer(texts[i:i + 1024], truncation=False, verbose=False)["input_ids"]]
    return out


def settle_seq_len(req: BaselineRequest, rows: pd.DataFrame) -> BaselineRequest:
    """The request with its sequence length settled in ``training.max_len``: the user's (checked against the
    model's limit), else 64 for the embedded dataset, else the 95th percentile of the train split's token
    lengths (rounded up to a multiple of 8) capped by the model's limit.

    Example: ``settle_seq_len(req, clean_rows(load_rows(req.dataset), "x")[0]).training.max_len`` -> 48.
    """
    if req.seq_len is None and req.dataset.kind == "default":
        n = DEFAULT_SEQ_LEN
    else:
        folder = model_dir(req.model)
        tokenizer = load_tokenizer(folder)
        limit = model_seq_limit(folder, tokenizer)
        if req.seq_len is not None:
            if req.seq_len > limit:
                raise UserError(f"--seq-len {req.seq_len} is longer than {req.model.name} takes ({limit} tokens)")
            n = req.seq_len
        else:
            train_df = split_rows(rows, req.split)[0]
            p95 = float(np.percentile(token_lengths(tokenizer, train_df["text"].tolist()), 95))
            n = min(limit, max(8, 8 * math.ceil(p95 / 8)))
    return dataclasses.replace(req, seq_len=n, training=dataclasses.replace(req.training, max_len=n))


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
    rows, report = read_rows(req.dataset)
    clean, cleaned = clean_rows(rows, req.dataset.name)
    report.update(cleaned)
    labels = label_names(clean)
    train_df, val_df, test_df = split_rows(clean, req.split)
    ids = {name: i for i, name in enumerate(labels)}
    for name, df in (("train", train_df), ("val", val_df), ("test", test_df)):
        df["label"] = df["label"].map(ids)
        check_split(df, name, len(labels))
    progress(0.01, "loading the model")
    model, tokenizer, needs_training = load_for_labels(req.model, labels)
    log: dict = {"steps": 0}
    if needs_training or req.force_train:
        log = train(model, tokenizer, train_df["text"].tolist(), train_df["label"].tolist(), req.training,
                    progress=lambda f, m: progress(0.02 + 0.9 * f, m), cancel=cancel)
    model.eval()
    seq_len = req.training.max_len
    texts = pd.concat([train_df["text"], val_df["text"], test_df["text"]]).tolist()
    report.update(seq_len=seq_len, truncated=sum(n > seq_len for n in token_lengths(tokenizer, texts)))
    progress(0.93, "checking on the validation split")
    val_acc = _accuracy(model, tokenizer, val_df, req.training.max_len)
    refs = reference_accuracies(train_df, test_df)
    out = paths.baselines / fp[:16]
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "data").mkdir(parents=True)
    model.save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    manifest = save_splits(tmp / "data", {"train": train_df, "val": val_df, "test": test_df})
    info = {"label_names": labels, "rows": {"train": len(train_df), "val": len(val_df), "test": len(test_df)},
            "duplicates_dropped": report["duplicates"], "cleaning": report, "cleaning_summary": summary(report),
            "seq_len": seq_len, "splits": manifest,
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

    @property
    def seq_len(self) -> int:
        """Tokens per input for training, methods and measurement (64 for a baseline that predates it)."""
        return int(self.info.get("seq_len") or DEFAULT_SEQ_LEN)


def load_prepared(path: Path) -> Prepared:
    from transformers import AutoModelForSequenceClassification

    quiet_transformers()
    if not (path / "baseline.json").exists():
        raise UserError(f"{path} is not a prepared baseline (no baseline.json); prepare it again")
    model = AutoModelForSequenceClassification.from_pretrained(path / "model", use_safetensors=True).eval()
    tok = load_tokenizer(path / "model")
    info = json.loads((path / "baseline.json").read_text())
    n_labels = len(info.get("label_names") or []) or None
    data = {k: load_split(path / "data", k, n_labels) for k in SPLITS}
    return Prepared(path, model, tok, data["train"], data["val"], data["test"], info)
