"""Length-bucketed fine-tuning (issue 12, item 6): less padding, the same rows, and old baselines unchanged."""
from __future__ import annotations

import random

import torch

from compression.baseline import BaselineRequest, request_from_row
from compression.training import TrainSettings, batch_order, train


def _padded_tokens(lengths, buckets: bool, steps: int = 60) -> int:
    gen, total, batches = torch.Generator().manual_seed(0), 0, []
    for _ in range(steps):
        if not batches:
            batches = batch_order(lengths, 16, gen, buckets)
        rows = batches.pop(0)
        total += len(rows) * max(lengths[i] for i in rows)
    return total


def test_buckets_pad_far_less_and_each_epoch_visits_every_row_once():
    rng = random.Random(0)
    lengths = [rng.choice([rng.randint(4, 12), rng.randint(40, 64)]) for _ in range(800)]
    assert _padded_tokens(lengths, True) < 0.75 * _padded_tokens(lengths, False)
    epoch = batch_order(lengths, 16, torch.Generator().manual_seed(1), True)
    rows = [i for b in epoch for i in b]
    assert sorted(rows) == list(range(800)) and all(len(b) == 16 for b in epoch)
    # the batches' order is shuffled, not shortest first
    maxes = [max(lengths[i] for i in b) for b in epoch]
    assert maxes != sorted(maxes)


def test_fewer_rows_than_a_batch_still_trains(tiny_model):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    log = train(model, tok, ["good film", "awful plot", "fun"], [1, 0, 1], TrainSettings(steps=3, batch_size=8))
    assert log["steps"] == 3 and len(log["loss"]) == 3


def test_bucketing_is_a_new_fingerprint_and_old_baselines_read_unbucketed():
    new = BaselineRequest().settings()["training"]
    assert new["buckets"] is True
    old = {k: v for k, v in new.items() if k != "buckets"}  # what a store written before buckets holds
    row = {"settings": {"split": BaselineRequest().split.__dict__, "training": old},
           "model_source": BaselineRequest().model.to_dict(), "dataset_source": BaselineRequest().dataset.to_dict()}
    assert request_from_row(row).training.buckets is False
