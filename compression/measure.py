"""Measurement: quality on the held-out test split, size on disk, interleaved latency; each number labelled.

This is the only module that reads the test split. It fills the typed record of
:mod:`compression.measurement`; the latency protocol itself is :mod:`compression.timing`. Labels:
- ``measured``: the artifact's own numerics / timed on the kernel a deployment would use here;
- ``simulated``: timed on a stand-in path because no real kernel exists here (the kernel field says which);
- ``contended``: timed while other processes used the CPU (left off the frontier);
- ``estimated``: not timed at all.

Where CUDA is present, batch-1 and batch-32 latency are timed on the GPU too (device "gpu" timings,
with their own label); a runtime with no CUDA kernel (ONNX Runtime's CPU provider, fbgemm int8) gets a
``gpu_note`` saying so instead of a number.

Example::

    >>> session = MeasureSession(baseline_cm, workload.tokenizer, test_df)
    >>> landed = session.measure(candidate_cm, artifact_files, batch32=False)   # a Measurement
    >>> full = session.add_batch32(landed, candidate_cm)
"""
from __future__ import annotations

import dataclasses
import functools
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from . import config
from .artifacts import CompressedModel, count_params, weight_bytes
from .measurement import Context, Labels, Measurement
from .timing import (CONTENTION_CORES, Preempted, cuda_device, device_latency, device_module,
                     interleaved_latency, pct, release, set_threads)

SEQ_LEN = 64  # the default baseline's; a baseline passes its own (latency inputs are padded to it)
EVAL_BATCH = 64
BOOTSTRAP = 1000
PREVIEW_ROWS = 256  # the preview's accuracy sample (at least this many test rows)
PREVIEW_B1 = (3, 10)  # the preview's batch-1 timing: warm-up and timed pairs

__all__ = ["MeasureSession", "TestSet", "quality", "context", "reference_accuracies", "latency_label", "Preempted",
           "SEQ_LEN"]


class TestSet:
    """The test split tokenized once, in length-sorted batches with dynamic padding."""

    def __init__(self, tokenizer, test: pd.DataFrame, seq_len: int = SEQ_LEN):
        self.texts = test["text"].tolist()
        self.y = test["label"].to_numpy()
        enc = tokenizer(self.texts, truncation=True, max_length=seq_len)
        lengths = np.array([len(ids) for ids in enc["input_ids"]])
        self.order = np.argsort(lengths, kind="stable")
        self.batches = []
        for i in range(0, len(self.order), EVAL_BATCH):
            idx = self.order[i:i + EVAL_BATCH]
            feats = [{k: enc[k][j] for k in enc.keys()} for j in idx]
            self.batches.append(dict(tokenizer.pad(feats, return_tensors="pt")))
        # latency inputs: the first 32 test sentences padded to exactly seq_len tokens
        fixed = tokenizer(self.texts[:32], padding="max_length", truncation=True, max_length=seq_len,
                          return_tensors="pt")
        self.b32 = dict(fixed)
        self.b1 = [{k: v[i:i + 1] for k, v in fixed.items()} for i in range(len(self.texts[:32]))]

    def __len__(self) -> int:
        return len(self.texts)

    def logits(self, cm: CompressedModel, stop: Callable[[], bool] | None = None) -> np.ndarray:
        """The model's logits for every row, in the split's order. ``stop()`` is asked between batches: a
        prefetched setting's accuracy pass (seconds on an fp32 model) yields to a release at once (Preempted)."""
        out = []
        for b in self.batches:
            if stop is not None and stop():
                raise Preempted("accuracy pass")
            out.append(cm.predict(b))
        out = np.concatenate(out)
        back = np.empty_like(out)
        back[self.order] = out
        return back


