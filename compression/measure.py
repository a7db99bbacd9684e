"""Measurement: quality on the held-out test split, size on disk, interleaved latency; each number labelled.

This is the only module that reads the test split. Labels:
- ``measured``: the artifact's own numerics / timed on the kernel a deployment would use here;
- ``simulated``: timed on a stand-in path because no real kernel exists here (the kernel field says which);
- ``contended``: timed while other processes used the CPU (left off the frontier);
- ``estimated``: not timed at all.

Where CUDA is present, batch-1 and batch-32 latency are timed on the GPU too (``gpu_*`` fields, with
their own label); a runtime with no CUDA kernel (ONNX Runtime's CPU provider, fbgemm int8) gets a
``gpu_note`` saying so instead of a number.

Example::

    >>> session = MeasureSession(baseline_cm, workload.tokenizer, test_df)
    >>> row = session.measure(candidate_cm, artifact_files)
"""
from __future__ import annotations

import functools
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import psutil
import torch

from . import config
from .artifacts import CompressedModel, count_params, weight_bytes

SEQ_LEN = 64  # latency inputs are real test sentences padded to this fixed length
EVAL_BATCH = 64
B1_WARMUP, B1_REPS = 10, 30
B32_WARMUP, B32_REPS = 3, 10
BOOTSTRAP = 1000
GPU_WARMUP_S = 0.5  # on a GPU, warm up for at least this long too: an idle card's clocks ramp up under load
CONTENTION_CORES = 0.25  # other processes using more than this many cores make a timing "contended"


def set_threads() -> None:
    """The protocol's threads: torch 2 intra-op and 1 inter-op (once per process)."""
    torch.set_num_threads(config.threads())
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already started in this process
        pass


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

    def logits(self, cm: CompressedModel) -> np.ndarray:
        out = np.concatenate([cm.predict(b) for b in self.batches])
        back = np.empty_like(out)
        back[self.order] = out
        return back


def _pct(a, q) -> float:
    return float(np.percentile(np.asarray(a), q))


def quality(pred: np.ndarray, y: np.ndarray, base_pred: np.ndarray | None, seed: int = 0) -> dict:
    """Accuracy and macro-F1 with bootstrap 95% CIs, and the paired change against the baseline."""
    from sklearn.metrics import f1_score

    n = len(y)
    correct = (pred == y).astype(np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(BOOTSTRAP, n))
    boot = correct[idx].mean(axis=1)
    out = {"accuracy": float(correct.mean()), "accuracy_lo": _pct(boot, 2.5), "accuracy_hi": _pct(boot, 97.5),
           "macro_f1": float(f1_score(y, pred, average="macro")), "test_rows": int(n)}
    if base_pred is not None:
        base_correct = (base_pred == y).astype(np.float64)
        diff = correct - base_correct
        dboot = diff[idx].mean(axis=1)
        out.update(accuracy_delta=float(diff.mean()), delta_lo=_pct(dboot, 2.5), delta_hi=_pct(dboot, 97.5),
                   agreement=float((pred == base_pred).mean()))
    return out


def _timed(cm: CompressedModel, x: dict) -> float:
    t = time.perf_counter()
    cm.predict(x)
    return (time.perf_counter() - t) * 1e3


class _CpuWatch:
    """How many cores other processes used while we timed: a timing under contention is not clean."""

    def __enter__(self):
        self.proc = psutil.Process()
        self.t0, self.sys0, self.own0 = time.perf_counter(), _busy(psutil.cpu_times()), _own(self.proc)
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t0
        other = (_busy(psutil.cpu_times()) - self.sys0) - (_own(self.proc) - self.own0)
        self.other_cores = max(0.0, other / wall) if wall > 0 else 0.0


def _busy(t) -> float:
    return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def _own(p: psutil.Process) -> float:
    c = p.cpu_times()
    return c.user + c.system


class Preempted(Exception):
    """A timing was abandoned because more urgent work arrived; nothing of it is kept."""


