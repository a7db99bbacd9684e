"""The latency protocol: candidate and baseline timed alternately on the same inputs, in one session.

The CPU's and the GPU's timings share one loop (:func:`_pairs`) and one ratio. A timing taken while
other processes used the CPU is flagged (``Timing.other_cores``), and ``stop()`` is asked between
pairs so that more urgent work can preempt a timing, which is then abandoned whole (:class:`Preempted`).

Example::

    >>> b1, b32 = interleaved_latency(candidate_cm, baseline_cm, test_set)
    >>> b1.speedup, b1.note
    (1.42, '1.42x faster')
"""
from __future__ import annotations

import copy
import os
import time
from typing import Callable

import numpy as np
import psutil
import torch

from . import config
from .artifacts import CompressedModel
from .measurement import Timing

B1_WARMUP, B1_REPS = 10, 30
B32_WARMUP, B32_REPS = 3, 10
GPU_WARMUP_S = 0.5  # on a GPU, warm up for at least this long too: an idle card's clocks ramp up under load
CONTENTION_CORES = 0.25  # other processes using more than this many cores make a timing "contended"


class Preempted(Exception):
    """A timing was abandoned because more urgent work arrived; nothing of it is kept."""


def set_threads() -> None:
    """The protocol's threads: torch 2 intra-op and 1 inter-op (once per process)."""
    torch.set_num_threads(config.threads())
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already started in this process
        pass


def pct(a, q) -> float:
    return float(np.percentile(np.asarray(a), q))


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


def _check(stop: Callable[[], bool] | None, tag: str) -> None:
    if stop is not None and stop():
        raise Preempted(tag)


def _pairs(time_cand: Callable[[dict], float], time_base: Callable[[dict], float], xs: list[dict], warm: int,
           reps: int, stop: Callable[[], bool] | None, tag: str, warm_s: float = 0.0) -> tuple[list, list, float]:
    """At least ``warm`` warm-up pairs (lasting at least ``warm_s``), then ``reps`` timed pairs, candidate and
    baseline alternately on the same inputs. Returns both lists of ms and the cores other processes used."""
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


def _timing(device: str, batch: int, c: list, b: list, other: float | None) -> Timing:
    """Medians, p90s, the ratio baseline/candidate and the baseline's own run-to-run spread."""
    cp50, bp50 = pct(c, 50), pct(b, 50)
    ratio, spread = bp50 / cp50, (pct(b, 90) - pct(b, 10)) / 2 / bp50
    contended = other is not None and other > CONTENTION_CORES
    note = "not comparable: other work used the CPU while timing" if contended else _ratio_note(ratio, spread)
    return Timing(device, batch, p50_ms=cp50, p90_ms=pct(c, 90), base_p50_ms=bp50, base_p90_ms=pct(b, 90),
                  speedup=ratio, note=note, spread=spread,
                  other_cores=None if other is None else round(other, 3))


def _ratio_note(ratio: float, spread: float) -> str:
    if abs(ratio - 1) <= spread:
        return "no measurable change"
    return f"{ratio:.2f}x faster" if ratio > 1 else f"{1 / ratio:.2f}x slower"


def _plans(ts, move=lambda x: x) -> dict[int, tuple[list[dict], int, int]]:
    """Batch size -> (inputs, warm-up pairs, timed pairs)."""
    return {1: ([move(x) for x in ts.b1], B1_WARMUP, B1_REPS), 32: ([move(ts.b32)], B32_WARMUP, B32_REPS)}


def interleaved_latency(cand: CompressedModel, base: CompressedModel, ts, batches: tuple[int, ...] = (1, 32),
                        stop: Callable[[], bool] | None = None,
                        reps: dict[int, tuple[int, int]] | None = None) -> list[Timing]:
    """Time candidate and baseline alternately on the CPU; one Timing per batch size.

    The ratio is to the baseline timed in this same session, never to a stored number. ``stop()`` is
    asked between pairs (outside the timed calls); when it says yes the timing is abandoned whole
    (Preempted), to be run again from its warm-up later.
    """
    def timed(cm: CompressedModel, x: dict) -> float:
        t = time.perf_counter()
        cm.predict(x)
        return (time.perf_counter() - t) * 1e3

    plans = _plans(ts)
    out = []
    for batch in batches:
        xs, warm, timed_reps = plans[batch]
        warm, timed_reps = (reps or {}).get(batch, (warm, timed_reps))  # fewer runs for a preview, never more
        c, b, other = _pairs(lambda x: timed(cand, x), lambda x: timed(base, x), xs, warm, timed_reps, stop,
                             f"b{batch}")
        out.append(_timing("cpu", batch, c, b, other))
    return out


def cuda_device() -> str | None:
    """The CUDA device latency is also timed on, by name; None on a CPU-only machine (the default)."""
    if os.environ.get("COMPRESSION_NO_CUDA") == "1" or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0)


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


def device_latency(cand: torch.nn.Module, base: torch.nn.Module, ts, device: str,
                   stop: Callable[[], bool] | None = None) -> list[Timing]:
    """Batch-1 and batch-32 latency of two torch modules on ``device``, timed alternately like on the CPU.

    Each call is bracketed by a device synchronize, so the time is the forward pass's, not its launch's.
    The Timings are the GPU's column (device "gpu") beside the CPU's. ``stop()`` is asked between pairs,
    as on the CPU (Preempted).
    """
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def timed(m, x) -> float:
        sync()
        t = time.perf_counter()
        m(**x)
        sync()
        return (time.perf_counter() - t) * 1e3

    warm_s = GPU_WARMUP_S if device.startswith("cuda") else 0.0
    out = []
    with torch.no_grad():  # not inference_mode: quanto's modules need no_grad
        for batch, plan in _plans(ts, lambda x: {k: v.to(device) for k, v in x.items()}).items():
            c, b, _ = _pairs(lambda x: timed(cand, x), lambda x: timed(base, x), *plan, stop, f"gpu b{batch}", warm_s)
            out.append(_timing("gpu", batch, c, b, None))
    return out