def quality(pred: np.ndarray, y: np.ndarray, base_pred: np.ndarray | None, seed: int = 0) -> dict:
    """Accuracy and macro-F1 with bootstrap 95% CIs, and the paired change against the baseline
    (keyword arguments of :class:`Measurement`)."""
    from sklearn.metrics import f1_score

    n = len(y)
    correct = (pred == y).astype(np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(BOOTSTRAP, n))
    boot = correct[idx].mean(axis=1)
    out = {"accuracy": float(correct.mean()), "accuracy_lo": pct(boot, 2.5), "accuracy_hi": pct(boot, 97.5),
           "macro_f1": float(f1_score(y, pred, average="macro")), "test_rows": int(n)}
    if base_pred is not None:
        base_correct = (base_pred == y).astype(np.float64)
        diff = correct - base_correct
        dboot = diff[idx].mean(axis=1)
        out.update(accuracy_delta=float(diff.mean()), delta_lo=pct(dboot, 2.5), delta_hi=pct(dboot, 97.5),
                   agreement=float((pred == base_pred).mean()))
    return out


@functools.lru_cache(maxsize=1)
def _static_context() -> dict:
    import transformers

    try:
        import onnxruntime
        ort = onnxruntime.__version__
    except ImportError:
        ort = None
    cpu = config.cpu_model()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"torch": torch.__version__, "transformers": transformers.__version__, "onnxruntime": ort,
            "cpu": cpu, "host": platform.node(), "git_commit": commit, "python": platform.python_version()}


def context(seed: int, seq_len: int = SEQ_LEN) -> Context:
    """What a measurement depends on, recorded with every result."""
    return Context(**_static_context(), threads_intra=torch.get_num_threads(),
                   threads_inter=torch.get_num_interop_threads(), seq_len=seq_len, seed=seed,
                   load_avg_1m=round(os.getloadavg()[0], 2), hardware=config.hardware_id())


def preview_sample(y: np.ndarray, seed: int = 0, n: int = PREVIEW_ROWS) -> np.ndarray:
    """A fixed, seeded, stratified sample of at least ``n`` test rows (sorted indices; all rows if fewer):
    each class keeps its share, so the preview's accuracy estimates the full split's."""
    if len(y) <= n:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    out = []
    for cls in np.unique(y):
        rows = np.flatnonzero(y == cls)
        out.append(rng.choice(rows, size=max(1, int(np.ceil(n * len(rows) / len(y)))), replace=False))
    return np.sort(np.concatenate(out))