def _check(stop: Callable[[], bool] | None, tag: str) -> None:
    if stop is not None and stop():
        raise Preempted(tag)


def _pairs(time_cand: Callable[[dict], float], time_base: Callable[[dict], float], xs: list[dict], warm: int,
           reps: int, stop: Callable[[], bool] | None, tag: str, warm_s: float = 0.0) -> tuple[list, list, float]:
    """The protocol's loop, shared by the CPU and the GPU: at least ``warm`` warm-up pairs (lasting at least
    ``warm_s``), then ``reps`` timed pairs, candidate and baseline alternately on the same inputs. ``stop()``
    is asked between pairs. Returns both lists of ms and the cores other processes used while timing."""
    t0, i = time.perf_counter(), 0
    while i < warm or time.perf_counter() - t0 < warm_s:
        _check(stop, tag)
        time_cand(xs[i % len(xs)])
        time_base(xs[i % len(xs)])
        i += 1
    c, b = [], []
    with _CpuWatch() as w:
        for i in range(reps):
            _check(stop, tag)
            x = xs[i % len(xs)]
            c.append(time_cand(x))
            b.append(time_base(x))
    return c, b, w.other_cores


def _ratio(c: list, b: list) -> tuple[float, float, float, float]:
    """Candidate and baseline medians, the ratio baseline/candidate, and the baseline's own run-to-run spread."""
    cp50, bp50 = _pct(c, 50), _pct(b, 50)
    return cp50, bp50, bp50 / cp50, (_pct(b, 90) - _pct(b, 10)) / 2 / bp50


def interleaved_latency(cand: CompressedModel, base: CompressedModel, ts: TestSet,
                        batches: tuple[str, ...] = ("b1", "b32"), stop: Callable[[], bool] | None = None) -> dict:
    """Time candidate and baseline alternately on the same inputs; medians, p90s and ratios.

    The ratio is to the baseline timed in this same session, never to a stored number. ``stop()`` is
    asked between pairs (outside the timed calls); when it says yes the timing is abandoned whole
    (Preempted), to be run again from its warm-up later.
    """
    out: dict = {}
    plans = {"b1": (ts.b1, B1_WARMUP, B1_REPS), "b32": ([ts.b32], B32_WARMUP, B32_REPS)}
    for tag in batches:
        c, b, other = _pairs(lambda x: _timed(cand, x), lambda x: _timed(base, x), *plans[tag], stop, tag)
        cp50, bp50, ratio, spread = _ratio(c, b)
        contended = other > CONTENTION_CORES
        out.update({f"lat_{tag}_p50_ms": cp50, f"lat_{tag}_p90_ms": _pct(c, 90),
                    f"base_lat_{tag}_p50_ms": bp50, f"base_lat_{tag}_p90_ms": _pct(b, 90),
                    f"speedup_{tag}": ratio, f"speedup_{tag}_spread": spread,
                    f"other_cores_{tag}": round(other, 3),
                    f"speedup_{tag}_note": ("not comparable: other work used the CPU while timing" if contended
                                            else _ratio_note(ratio, spread))})
    return out


def cuda_device() -> str | None:
    """The CUDA device latency is also timed on, by name; None on a CPU-only machine (the default)."""
    if os.environ.get("COMPRESSION_NO_CUDA") == "1" or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0)


