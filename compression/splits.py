"""A prepared baseline's train/validation/test splits on disk: Parquet, with a manifest of row counts and
content hashes that every reload checks.

CSV does not round-trip every text (a carriage return inside an unquoted field splits the row), so the
splits are Parquet: typed (texts stay strings, labels stay class ids) and lossless. A baseline prepared
before this has CSV splits and no manifest; those are read as they were, so its stored results stay
readable.

Example::

    >>> manifest = save_splits(folder / "data", {"train": train, "val": val, "test": test})
    >>> test = load_split(folder / "data", "test", n_labels=2)   # UserError if it changed since
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from .config import UserError

MANIFEST = "splits.json"
SPLITS = ("train", "val", "test")


def split_hash(df: pd.DataFrame) -> str:
    """sha256 over the rows (text, class id) in order."""
    h = hashlib.sha256()
    for t, y in zip(df["text"], df["label"]):
        h.update(json.dumps([str(t), int(y)]).encode())
    return h.hexdigest()


def check_split(df: pd.DataFrame, name: str, n_labels: int | None) -> None:
    """Every row has a non-empty text and a class id of the label set; otherwise a UserError."""
    blank = int((df["text"].astype(str).str.strip() == "").sum())
    if blank:
        raise UserError(f"the {name} split has {blank} empty texts; prepare the baseline again")
    labels = pd.to_numeric(df["label"], errors="coerce")
    bad = labels.isna() | (labels < 0) | (labels != labels.round())
    if n_labels is not None:
        bad |= labels >= n_labels
    if bad.any():
        raise UserError(f"the {name} split has {int(bad.sum())} rows whose label is not one of the "
                        f"{n_labels or ''} classes; prepare the baseline again")


def save_splits(folder: Path, frames: dict[str, pd.DataFrame]) -> dict:
    """Write each split as Parquet (text: string, label: int64) and the manifest; returns the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, df in frames.items():
        out = pd.DataFrame({"text": df["text"].astype(str), "label": df["label"].astype("int64")})
        out.to_parquet(folder / f"{name}.parquet", index=False)
        manifest[name] = {"file": f"{name}.parquet", "rows": len(out), "sha256": split_hash(out)}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def load_split(folder: Path, name: str, n_labels: int | None = None) -> pd.DataFrame:
    """One split, verified against its manifest's row count and hash; a baseline from before the manifest
    reads its CSV as it always did. A mismatch is one UserError, never a silent re-split.

    Example: ``load_split(Path(row["path"]) / "data", "test")`` -> DataFrame with text and label (class id).
    """
    man = folder / MANIFEST
    if not man.is_file():
        legacy = folder / f"{name}.csv"
        if not legacy.is_file():
            raise UserError(f"no saved {name} split at {folder}; prepare the baseline again")
        return pd.read_csv(legacy, keep_default_na=False)
    entry = json.loads(man.read_text()).get(name)
    if entry is None:
        raise UserError(f"{man} lists no {name} split; prepare the baseline again")
    f = folder / entry["file"]
    try:
        df = pd.read_parquet(f)
    except Exception as e:
        raise UserError(f"cannot read the {name} split {f}: {str(e).splitlines()[0][:200]}; "
                        "prepare the baseline again") from None
    if len(df) != entry["rows"]:
        why = f"it has {len(df):,} rows where {entry['rows']:,} were recorded"
    elif split_hash(df) != entry["sha256"]:
        why = "its content hash differs from the recorded one"
    else:
        why = ""
    if why:
        raise UserError(f"the {name} split {f} is not what was prepared: {why} (changed or damaged on disk); "
                        "prepare the baseline again")
    check_split(df, name, n_labels)
    return df
