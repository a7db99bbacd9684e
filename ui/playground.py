"""The playground's table: one sentence through the baseline and the chosen compressed models.

Example::

    >>> table = predictions(store, fp, df, [3, 5], "A warm, clever film.")
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from compression import api


def predictions(store, fp: str, df: pd.DataFrame, job_ids: list[int], text: str) -> pd.DataFrame:
    """Label, confidence and latency per model, with a plain-language line on what each method did."""
    b = store.baseline(fp)
    names = (b["info"] or {}).get("label_names") or []
    tok = Path(b["path"]) / "model"
    seq_len = int((b["info"] or {}).get("seq_len") or 64)  # the baseline's own, as every measurement uses
    rows = []
    for _, r in df[df["job_id"].isin(job_ids)].sort_values("method", key=lambda s: s != "baseline").iterrows():
        art = r["artifact"]
        if not isinstance(art, str) or not Path(art).is_dir():
            rows.append({"model": r["recipe"], "label": "(its saved model was deleted)"})
            continue
        out = api.predict_texts(art, [text], tok, seq_len)
        k = out["pred"][0]
        notes = "; ".join(out.get("notes") or [])
        rows.append({"model": r["recipe"], "label": names[k] if k < len(names) else str(k),
                     "confidence": f"{out['confidence'][0] * 100:.1f}%",
                     "this call": f"{out['ms']:.1f} ms contended (one call inside the app)",
                     "stored latency b1": f"{r['lat_b1_p50_ms']:.2f} ms {r['latency_label']}",
                     "size": f"{r['size_mib']:.3g} MiB {r['size_label']}",
                     "what it did": (r["description"] or "") + (f" ({notes})" if notes else "")})
    return pd.DataFrame(rows)