def reference_accuracies(train: pd.DataFrame, test: pd.DataFrame) -> dict:
    """Majority-class and TF-IDF + logistic regression accuracy on the test split: the chart's floor lines."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    majority = int(pd.Series(train["label"]).value_counts().idxmax())
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    xtr = vec.fit_transform(train["text"])
    clf = LogisticRegression(max_iter=2000, C=4.0).fit(xtr, train["label"])
    pred = clf.predict(vec.transform(test["text"]))
    return {"majority_accuracy": float((test["label"].to_numpy() == majority).mean()),
            "tfidf_accuracy": float((pred == test["label"].to_numpy()).mean())}




def latency_label(m: Measurement, label: str) -> str:
    """The latency label a record's CPU timings earn: ``contended`` where other processes used the CPU while
    it was timed, or where the baseline's interleaved median left its solo median's noise (the candidate's
    runtime disturbed it: Timing.base_clean); ``label`` (measured, simulated, preview) otherwise."""
    if m.other_cores_during_timing > CONTENTION_CORES or m.baseline_disturbed:
        return "contended"
    return label


class MeasureSession:
    """Holds the baseline for one worker session: its test predictions and its live latency twin."""

    def __init__(self, baseline: CompressedModel, tokenizer, test: pd.DataFrame, seed: int = 0,
                 seq_len: int = SEQ_LEN, cache: Path | None = None):
        set_threads()
        self.baseline = baseline
        self.seed, self.seq_len = seed, seq_len
        self.tests = TestSet(tokenizer, test, seq_len)
        self.base_logits = self._baseline_logits(cache)
        self.base_pred = self.base_logits.argmax(1)
        self._gpu_base: torch.nn.Module | None = None  # the baseline's copy on the GPU, made on first use
        self.sample = preview_sample(test["label"].to_numpy(), seed)  # the preview's rows, the same every time
        self._preview_tests = (TestSet(tokenizer, test.iloc[self.sample], seq_len) if len(self.sample) < len(test)
                               else None)
        # the rows outside the preview's sample: the full pass after a preview predicts only these, and takes
        # the sample's predictions from the preview (the same model, the same rows)
        self._rest = np.setdiff1d(np.arange(len(test)), self.sample)
        self._rest_tests = TestSet(tokenizer, test.iloc[self._rest], seq_len) if self._preview_tests else None
        self._sample_pred: dict[str, np.ndarray] = {}  # artifact -> its preview's predictions on the sample
        self._solo: dict[int, tuple[float, list]] = {}  # the baseline's solo runs, reused briefly (timing.py)

    def _baseline_logits(self, cache: Path | None) -> np.ndarray:
        """The baseline's test logits, from ``cache`` when this very computation was done before: the
        baseline's folder is keyed by its fingerprint (weights, data, versions, sequence length), and the
        file name by what else can change them here (threads, CPU class, the test rows). A worker that
        starts for the live knob is then ready without the baseline's whole accuracy pass."""
        if cache is None:
            return self.tests.logits(self.baseline)
        import hashlib

        key = hashlib.sha256(repr((config.hardware_id(), torch.__version__, self.seq_len, self.tests.texts,
                                   self.tests.y.tolist())).encode()).hexdigest()[:16]
        f = cache / f"baseline-logits-{key}.npy"
        if f.is_file():
            try:
                logits = np.load(f, allow_pickle=False)
                if logits.shape[0] == len(self.tests):
                    return logits
            except (OSError, ValueError):
                pass  # unreadable: computed again below
        logits = self.tests.logits(self.baseline)
        try:
            cache.mkdir(parents=True, exist_ok=True)
            tmp = f.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, logits)
            tmp.replace(f)
        except OSError:
            pass  # a read-only baseline folder: no cache, same numbers
        return logits

    def preview(self, cm: CompressedModel, files: list[Path], **what) -> Measurement:
        """A quick first look (ARCHITECTURE: Preview): accuracy on the fixed sample of the test split with
        its CI, batch-1 latency from 3 warm-up and 10 timed pairs; labelled ``preview``, replaced by
        :meth:`measure`'s numbers on the same row. A test split no larger than the sample gets the full
        measurement's first landing instead."""
        if self._preview_tests is None:
            return self.measure(cm, files, batch32=False, **what)
        pred = self._preview_tests.logits(cm).argmax(1)
        if what.get("artifact"):
            while len(self._sample_pred) >= 8:  # a few landed points wait for their full pass, no more
                self._sample_pred.pop(next(iter(self._sample_pred)))
            self._sample_pred[what["artifact"]] = pred
        m = self._record(cm, files, pred, self._preview_tests.y, self.base_pred[self.sample], **what)
        m = m.with_timings(*interleaved_latency(cm, self.baseline, self.tests, (1,), reps={1: PREVIEW_B1},
                                                     solo=self._solo))
        latency = latency_label(m, "preview")
        return dataclasses.replace(m, labels=dataclasses.replace(m.labels, accuracy="preview", f1="preview",
                                                                 latency=latency), predictions=())

    def measure(self, cm: CompressedModel, files: list[Path], batch32: bool = True,
                stop: Callable[[], bool] | None = None, **what) -> Measurement:
        """All numbers for one compressed model, each with its label; ``what`` names the setting
        (recipe_name, method, description, artifact: fields of :class:`Measurement`).

        With ``batch32=False`` the record is a first landing (quality, size, batch-1 latency);
        :meth:`add_batch32` completes it (batch 32, and the GPU's timings where CUDA is present).
        """
        known = self._sample_pred.get(what.get("artifact") or "")
        if known is not None:  # after this artifact's preview: its sample rows are predicted already
            pred = np.empty(len(self.tests), dtype=np.int64)
            pred[self.sample] = known
            pred[self._rest] = self._rest_tests.logits(cm, stop).argmax(1)
        else:
            pred = self.tests.logits(cm, stop).argmax(1)
        m = self._record(cm, files, pred, self.tests.y, self.base_pred, **what)
        m = self._cpu_latency(m, cm, (1, 32) if batch32 else (1,), stop)
        self._sample_pred.pop(what.get("artifact") or "", None)
        return self._gpu_latency(m, cm, stop) if batch32 else m

    def _record(self, cm: CompressedModel, files: list[Path], pred: np.ndarray, y: np.ndarray,
                base_pred: np.ndarray, **what) -> Measurement:
        """Quality (on ``y``'s rows), size and what ran; no timing yet."""
        size = weight_bytes(files)
        if cm.module is not None:
            params, nonzero = count_params(cm.module)
        else:
            params, nonzero = cm.info.get("params"), cm.info.get("nonzero_params")
        return Measurement(**quality(pred, y, base_pred, self.seed), **what,
                           size_bytes=size, size_mib=size / 2**20, params=params, nonzero_params=nonzero,
                           bits_per_weight=(8 * size / params) if params else None,
                           labels=Labels(params="measured" if params else "estimated", latency=cm.latency_label),
                           runtime=cm.runtime, kernel=cm.kernel, notes=tuple(cm.notes), info=cm.info,
                           predictions=tuple(pred.astype(int).tolist()), context=context(self.seed, self.seq_len))

    def add_batch32(self, m: Measurement, cm: CompressedModel, stop: Callable[[], bool] | None = None) -> Measurement:
        """Complete a first landing with its batch-32 timing, and the GPU's where CUDA is present.

        Raises Preempted, and nothing of the timing is kept, if ``stop()`` says so midway."""
        return self._gpu_latency(self._cpu_latency(m, cm, (32,), stop), cm, stop)

    def _cpu_latency(self, m: Measurement, cm: CompressedModel, batches: tuple[int, ...],
                     stop: Callable[[], bool] | None = None) -> Measurement:
        m = m.with_timings(*interleaved_latency(cm, self.baseline, self.tests, batches, stop, solo=self._solo))
        return dataclasses.replace(m, labels=dataclasses.replace(m.labels, latency=latency_label(m, m.labels.latency)))

    def _gpu_latency(self, m: Measurement, cm: CompressedModel,
                     stop: Callable[[], bool] | None = None) -> Measurement:
        """Where CUDA is present, the GPU's latency beside the CPU's (after the CPU timing, never during it)."""
        name = cuda_device()
        if name is None:
            return m
        t0 = time.perf_counter()
        if self._gpu_base is None:  # a copy only: the baseline itself must stay on the CPU for its timings
            self._gpu_base = device_module(self.baseline, "cuda", move=False)[0]
        module, why = device_module(cm, "cuda")
        if module is None or self._gpu_base is None:
            release(cm, module)
            return dataclasses.replace(m, gpu=name, gpu_note=why or "not timed on the GPU: the baseline could "
                                                                      "not be moved there")
        try:
            timings = device_latency(module, self._gpu_base, self.tests, "cuda", stop)
            # a stand-in on the CPU (decoded low-bit weights) is the same stand-in on the GPU
            label = "simulated" if cm.latency_label == "simulated" else "measured"
            return m.with_timings(*timings, gpu=name, gpu_seconds=time.perf_counter() - t0,
                                  labels=dataclasses.replace(m.labels, gpu_latency=label))
        except Preempted:
            raise
        except Exception as e:  # a kernel with no CUDA path fails at the first call
            return dataclasses.replace(m, gpu=name, gpu_note=f"not timed on the GPU: {type(e).__name__}: "
                                                             f"{str(e)[:160]}")
        finally:
            release(cm, module)
            module = None
            torch.cuda.empty_cache()  # the copy's memory goes back once nothing holds it