def _sync(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def device_module(cm: CompressedModel, device: str, move: bool = True) -> tuple[torch.nn.Module | None, str]:
    """The candidate's torch module on ``device``, or None and, in plain words, why it cannot run there.

    Usually a copy. A module that cannot be copied (quanto's tensor subclasses) is moved itself, unless
    ``move`` is False; then :func:`release` moves it back, so the CPU timings that may follow (a deferred
    batch 32) see it unchanged.
    """
    if cm.module is None:
        return None, f"not timed on the GPU: {cm.runtime} runs it on its CPU provider here"
    if cm.kind == "int8-dynamic":
        return None, "not timed on the GPU: torch's dynamic int8 (fbgemm) is a CPU kernel with no CUDA version"
    try:
        import copy

        return copy.deepcopy(cm.module).to(device).eval(), ""
    except Exception as e:
        if not move:
            return None, f"not timed on the GPU: it could not be copied there ({type(e).__name__})"
    try:
        return cm.module.to(device).eval(), ""
    except Exception as e:  # e.g. a packed format with no device version
        release(cm, cm.module)
        return None, f"not timed on the GPU: it could not be moved there ({type(e).__name__}: {str(e)[:120]})"


def release(cm: CompressedModel, module: torch.nn.Module | None) -> None:
    """Undo :func:`device_module` for a module moved itself: bring it back to the CPU (a copy is just dropped)."""
    if module is not None and module is cm.module:
        cm.module.to("cpu")


def device_latency(cand: torch.nn.Module, base: torch.nn.Module, ts: "TestSet", device: str,
                   stop: Callable[[], bool] | None = None) -> dict:
    """Batch-1 and batch-32 latency of two torch modules on ``device``, timed alternately like on the CPU.

    Each call is bracketed by a device synchronize, so the time is the forward pass's, not its launch's.
    The fields are ``gpu_*``: on a CUDA machine this is the GPU's column beside the CPU's. ``stop()`` is
    asked between pairs, as on the CPU (Preempted).
    """
    sync = _sync(device)
    move = lambda x: {k: v.to(device) for k, v in x.items()}  # noqa: E731
    plans = {"b1": ([move(x) for x in ts.b1], B1_WARMUP, B1_REPS), "b32": ([move(ts.b32)], B32_WARMUP, B32_REPS)}

    def timed(m, x) -> float:
        sync()
        t = time.perf_counter()
        m(**x)
        sync()
        return (time.perf_counter() - t) * 1e3

    warm_s = GPU_WARMUP_S if device.startswith("cuda") else 0.0
    out: dict = {}
    with torch.no_grad():  # not inference_mode: quanto's modules need no_grad
        for tag, plan in plans.items():
            c, b, _ = _pairs(lambda x: timed(cand, x), lambda x: timed(base, x), *plan, stop, f"gpu {tag}", warm_s)
            cp50, bp50, ratio, spread = _ratio(c, b)
            out.update({f"gpu_lat_{tag}_p50_ms": cp50, f"gpu_lat_{tag}_p90_ms": _pct(c, 90),
                        f"gpu_base_lat_{tag}_p50_ms": bp50, f"gpu_speedup_{tag}": ratio,
                        f"gpu_speedup_{tag}_note": _ratio_note(ratio, spread)})
    return out


def _ratio_note(ratio: float, spread: float) -> str:
    if abs(ratio - 1) <= spread:
        return "no measurable change"
    return f"{ratio:.2f}x faster" if ratio > 1 else f"{1 / ratio:.2f}x slower"


@functools.lru_cache(maxsize=1)
def _static_context() -> dict:
    import transformers

    try:
        import onnxruntime
        ort = onnxruntime.__version__
    except ImportError:
        ort = None
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"torch": torch.__version__, "transformers": transformers.__version__, "onnxruntime": ort,
            "cpu": cpu, "host": platform.node(), "git_commit": commit, "python": platform.python_version()}


def context(seed: int) -> dict:
    """What a measurement depends on, recorded with every result."""
    return {**_static_context(), "threads_intra": torch.get_num_threads(),
            "threads_inter": torch.get_num_interop_threads(), "seq_len": SEQ_LEN, "seed": seed,
            "load_avg_1m": round(os.getloadavg()[0], 2), "hardware": config.hardware_id()}


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


