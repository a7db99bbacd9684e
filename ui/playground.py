"""The playground's tables: one sentence through the original and the picked compressed models, and the
test sentences where the picked models disagree with the original.

Example::

    >>> table = predictions(store, fp, df, [1, 5, 3], "A warm, clever film.")   # rows in this order
    >>> found = disagreements(store, fp, df, [5, 3])
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from compression import api

AGREES, DISAGREES = "same as the original", "⚠ differs from the original"
SAMPLE_ROWS = 300  # test rows run when a model has no stored per-row predictions (seconds, not minutes)


def _names(store, fp: str) -> list[str]:
    return (store.baseline(fp)["info"] or {}).get("label_names") or []


def predictions(store, fp: str, df: pd.DataFrame, job_ids: list[int], text: str) -> pd.DataFrame:
    """Label, confidence, stored latency and size per model, in the order of ``job_ids`` (the original first),
    with whether each agrees with the original and a plain-language line on what each method did."""
    b = store.baseline(fp)
    names = _names(store, fp)
    tok = Path(b["path"]) / "model"
    seq_len = int((b["info"] or {}).get("seq_len") or 64)  # the baseline's own, as every measurement uses
    by_id = {int(r["job_id"]): r for _, r in df[df["job_id"].isin(job_ids)].iterrows()}
    rows, base_label = [], None
    for jid in dict.fromkeys(int(j) for j in job_ids):  # picked order, each once
        r = by_id.get(jid)
        if r is None:
            continue
        art = r["artifact"]
        if not isinstance(art, str) or not Path(art).is_dir():
            rows.append({"model": r["recipe"], "label": "(its saved model was deleted)"})
            continue
        out = api.predict_texts(art, [text], tok, seq_len)
        k = out["pred"][0]
        label = names[k] if k < len(names) else str(k)
        if r["method"] == "baseline":
            base_label = label
        notes = "; ".join(out.get("notes") or [])
        rows.append({"model": r["recipe"], "label": label,
                     "confidence": f"{out['confidence'][0] * 100:.1f}%",
                     "stored latency b1": f"{r['lat_b1_p50_ms']:.2f} ms {r['latency_label']}",
                     "size": f"{r['size_mib']:.3g} MiB {r['size_label']}",
                     "what it did": (r["description"] or "") + (f" ({notes})" if notes else "")})
    table = pd.DataFrame(rows)
    if base_label is not None and "label" in table:
        table.insert(2, "vs original", [AGREES if lab == base_label else DISAGREES for lab in table["label"]])
    return table


def highlight(table: pd.DataFrame):
    """The table styled so a model that disagrees with the original stands out."""
    if "vs original" not in table:
        return table
    return table.style.apply(lambda row: ["background-color: #fde2e1; font-weight: bold"
                                          if row["vs original"] == DISAGREES else "" for _ in row], axis=1)


def disagreements(store, fp: str, df: pd.DataFrame, job_ids: list[int],
                  progress: Callable[[float, str], None] | None = None,
                  sample: int = SAMPLE_ROWS) -> tuple[pd.DataFrame, str]:
    """Test sentences where at least one picked model's answer differs from the original's, and where the
    answers came from: the stored per-row predictions of the whole test split where every model has them,
    else a run of every model on the first ``sample`` test rows (reported through ``progress``)."""
    names = _names(store, fp)
    name = (lambda i: names[i] if 0 <= i < len(names) else str(i))
    test = api.saved_test_split(store, fp)
    base = api.baseline_result(store, fp) or {}
    recipes = dict(zip(df["job_id"].astype(int), df["recipe"]))
    preds = {j: (api.result_data(store, j) or {}).get("predictions") for j in job_ids}
    n = len(test)
    if base.get("predictions") is not None and all(p is not None and len(p) == n for p in preds.values()):
        b = np.asarray(base["predictions"])
        got = {j: np.asarray(p) for j, p in preds.items()}
        source = f"the stored answers on all {n:,} test sentences, measured"
    else:
        rows = min(sample, n)
        texts = test["text"].iloc[:rows].tolist()
        info = store.baseline(fp)
        tok, seq_len = Path(info["path"]) / "model", int((info["info"] or {}).get("seq_len") or 64)
        base_row = df[df["method"] == "baseline"]
        arts = {"original": base_row["artifact"].iloc[0] if len(base_row) else None,
                **{j: df.loc[df["job_id"] == j, "artifact"].iloc[0] for j in job_ids}}
        got = {}
        for i, (j, art) in enumerate(arts.items()):
            if progress:
                progress(i / len(arts), f"running {recipes.get(j, 'the original')} on {rows} test sentences")
            if not isinstance(art, str) or not Path(art).is_dir():
                raise api.UserError(f"the saved model of {recipes.get(j, 'the original')} was deleted; "
                                    "its answers cannot be compared")
            got[j] = np.asarray(api.predict_texts(art, texts, tok, seq_len)["pred"])
        if progress:
            progress(1.0, "done")
        b = got.pop("original")
        source = (f"a run of each model on the first {rows:,} of {n:,} test sentences, "
                  "since no per-row answers are stored")
    idx = sorted(set().union(*(np.flatnonzero(p != b[:len(p)]).tolist() for p in got.values())) if got else set())
    out = pd.DataFrame({"text": test["text"].to_numpy()[idx],
                        "true label": [name(int(test["label"].iloc[i])) for i in idx],
                        "original says": [name(int(b[i])) for i in idx]})
    for j, p in got.items():
        out[f"{recipes.get(j, j)} says"] = [name(int(p[i])) for i in idx]
    return out, source
