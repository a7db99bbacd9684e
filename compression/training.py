"""The one training loop: baseline fine-tuning, recovery fine-tuning and distillation all use it.

Example::

    >>> log = train(model, tokenizer, texts, labels, TrainSettings(steps=240), progress=print)
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from .config import TRAIN_LR, TRAIN_SEED, TRAIN_STEPS

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], message)


class Cancelled(Exception):
    """Raised inside long work when the user cancels; the job ends as cancelled, not failed."""


class CancelToken:
    """A flag the worker sets (from a heartbeat thread) and long work checks between steps.

    ``CancelToken(sharing=other)`` reads and sets ``other``'s flag: a subclass that adds a reason of its own
    to stop (engine.Yielding) still hears the user's cancel."""

    def __init__(self, sharing: "CancelToken | None" = None) -> None:
        self._event = sharing._event if sharing is not None else threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


@dataclass(frozen=True)
class TrainSettings:
    """Defaults are the measured baseline recipe: config.TRAIN_STEPS at batch 32, config.TRAIN_LR, warm-up 6%."""

    steps: int = TRAIN_STEPS
    batch_size: int = 32
    lr: float = TRAIN_LR
    warmup: float = 0.06
    weight_decay: float = 0.01
    seed: int = TRAIN_SEED
    max_len: int = 64  # tokens; the same sequence length the measurements use
    # Batches of similar length (sorted within windows of BUCKET_WINDOW batches), each padded only to its own
    # longest text: short-text datasets train ~2x faster. False reproduces baselines prepared before it.
    buckets: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


# loss_fn(model, batch, labels) -> loss; the default is cross-entropy on the model's logits.
LossFn = Callable[[torch.nn.Module, dict, torch.Tensor], torch.Tensor]


def cross_entropy(model: torch.nn.Module, batch: dict, labels: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(model(**batch).logits, labels)


BUCKET_WINDOW = 50  # batches; wide enough to group lengths, narrow enough to keep each epoch's order random


def batch_order(lengths: Sequence[int], batch_size: int, gen: torch.Generator, buckets: bool) -> list[list[int]]:
    """One epoch's batches: a seeded shuffle, then (with ``buckets``) rows sorted by length within windows and
    the batches shuffled again, so each batch pads little and the epoch still visits lengths in random order.

    >>> sorted(map(sorted, batch_order([5, 1, 5, 1], 2, torch.Generator().manual_seed(0), True)))
    [[0, 2], [1, 3]]
    """
    order = torch.randperm(len(lengths), generator=gen).tolist()
    if not buckets:
        return [order[i:i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    window = batch_size * BUCKET_WINDOW
    batches: list[list[int]] = []
    for w in range(0, len(order), window):
        chunk = sorted(order[w:w + window], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)]
    if not batches:  # fewer rows than one batch: one short batch rather than none
        batches = [order]
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def pad_batch(enc: dict[str, list], rows: list[int], pad_id: int, left: bool = False) -> dict[str, torch.Tensor]:
    """Rows of a tokenized split, padded to the longest among them (input ids with ``pad_id``, every other
    field with 0, on the tokenizer's padding side).

    >>> pad_batch({"input_ids": [[5, 6, 7], [8]], "attention_mask": [[1, 1, 1], [1]]}, [0, 1], 0)["input_ids"]
    tensor([[5, 6, 7],
            [8, 0, 0]])
    """
    n = max(len(enc["input_ids"][i]) for i in rows)
    out = {}
    for k, seqs in enc.items():
        fill = pad_id if k == "input_ids" else 0
        out[k] = torch.tensor([[fill] * (n - len(seqs[i])) + list(seqs[i]) if left else
                               list(seqs[i]) + [fill] * (n - len(seqs[i])) for i in rows])
    return out


def train(model: torch.nn.Module, tokenizer, texts: Sequence[str], labels: Sequence[int],
          settings: TrainSettings, *, loss_fn: LossFn = cross_entropy,
          after_step: Callable[[int], None] | None = None,
          progress: Progress | None = None, cancel: CancelToken | None = None) -> dict:
    """Train ``model`` in place with AdamW and a linear warm-up/decay schedule.

    ``after_step(step)`` runs after each optimizer step (pruning masks are re-applied there).
    Returns a small log: losses every few steps and the wall time.
    """
    s = settings
    if s.steps <= 0:
        return {"steps": 0, "seconds": 0.0, "loss": []}
    gen = torch.Generator().manual_seed(s.seed)
    torch.manual_seed(s.seed)
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    n = len(texts)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": s.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=s.lr)
    warm = max(1, int(math.ceil(s.warmup * s.steps)))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: (k + 1) / warm if k < warm else max(0.0, (s.steps - k) / max(1, s.steps - warm)))
    model.train()
    losses: list[float] = []
    t0 = time.perf_counter()
    # tokenized once, padded per batch (each epoch used to tokenize every text again)
    enc = {k: (v.tolist() if torch.is_tensor(v) else v)
           for k, v in tokenizer(list(texts), truncation=True, max_length=s.max_len).items()}
    lengths = [len(ids) for ids in enc["input_ids"]]
    pad_id = getattr(tokenizer, "pad_token_id", None) or 0
    left = getattr(tokenizer, "padding_side", "right") == "left"
    batches: list[list[int]] = []
    for step in range(s.steps):
        if cancel is not None:
            cancel.check()
        if not batches:
            batches = batch_order(lengths, min(s.batch_size, n), gen, s.buckets)
        rows = batches.pop(0)
        batch = pad_batch(enc, rows, pad_id, left)
        idx = torch.as_tensor(rows)
        loss = loss_fn(model, dict(batch), labels_t[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if after_step is not None:
            after_step(step)
        losses.append(float(loss.detach()))
        if progress is not None and (step % 5 == 0 or step == s.steps - 1):
            recent = np.mean(losses[-20:])
            progress((step + 1) / s.steps, f"training step {step + 1}/{s.steps}, loss {recent:.3f}")
    model.eval()
    every = max(1, s.steps // 50)
    return {"steps": s.steps, "seconds": round(time.perf_counter() - t0, 2),
            "loss": [round(float(np.mean(losses[i:i + every])), 4) for i in range(0, len(losses), every)]}