class MeasureSession:
    """Holds the baseline for one worker session: its test predictions and its live latency twin."""

    def __init__(self, baseline: CompressedModel, tokenizer, test: pd.DataFrame, seed: int = 0):
        set_threads()
        self.baseline = baseline
        self.seed = seed
        self.tests = TestSet(tokenizer, test)
        self.base_logits = self.tests.logits(baseline)
        self.base_pred = self.base_logits.argmax(1)
        self._gpu_base: torch.nn.Module | None = None  # the baseline's copy on the GPU, made on first use

    def measure(self, cm: CompressedModel, files: list[Path], batch32: bool = True) -> dict:
        """All numbers for one compressed model, each with its label.

        With ``batch32=False`` the row is a quick first landing (quality, size, batch-1 latency);
        :meth:`add_batch32` completes it (batch 32, and the GPU's timings where CUDA is present).
        """
        logits = self.tests.logits(cm)
        pred = logits.argmax(1)
        row = quality(pred, self.tests.y, self.base_pred, self.seed)
        size = weight_bytes(files)
        row.update(size_bytes=size, size_mib=size / 2**20)
        if cm.module is not None:
            params, nonzero = count_params(cm.module)
        else:
            params, nonzero = cm.info.get("params"), cm.info.get("nonzero_params")
        row.update(params=params, nonzero_params=nonzero,
                   bits_per_weight=(8 * size / params) if params else None)
        row["labels"] = {"accuracy": "measured", "f1": "measured", "size": "measured",
                         "params": "measured" if params else "estimated", "latency": cm.latency_label}
        row["runtime"], row["kernel"] = cm.runtime, cm.kernel
        row["notes"], row["info"] = cm.notes, cm.info
        row["predictions"] = pred.astype(int).tolist()  # for the flip table and the playground
        row["context"] = context(self.seed)
        self._latency(row, cm, ("b1", "b32") if batch32 else ("b1",))
        if batch32:
            self._gpu_latency(row, cm)
        return row

    def _gpu_latency(self, row: dict, cm: CompressedModel, stop: Callable[[], bool] | None = None) -> None:
        """Where CUDA is present, the GPU's latency beside the CPU's (after the CPU timing, never during it)."""
        name = cuda_device()
        if name is None:
            return
        t0 = time.perf_counter()
        if self._gpu_base is None:  # a copy only: the baseline itself must stay on the CPU for its timings
            self._gpu_base = device_module(self.baseline, "cuda", move=False)[0]
        module, why = device_module(cm, "cuda")
        row["gpu"] = name
        if module is None or self._gpu_base is None:
            release(cm, module)
            row["gpu_note"] = why or "not timed on the GPU: the baseline could not be moved there"
            return
        try:
            row.update(device_latency(module, self._gpu_base, self.tests, "cuda", stop))
            # a stand-in on the CPU (decoded low-bit weights) is the same stand-in on the GPU
            row["labels"]["gpu_latency"] = "simulated" if cm.latency_label == "simulated" else "measured"
            row["gpu_seconds"] = time.perf_counter() - t0
        except Preempted:
            raise
        except Exception as e:  # a kernel with no CUDA path fails at the first call
            row["gpu_note"] = f"not timed on the GPU: {type(e).__name__}: {str(e)[:160]}"
        finally:
            release(cm, module)
            module = None
            torch.cuda.empty_cache()  # the copy's memory goes back once nothing holds it

    def add_batch32(self, row: dict, cm: CompressedModel, stop: Callable[[], bool] | None = None) -> dict:
        """Complete a first landing with its batch-32 timing, and the GPU's where CUDA is present
        (Preempted, row untouched, if ``stop()`` says so)."""
        done = {**row, "labels": dict(row["labels"])}  # filled apart, so a preempted timing leaves ``row`` as it was
        self._latency(done, cm, ("b32",), stop)
        self._gpu_latency(done, cm, stop)
        row.update(done)
        return row

    def _latency(self, row: dict, cm: CompressedModel, batches: tuple[str, ...],
                 stop: Callable[[], bool] | None = None) -> None:
        row.update(interleaved_latency(cm, self.baseline, self.tests, batches, stop))
        row["other_cores_during_timing"] = max(row.get(f"other_cores_{t}", 0.0) for t in ("b1", "b32"))
        if row["other_cores_during_timing"] > CONTENTION_CORES:
            row["labels"]["latency"] = "contended"
        row["partial"] = "lat_b32_p50_ms" not in row
