"""The Baseline page's pickers: model source, dataset source with column pickers, training settings.

Example::

    >>> req, why = source_form(paths)   # ({"model": ..., "dataset": ..., ...}, None) or (None, "Prepare is ...")
    >>> fp = api.register_baseline(store, **req)
"""
from __future__ import annotations

import hashlib

import streamlit as st

from compression import api

TEXT_GUESS = ("text", "review", "sentence", "content", "body")
LABEL_GUESS = ("label", "sentiment", "category", "class", "target")


def _guess(cols: list[str], names, fallback: int) -> int:
    low = [c.lower() for c in cols]
    return next((low.index(n) for n in names if n in low), min(fallback, len(cols) - 1))


def source_form(paths) -> tuple[dict | None, str | None]:
    """Draw every picker; returns (register_baseline keyword arguments, None), or (None, one sentence saying
    what is missing) while the input is incomplete. A half-filled model choice keeps the dataset pickers."""
    c1, c2 = st.columns(2)
    kind = c1.radio("model", ["default", "local", "hub"], key="model_kind", horizontal=True,
                    format_func={"default": "embedded all-MiniLM-L6-v2", "local": "local folder", "hub": "Hub id"}.get)
    model = "default"
    if kind != "default":
        model = c1.text_input("model folder" if kind == "local" else "Hub id (needs a network)", key="model_ref",
                              placeholder="/path/to/hf-folder" if kind == "local" else "bert-base-uncased").strip()
        missing = None if model else (f"Prepare is greyed out until you type the model's "
                                      f"{'folder' if kind == 'local' else 'Hub id'} on the left.")
    else:
        missing = None
    dkind = c2.radio("dataset", ["default", "upload", "path", "hub"], key="data_kind", horizontal=True,
                     format_func={"default": "embedded Rotten Tomatoes", "upload": "upload CSV", "path": "CSV path",
                                  "hub": "Hub name"}.get)
    dataset, text_col, label_col, encoding = "default", "text", "label", "utf-8"
    if dkind == "upload":
        f = c2.file_uploader("CSV, TSV, JSON lines or Parquet with a text and a label column",
                             type=["csv", "tsv", "jsonl", "json", "parquet"], key="upload")
        if f is None:
            dataset = ""
        else:
            data = f.getvalue()
            dest = paths.workspace / "uploads" / f"{hashlib.sha256(data).hexdigest()[:12]}-{f.name}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            dataset = str(dest)
    elif dkind == "path":
        dataset = c2.text_input("CSV or TSV path", key="data_path", placeholder="/path/to/reviews.csv",
                                help="also a JSON lines (.jsonl) or Parquet (.parquet) file").strip()
    elif dkind == "hub":
        dataset = "hub:" + c2.text_input("Hub dataset name", key="data_hub", placeholder="imdb").strip()
    if dkind != "default" and dataset in ("", "hub:"):
        what = {"upload": "upload the dataset file", "path": "type the dataset's path",
                "hub": "type the dataset's Hub name"}
        missing = missing or f"Prepare is greyed out until you {what[dkind]} on the right."
    elif dkind != "default":
        if dkind != "hub":
            encoding = c2.text_input("file encoding", "utf-8", key="encoding",
                                     help="for a CSV/TSV/JSON lines file that is not UTF-8: latin-1, cp1252, ...")
        cols = api.csv_columns(dataset, encoding) if dkind != "hub" else None
        if cols:
            text_col = c2.selectbox("text column", cols, index=_guess(cols, TEXT_GUESS, 0), key="text_col")
            label_col = c2.selectbox("label column", cols, index=_guess(cols, LABEL_GUESS, 1), key="label_col")
        else:
            text_col = c2.text_input("text column", "text", key="text_col_h")
            label_col = c2.text_input("label column", "label", key="label_col_h")
    with st.expander("training settings (used when the model has no head for these labels)"):
        t1, t2, t3, t4 = st.columns(4)
        steps = t1.number_input("fine-tuning steps", 0, 100000, api.TRAIN_STEPS, key="train_steps")
        lr = t2.number_input("learning rate", 1e-7, 0.5, api.TRAIN_LR, format="%g", key="lr")
        seed = t3.number_input("seed", 0, 2**31 - 1, api.TRAIN_SEED, key="seed")
        seq_len = t4.number_input("sequence length (0: from the data)", 0, 8192, 0, key="seq_len",
                                  help="tokens per input for training and every measurement; 0 picks the 95th "
                                       "percentile of the training texts' lengths (64 for the embedded dataset)")
    if missing:
        return None, missing
    return dict(model=model, dataset=dataset, text_col=text_col, label_col=label_col, train_steps=int(steps),
                lr=float(lr), seed=int(seed), seq_len=int(seq_len) or None, encoding=encoding), None
