"""The typed result record: one frozen ``Measurement`` per measured setting, every number with its label.

The store row, the ``results --csv`` columns, the CLI table and the charts' columns all derive from
the fields declared here, so a grep for a field name finds where it is written. This module imports
no torch: the dashboard reads results without loading the engine.

A measurement moves through stages: it *lands* with quality, size and batch-1 latency, then gains its
batch-32 timing (and the GPU's, where CUDA is present). ``Measurement.partial`` says which it is.

Example::

    >>> m = Measurement.from_row(stored_dict)
    >>> m.timing("cpu", 1).speedup, m.labels.latency
    (1.42, 'measured')
    >>> m.csv_row()["lat_b1_p50_ms"]
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

CSV = {"csv": True}  # field metadata: the field is a column of ``results --csv``


@dataclass(frozen=True)
class Timing:
    """One device at one batch size: candidate and baseline timed alternately in the same session.

    On the CPU the baseline is also timed alone: ``base_p50_ms`` is its median interleaved with the candidate,
    ``base_solo_p50_ms`` its median alone, and ``base_clean`` says whether the two agree within noise (False:
    the candidate's runtime disturbed it, and the timing is labelled contended). Rows stored before the
    protocol timed the baseline alone leave both empty."""

    device: str  # "cpu" or "gpu"
    batch: int  # 1 or 32
    p50_ms: float = field(metadata=CSV)
    # (a row stored by hand or by older code may lack the rest: they stay empty rather than invented)
    p90_ms: float | None = field(default=None, metadata=CSV)
    base_p50_ms: float | None = field(default=None, metadata=CSV)
    base_p90_ms: float | None = None
    speedup: float | None = field(default=None, metadata=CSV)  # baseline median / candidate median
    note: str | None = field(default=None, metadata=CSV)  # "1.42x faster", "no measurable change", ...
    spread: float | None = None  # the baseline's own run-to-run half-spread, relative to its median
    other_cores: float | None = None  # cores other processes used while this was timed
    base_solo_p50_ms: float | None = field(default=None, metadata=CSV)
    base_clean: bool | None = field(default=None, metadata=CSV)


# Column name of each Timing field, per (device, batch size): the stored keys and the CSV contract.
TIMING_COLUMNS: dict[tuple[str, int], dict[str, str]] = {
    ("cpu", 1): dict(p50_ms="lat_b1_p50_ms", p90_ms="lat_b1_p90_ms", base_p50_ms="base_lat_b1_p50_ms",
                     base_p90_ms="base_lat_b1_p90_ms", speedup="speedup_b1", note="speedup_b1_note",
                     spread="speedup_b1_spread", other_cores="other_cores_b1",
                     base_solo_p50_ms="base_solo_lat_b1_p50_ms", base_clean="base_clean_b1"),
    ("cpu", 32): dict(p50_ms="lat_b32_p50_ms", p90_ms="lat_b32_p90_ms", base_p50_ms="base_lat_b32_p50_ms",
                      base_p90_ms="base_lat_b32_p90_ms", speedup="speedup_b32", note="speedup_b32_note",
                      spread="speedup_b32_spread", other_cores="other_cores_b32",
                      base_solo_p50_ms="base_solo_lat_b32_p50_ms", base_clean="base_clean_b32"),
    ("gpu", 1): dict(p50_ms="gpu_lat_b1_p50_ms", p90_ms="gpu_lat_b1_p90_ms", base_p50_ms="gpu_base_lat_b1_p50_ms",
                     speedup="gpu_speedup_b1", note="gpu_speedup_b1_note"),
    ("gpu", 32): dict(p50_ms="gpu_lat_b32_p50_ms", p90_ms="gpu_lat_b32_p90_ms",
                      base_p50_ms="gpu_base_lat_b32_p50_ms", speedup="gpu_speedup_b32",
                      note="gpu_speedup_b32_note"),
}


@dataclass(frozen=True)
class Labels:
    """What each number is: measured, simulated, contended, estimated or preview (ARCHITECTURE: Labels)."""

    accuracy: str = field(default="measured", metadata=CSV)
    f1: str = "measured"
    size: str = field(default="measured", metadata=CSV)
    params: str = "measured"
    latency: str = field(default="measured", metadata=CSV)
    gpu_latency: str | None = field(default=None, metadata=CSV)


@dataclass(frozen=True)
class Context:
    """What a measurement depends on, recorded with every result."""

    host: str | None = field(default=None, metadata=CSV)
    cpu: str | None = field(default=None, metadata=CSV)
    load_avg_1m: float | None = field(default=None, metadata=CSV)
    threads_intra: int | None = field(default=None, metadata=CSV)
    threads_inter: int | None = field(default=None, metadata=CSV)
    seq_len: int | None = field(default=None, metadata=CSV)
    seed: int | None = field(default=None, metadata=CSV)
    torch: str | None = field(default=None, metadata=CSV)
    transformers: str | None = field(default=None, metadata=CSV)
    onnxruntime: str | None = field(default=None, metadata=CSV)
    git_commit: str | None = field(default=None, metadata=CSV)
    python: str | None = None
    hardware: str | None = None


@dataclass(frozen=True)
class Seconds:
    """Where a job's wall time went."""

    load: float | None = None
    compress: float | None = field(default=None, metadata=CSV)
    save: float | None = None
    measure: float | None = field(default=None, metadata=CSV)
    total: float | None = field(default=None, metadata=CSV)
    measure_b32: float | None = None
    total_with_b32: float | None = None


@dataclass(frozen=True)
class Measurement:
    """Every number of one compressed model, each labelled; frozen: a later stage makes a new record."""

    # what ran
    recipe_name: str = ""
    method: str = field(default="", metadata=CSV)
    description: str = field(default="", metadata=CSV)
    runtime: str = field(default="", metadata=CSV)
    kernel: str = field(default="", metadata=CSV)
    # quality on the test split (fractions); the change is candidate minus baseline, paired bootstrap CI
    accuracy: float = field(default=float("nan"), metadata=CSV)
    accuracy_lo: float = field(default=float("nan"), metadata=CSV)
    accuracy_hi: float = field(default=float("nan"), metadata=CSV)
    macro_f1: float = field(default=float("nan"), metadata=CSV)
    agreement: float | None = field(default=None, metadata=CSV)
    accuracy_delta: float | None = field(default=None, metadata=CSV)
    delta_lo: float | None = field(default=None, metadata=CSV)
    delta_hi: float | None = field(default=None, metadata=CSV)
    test_rows: int = field(default=0, metadata=CSV)
    # size: bytes of the weight files; parameters counted through the state_dict
    size_mib: float = field(default=float("nan"), metadata=CSV)
    size_bytes: int = field(default=0, metadata=CSV)
    params: int | None = field(default=None, metadata=CSV)
    nonzero_params: int | None = field(default=None, metadata=CSV)
    bits_per_weight: float | None = field(default=None, metadata=CSV)
    labels: Labels = Labels()
    # latency: one entry per (device, batch size) timed so far
    timings: tuple[Timing, ...] = ()
    gpu: str | None = field(default=None, metadata=CSV)  # the CUDA device's name, where one was present
    gpu_note: str | None = field(default=None, metadata=CSV)  # why a runtime was not timed on the GPU
    gpu_seconds: float | None = None
    # the job
    peak_rss_mib: float | None = field(default=None, metadata=CSV)
    seconds: Seconds = Seconds()
    context: Context = Context()
    artifact: str | None = field(default=None, metadata=CSV)
    node: str | None = None
    notes: tuple[str, ...] = ()  # plain words, one per step
    info: dict = field(default_factory=dict)  # method facts: bits per weight, sparsity, layers kept...
    predictions: tuple[int, ...] = ()  # per test row, in the split's order (flip table, playground)

    # ------------------------------------------------------------------ derived
    def timing(self, device: str, batch: int) -> Timing | None:
        return next((t for t in self.timings if (t.device, t.batch) == (device, batch)), None)

    @property
    def preview(self) -> bool:
        """True for the live knob's quick first look: a sample of the test split, a short timing."""
        return self.labels.accuracy == "preview"

    @property
    def partial(self) -> bool:
        """True for a point that has landed before its batch-32 timing."""
        return self.timing("cpu", 32) is None

    @property
    def other_cores_during_timing(self) -> float:
        """The most cores other processes used during any CPU timing of this record."""
        return max((t.other_cores or 0.0 for t in self.timings if t.device == "cpu"), default=0.0)

    @property
    def baseline_disturbed(self) -> bool:
        """True when, in any CPU timing, the baseline's interleaved median left its solo median's noise."""
        return any(t.base_clean is False for t in self.timings if t.device == "cpu")

    def with_timings(self, *timings: Timing, **changes) -> "Measurement":
        """A new record with these timings added (replacing any of the same device and batch)."""
        keep = [t for t in self.timings if (t.device, t.batch) not in {(n.device, n.batch) for n in timings}]
        return dataclasses.replace(self, timings=tuple(keep) + timings, **changes)

    # ------------------------------------------------------------------ stored form
    def to_row(self) -> dict[str, Any]:
        """The stored JSON: flat numbers plus ``labels``, ``context`` and ``seconds`` objects."""
        row: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "timings":
                for t in v:
                    cols = TIMING_COLUMNS[(t.device, t.batch)]
                    row.update({col: getattr(t, name) for name, col in cols.items()})
            elif dataclasses.is_dataclass(v):
                row[f.name] = {k: x for k, x in dataclasses.asdict(v).items() if x is not None}
            elif isinstance(v, tuple):
                if v or f.name != "predictions":  # a preview has none: the flip table waits for the full pass
                    row[f.name] = list(v)
            elif v is not None:
                row[f.name] = v
        row["other_cores_during_timing"] = self.other_cores_during_timing
        row["partial"] = self.partial
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Measurement":
        """Read a stored row (any schema this project has written; missing numbers stay empty)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw: dict[str, Any] = {k: v for k, v in row.items() if k in names and k not in _NESTED}
        for name, typ in _NESTED.items():
            d = row.get(name) or {}
            if typ is tuple:
                kw[name] = tuple(d)
            else:
                known = {f.name for f in dataclasses.fields(typ)}
                kw[name] = typ(**{k: v for k, v in d.items() if k in known})
        kw["timings"] = tuple(_timing(row, dev, b, cols) for (dev, b), cols in TIMING_COLUMNS.items()
                              if row.get(cols["p50_ms"]) is not None)
        kw["info"] = row.get("info") or {}
        return cls(**kw)

    def csv_row(self) -> dict[str, Any]:
        """This record's part of a ``results --csv`` row, keyed by MEASUREMENT_COLUMNS."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.metadata.get("csv"):
                out[f.name] = v
            elif f.name == "labels":
                out.update({f"{k.name}_label": getattr(v, k.name) for k in _csv_fields(Labels)})
            elif f.name == "timings":
                out["batch32_pending"] = self.partial
                out["other_cores_during_timing"] = self.other_cores_during_timing
                for (dev, b), cols in TIMING_COLUMNS.items():
                    t = self.timing(dev, b)
                    out.update({cols[k.name]: getattr(t, k.name) if t else None for k in _csv_fields(Timing)
                                if k.name in cols})  # the GPU's protocol times no solo baseline
            elif f.name in ("seconds", "context"):
                prefix = "seconds_" if f.name == "seconds" else ""
                out.update({prefix + k.name: getattr(v, k.name) for k in _csv_fields(type(v))})
        return out


def csv_row_of_stored(row: dict[str, Any]) -> dict[str, Any]:
    """``Measurement.from_row(row).csv_row()`` read straight off the stored dict: a chart over 10,000s of
    results reads them in a fraction of the time (tests/test_measurement.py holds the two equal)."""
    out = {k: row[k] if k in row else _DEFAULTS["top"][k] for k in _TOP_CSV}
    for nested, fields, prefix in (("labels", _LABEL_CSV, None), ("seconds", _SECONDS_CSV, "seconds_"),
                                   ("context", _CONTEXT_CSV, "")):
        d = row.get(nested) or {}
        out.update({(f"{k}_label" if prefix is None else prefix + k): d.get(k, _DEFAULTS[nested][k]) for k in fields})
    cores = [row.get(cols["other_cores"]) or 0.0 for (dev, b), cols in TIMING_COLUMNS.items()
             if dev == "cpu" and row.get(cols["p50_ms"]) is not None]
    out["batch32_pending"] = row.get(TIMING_COLUMNS[("cpu", 32)]["p50_ms"]) is None
    out["other_cores_during_timing"] = max(cores, default=0.0)
    for (_, _), cols in TIMING_COLUMNS.items():
        present = row.get(cols["p50_ms"]) is not None
        out.update({cols[k]: row.get(cols[k]) if present else None for k in _TIMING_CSV if k in cols})
    return {c: out[c] for c in MEASUREMENT_COLUMNS}


_NESTED = {"labels": Labels, "context": Context, "seconds": Seconds, "notes": tuple, "predictions": tuple}


def _csv_fields(t) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(t) if f.metadata.get("csv")]


def _timing(row: dict, device: str, batch: int, cols: dict[str, str]) -> Timing:
    return Timing(device, batch, **{name: row.get(col) for name, col in cols.items() if row.get(col) is not None})


# The columns a Measurement contributes to ``results --csv``, in order (the job's own columns go first).
MEASUREMENT_COLUMNS: list[str] = list(Measurement().csv_row())
_TOP_CSV = [f.name for f in _csv_fields(Measurement)]
_LABEL_CSV, _SECONDS_CSV, _CONTEXT_CSV = ([f.name for f in _csv_fields(t)] for t in (Labels, Seconds, Context))
_TIMING_CSV = [f.name for f in _csv_fields(Timing)]
_DEFAULTS = {"top": Measurement().csv_row(), "labels": dataclasses.asdict(Labels()),
             "seconds": dataclasses.asdict(Seconds()), "context": dataclasses.asdict(Context())}
