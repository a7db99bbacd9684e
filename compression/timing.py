"""The latency protocol: candidate and baseline timed alternately on the same inputs, in one session.

On the CPU each runtime keeps its own thread behaviour (ONNX Runtime's spinning included): they alternate
in blocks with a pause between blocks until the other's threads sleep, and the baseline is also timed
alone; where its interleaved median is not within noise of its solo median the timing is not comparable
(``Timing.base_clean`` False, labelled contended). The GPU's timings alternate single synchronized calls
(:func:`_pairs`); both share one ratio. A timing taken while
other processes used the CPU is flagged (``Timing.other_cores``), and ``stop()`` is asked between
pairs so that more urgent work can preempt a timing, which is then abandoned whole (:class:`Preempted`).

Example::

    >>> b1, b32 = interleaved_latency(candidate_cm, baseline_cm, test_set)
    >>> b1.speedup, b1.note
    (1.42, '1.42x faster')
"""
from __future__ import annotations

import contextlib
import copy
import os
import threading
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
BLOCK = {1: 10, 32: 2}  # runs per block: each runtime runs a few times in a row, as it would deployed
SETTLE_WINDOW_S, SETTLE_IDLE_CORES, SETTLE_MAX_S = 0.005, 0.15, 0.5  # see settle()
BASE_NOISE_FLOOR = 0.03  # a baseline drift below 3% is noise however steady its runs
SOLO_FRESH_S = 60.0  # the baseline's solo runs are reused this long within a worker session (interleaved_latency)


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
    baseline alternately on the same inputs. Returns both lists of ms and the cores other processes used.
    (The GPU's protocol: a device synchronize brackets each call, so nothing of one run spills into the next.)"""
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


def _thread_cpu_ns() -> int | None:
    """CPU time of this process's threads but the calling one, in ns (Linux's per-thread schedstat); None
    elsewhere. The caller is left out because it is the one reading: with 30 threads the reading alone took
    2.7 ms of CPU on an AMD EPYC of the first Zen generation, more than settle()'s idle threshold, so counting
    it made every settle() wait its full SETTLE_MAX_S."""
    total, me = 0, str(threading.get_native_id())
    try:
        for t in os.listdir("/proc/self/task"):
            if t == me:
                continue
            with contextlib.suppress(OSError):
                with open(f"/proc/self/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
    except OSError:
        return None
    return total


def settle() -> float:
    """Wait until the threads of the runtime that just ran are asleep; returns the seconds waited.

    ONNX Runtime's idle threads spin after each run (its default, kept as deployed): about 60 ms on the
    default model here, against about 5 ms for torch's. So between blocks this waits until this process
    has used less than SETTLE_IDLE_CORES for one SETTLE_WINDOW_S, at most SETTLE_MAX_S; where per-thread CPU
    time cannot be read, it waits SETTLE_MAX_S / 3.
    """
    t0 = time.perf_counter()
    before = _thread_cpu_ns()
    if before is None:
        time.sleep(SETTLE_MAX_S / 3)
        return time.perf_counter() - t0
    while time.perf_counter() - t0 < SETTLE_MAX_S:
        time.sleep(SETTLE_WINDOW_S)
        now = _thread_cpu_ns() or before
        if (now - before) / 1e9 < SETTLE_IDLE_CORES * SETTLE_WINDOW_S:
            break
        before = now
    return time.perf_counter() - t0


def _blocks(time_cand: Callable[[dict], float], time_base: Callable[[dict], float], xs: list[dict], warm: int,
            reps: int, block: int, stop: Callable[[], bool] | None, tag: str,
            solo_known: list | None = None) -> tuple[list, list, list, float]:
    """The CPU protocol (ARCHITECTURE: runtimes as deployed): blocks of ``block`` runs, never single runs,
    with a :func:`settle` before every block, so one runtime's spinning threads never overlap the other's runs.

    Warm-up blocks of both, then the baseline alone for half its solo runs, candidate and baseline blocks
    alternately (``reps`` each), then the rest of the solo runs (solo before and after, so a drift in the
    machine's speed lands on both sides). With ``solo_known`` (the session's solo runs of the baseline, taken
    moments ago: see interleaved_latency) the solo runs are not repeated. Returns the candidate's, the
    interleaved baseline's and the solo baseline's ms, and the cores other processes used while timing.
    """
    def run(fn, start: int, n: int, out: list | None) -> None:
        settle()
        for i in range(start, start + n):
            _check(stop, tag)
            ms = fn(xs[i % len(xs)])
            if out is not None:
                out.append(ms)

    for i in range(0, warm, block):
        run(time_cand, i, min(block, warm - i), None)
        run(time_base, i, min(block, warm - i), None)
    c, b, solo = [], [], []
    half = 0 if solo_known else (reps + 1) // 2
    with _CpuWatch() as w:
        for i in range(0, half, block):
            run(time_base, i, min(block, half - i), solo)
        for i in range(0, reps, block):
            run(time_cand, i, min(block, reps - i), c)
            run(time_base, i, min(block, reps - i), b)
        for i in range(half, reps if not solo_known else 0, block):
            run(time_base, i, min(block, reps - i), solo)
    return c, b, solo or list(solo_known or ()), w.other_cores


def baseline_check(solo: list[float], interleaved: list[float]) -> tuple[bool, float, float]:
    """Whether the baseline's interleaved median is within noise of its solo median: (clean, drift, noise).

    ``drift`` is interleaved / solo - 1; ``noise`` is the solo runs' own half-spread ((p90 - p10) / 2 over
    the median), at least BASE_NOISE_FLOOR. A baseline slowed (or sped up) beside the candidate by more than
    that means the candidate's runtime disturbed it, and the ratio is not to be trusted.
    """
    sp50 = pct(solo, 50)
    drift = pct(interleaved, 50) / sp50 - 1
    noise = max(BASE_NOISE_FLOOR, (pct(solo, 90) - pct(solo, 10)) / 2 / sp50)
    return abs(drift) <= noise, drift, noise


def _timing(device: str, batch: int, c: list, b: list, other: float | None, solo: list | None = None) -> Timing:
    """Medians, p90s, the ratio baseline/candidate and the baseline's own run-to-run spread; with ``solo``,
    the baseline's solo median and whether its interleaved one matches it (:func:`baseline_check`)."""
    cp50, bp50 = pct(c, 50), pct(b, 50)
    ratio, spread = bp50 / cp50, (pct(b, 90) - pct(b, 10)) / 2 / bp50
    clean, drift, _ = baseline_check(solo, b) if solo else (None, 0.0, 0.0)
    contended = other is not None and other > CONTENTION_CORES
    if contended:
        note = "not comparable: other work used the CPU while timing"
    elif clean is False:
        note = (f"not comparable: the baseline ran {abs(drift):.0%} {'slower' if drift > 0 else 'faster'} "
                "beside it than alone")
    else:
        note = _ratio_note(ratio, spread)
    return Timing(device, batch, p50_ms=cp50, p90_ms=pct(c, 90), base_p50_ms=bp50, base_p90_ms=pct(b, 90),
                  speedup=ratio, note=note, spread=spread,
                  other_cores=None if other is None else round(other, 3),
                  base_solo_p50_ms=pct(solo, 50) if solo else None, base_clean=clean)


def _ratio_note(ratio: float, spread: float) -> str:
    if abs(ratio - 1) <= spread:
        return "no measurable change"
    return f"{ratio:.2f}x faster" if ratio > 1 else f"{1 / ratio:.2f}x slower"


def _plans(ts, move=lambda x: x) -> dict[int, tuple[list[dict], int, int]]:
    """Batch size -> (inputs, warm-up pairs, timed pairs)."""
    return {1: ([move(x) for x in ts.b1], B1_WARMUP, B1_REPS), 32: ([move(ts.b32)], B32_WARMUP, B32_REPS)}


def interleaved_latency(cand: CompressedModel, base: CompressedModel, ts, batches: tuple[int, ...] = (1, 32),
                        stop: Callable[[], bool] | None = None,
                        reps: dict[int, tuple[int, int]] | None = None,
                        solo: dict[int, tuple[float, list]] | None = None) -> list[Timing]:
    """Time candidate and baseline in alternating blocks on the CPU (:func:`_blocks`); one Timing per batch size.

    The ratio is to the baseline timed in this same session, never to a stored number; the baseline is also
    timed alone, and a ratio whose baseline ran otherwise beside the candidate is not comparable. ``stop()`` is
    asked between pairs (outside the timed calls); when it says yes the timing is abandoned whole
    (Preempted), to be run again from its warm-up later.

    ``solo`` is the worker session's cache of the baseline's solo runs (batch -> (when, ms)): runs taken in
    the last SOLO_FRESH_S seconds, at least as many as this timing would take, are reused (issue 12: the
    baseline's solo timing is cached per session), older ones are timed again and replace them. The
    interleaved baseline is always timed beside this candidate.
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
        at, known = (solo or {}).get(batch, (float("-inf"), []))
        fresh = known if time.monotonic() - at < SOLO_FRESH_S and len(known) >= timed_reps else None
        c, b, alone, other = _blocks(lambda x: timed(cand, x), lambda x: timed(base, x), xs, warm, timed_reps,
                                     BLOCK[batch], stop, f"b{batch}", fresh)
        if solo is not None and fresh is None and other <= CONTENTION_CORES:  # a contended solo is no reference
            solo[batch] = (time.monotonic(), alone)
        out.append(_timing("cpu", batch, c, b, other, alone))
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
