"""The default's fine-tune with and without length-bucketed batches (issue 12, item 6): the same 240 steps,
seed, learning rate and split, from the same pre-trained weights; seconds, padded tokens and accuracy on the
validation and test splits of a prepared default.

    python benchmarks/finetune.py --workspace WS      # WS holds the prepared default (its splits are reused)

Runs unbucketed first, then bucketed, one after the other on a quiet machine; prints the CPU and load.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import parser  # noqa: E402

from compression import api, config  # noqa: E402
from compression.baseline import _accuracy, request_from_row  # noqa: E402
from compression.models import load_for_labels, quiet_transformers  # noqa: E402
from compression.splits import load_split  # noqa: E402
from compression.timing import set_threads  # noqa: E402
from compression.training import batch_order, train  # noqa: E402


def padded_tokens(tokenizer, texts, settings) -> int:
    import torch

    lengths = [len(x) for x in tokenizer(texts, truncation=True, max_length=settings.max_len)["input_ids"]]
    gen, total, batches = torch.Generator().manual_seed(settings.seed), 0, []
    for _ in range(settings.steps):
        if not batches:
            batches = batch_order(lengths, settings.batch_size, gen, settings.buckets)
        rows = batches.pop(0)
        total += len(rows) * max(lengths[i] for i in rows)
    return total


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    set_threads()
    quiet_transformers()
    _, store = api.open_workspace(args.workspace, args.store)
    b = api.default_baseline(store)
    if b is None or not b["prepared"]:
        sys.exit("prepare the default first: python -m compression prepare")
    req = request_from_row(b)
    data = Path(b["path"]) / "data"
    train_df, val_df, test_df = (load_split(data, s) for s in ("train", "val", "test"))
    labels = b["info"]["label_names"]
    print(f"CPU: {config.cpu_model()} ({config.hardware_id()}), load {os.getloadavg()[0]:.2f}")
    for buckets in (False, True):
        settings = req.training.__class__(**{**req.training.to_dict(), "buckets": buckets})
        model, tok, _ = load_for_labels(req.model, labels)
        t = time.perf_counter()
        log = train(model, tok, train_df["text"].tolist(), train_df["label"].tolist(), settings)
        secs = time.perf_counter() - t
        val = _accuracy(model, tok, val_df, settings.max_len)
        test = _accuracy(model, tok, test_df, settings.max_len)
        print(f"buckets={buckets}: {settings.steps} steps in {secs:.1f} s, "
              f"{padded_tokens(tok, train_df['text'].tolist(), settings):,} padded tokens, "
              f"validation {100 * val:.2f}%, test {100 * test:.2f}% ({len(test_df)} rows), "
              f"final loss {log['loss'][-1]:.3f}, load {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
