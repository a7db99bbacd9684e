"""Run one job: copy the baseline, compress it by the recipe, save the artifact, measure it.

A job's result moves through stages (:class:`Landed`): it lands with quality, size and batch-1
latency, then its batch-32 (and GPU) timing completes it. A newer request may preempt the second
stage (:class:`~compression.timing.Preempted`); the landed point stays as it was.

Example::

    >>> cm = compress(model, Recipe.parse("quant(bits=8)"), workload)   # model and workload untouched
    >>> landed = JobRunner.local(store, paths).run(job, progress, cancel)
    >>> measurement = landed.complete()
"""
from __future__ import annotations

import copy
import dataclasses
import platform
import shutil
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

import psutil
import torch

from . import baseline as baselines
from .artifacts import CompressedModel
from .config import Paths
from .measure import MeasureSession
from .measurement import Measurement, Seconds
from .registry import method_for
from .recipes import Recipe
from .store import Store
from .timing import Preempted
from .training import CancelToken, Progress
from .workload import Workload


class Yielding(CancelToken):
    """A prefetched setting's cancel token: besides the user's cancel, ``check()`` raises Preempted once
    ``stop()`` says a release is queued, so a compression that checks between layers (low rank's SVDs,
    SparseGPT) yields at once instead of finishing a setting nobody waits for."""

    def __init__(self, cancel: CancelToken, stop: Callable[[], bool]):
        super().__init__(sharing=cancel)  # the same flag: the heartbeat still cancels it
        self._stop = stop

    def check(self) -> None:
        super().check()
        if self._stop():
            raise Preempted("a newer setting is queued")


def compress(model: torch.nn.Module, recipe: Recipe, workload: Workload) -> CompressedModel:
    """Apply the recipe's steps in order to a deep copy of ``model``; neither input is changed."""
    current = CompressedModel.fp32(copy.deepcopy(model))
    notes: list[str] = []
    info: dict = {}
    for i, spec in enumerate(recipe.steps):
        workload.cancel.check()
        # the ONNX cache holds the untouched baseline only: later steps start from a changed model
        step_workload = workload if i == 0 else dataclasses.replace(workload, onnx_cache=None)
        workload.progress(i / max(1, len(recipe.steps)), f"step {i + 1}/{len(recipe.steps)}: {spec.short()}")
        given = current
        current = method_for(spec)(given.module, spec, step_workload)
        if current.module is given.module:  # an in-place step keeps the packed weights it did not repack
            current.packed = {**given.packed, **current.packed}
        notes += current.notes
        info.update(current.info)
    current.notes, current.info = notes, info
    if current.module is not None:
        current.module.eval()
    return current


class _PeakRss:
    """Samples this process's resident memory while a job runs (the job's peak, not the process's)."""

    def __init__(self, every: float = 0.05):
        self.every, self.peak, self._stop = every, 0, threading.Event()

    def __enter__(self):
        self._proc = psutil.Process()
        self.peak = self._proc.memory_info().rss
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


class Landed:
    """One job's result on its way through its stages: a preview (live knob only), landed (quality on the
    whole test split, size, batch 1), then complete (batch 32, and the GPU's timing where CUDA is present).

    ``measurement`` is the record as it stands; :meth:`complete` runs the stages that are left, handing each
    landing to ``on_landed``, and returns the whole record. If ``preempt()`` says so midway, it raises
    Preempted; the record stays at the last stage it reached, to be completed later.
    """

    def __init__(self, measurement: Measurement, cm: CompressedModel, session: MeasureSession, files: list[Path],
                 progress: Progress, cancel: CancelToken, peak_rss: int,
                 on_landed: Callable[[Measurement], None] | None = None):
        self.measurement, self._cm, self._session, self._files = measurement, cm, session, files
        self._progress, self._cancel, self._peak_rss = progress, cancel, peak_rss
        self._on_landed = on_landed

    @property
    def done(self) -> bool:
        return not self.measurement.partial

    def complete(self, preempt: Callable[[], bool] | None = None) -> Measurement:
        while not self.done:
            self._cancel.check()
            try:
                self._full(preempt) if self.measurement.preview else self._batch32(preempt)
            except Preempted:
                self._progress(0.9, "landed; the rest of its measurement waits for a newer setting")
                raise
        self._cm = None  # the model is no longer needed: a deferred job holds only its record
        return self.measurement

    def _full(self, preempt: Callable[[], bool] | None = None) -> None:
        """Replace the preview by the protocol's numbers: the whole test split and batch 1."""
        self._progress(0.9, "measuring accuracy on the whole test split and batch-1 latency")
        m = self.measurement
        with _PeakRss() as rss:
            t = time.perf_counter()
            what = {k: getattr(m, k) for k in ("recipe_name", "method", "description", "artifact")}
            full = self._session.measure(self._cm, self._files, batch32=False, stop=preempt, **what)
            secs = dataclasses.replace(m.seconds, measure=time.perf_counter() - t,
                                       total=(m.seconds.total or 0.0) + time.perf_counter() - t)
        self._peak_rss = max(self._peak_rss, rss.peak)
        self.measurement = dataclasses.replace(full, seconds=secs, node=m.node, peak_rss_mib=self._peak_rss / 2**20)
        if self._on_landed is not None:
            self._on_landed(self.measurement)

    def _batch32(self, preempt: Callable[[], bool] | None) -> None:
        self._progress(0.93, "measuring batch-32 latency")
        m = self.measurement
        with _PeakRss() as rss:
            t = time.perf_counter()
            m = self._session.add_batch32(m, self._cm, stop=preempt)
            b32 = time.perf_counter() - t
        secs = dataclasses.replace(m.seconds, measure_b32=b32, total_with_b32=(m.seconds.total or 0.0) + b32)
        self.measurement = dataclasses.replace(m, seconds=secs,
                                               peak_rss_mib=max(self._peak_rss, rss.peak) / 2**20)


class JobRunner:
    """One worker's session: loads each prepared baseline once, then runs jobs against it.

    ``locate(fingerprint)`` gives the prepared baseline's folder; ``on_landed(job_id, measurement)``
    receives each result's first landing. The local worker wires both to the store; a Ray task to its
    node's copy.
    """

    def __init__(self, paths: Paths, locate: Callable[[str], Path],
                 on_landed: Callable[[int, Measurement], None] | None = None):
        self.paths, self.locate, self.on_landed = paths, locate, on_landed
        self._cache: dict[str, tuple[baselines.Prepared, MeasureSession]] = {}

    @classmethod
    def local(cls, store: Store, paths: Paths) -> "JobRunner":
        return cls(paths, lambda fp: Path(store.baseline(fp)["path"]),
                   lambda job_id, m: store.add_partial(job_id, m.to_row()))

    def session(self, fp: str) -> tuple[baselines.Prepared, MeasureSession]:
        if fp not in self._cache:
            prepared = baselines.load_prepared(self.locate(fp))
            seed = prepared.info.get("seed", 0)
            ms = MeasureSession(CompressedModel.fp32(prepared.model), prepared.tokenizer, prepared.test, seed,
                                prepared.seq_len, cache=prepared.path / "cache")
            self._cache = {fp: (prepared, ms)}  # one baseline in memory at a time
        return self._cache[fp]

    @property
    def loaded(self) -> str | None:
        """The fingerprint of the baseline held in memory, if any."""
        return next(iter(self._cache), None)

    def warm(self, fp: str) -> bool:
        """Load ``fp``'s prepared baseline and its measurement session now, so the next job starts at once.

        True if it was loaded by this call. Also imports the int8 runtimes, whose first use costs a second."""
        if fp in self._cache:
            return False
        self.session(fp)
        import onnxruntime  # noqa: F401
        import torch.ao.quantization  # noqa: F401
        return True

    def prepare(self, store: Store, job: dict, progress: Progress, cancel: CancelToken) -> None:
        """A preparation job: fine-tune the baseline once (on the driver, next to the store)."""
        baselines.prepare(store, self.paths, job["baseline"], progress, cancel)
        self._cache.pop(job["baseline"], None)

    def run(self, job: dict, progress: Progress, cancel: CancelToken, preview: bool = False,
            stop: Callable[[], bool] | None = None) -> Landed:
        """Run a claimed job up to its first landing (handed to ``on_landed``); ``complete()`` finishes it.

        With ``preview`` the first landing is the preview tier (a fixed sample of the test split, a short
        batch-1 timing): what the live knob shows within seconds. ``stop()`` true raises Preempted before the
        first landing (a prefetched setting yields to a release; nothing of it is stored)."""
        t0 = time.perf_counter()
        recipe = Recipe.from_key(job["recipe"])
        with _PeakRss() as rss:
            prepared, ms = self.session(job["baseline"])
            t1 = time.perf_counter()
            out = self.paths.artifacts / str(job["id"])
            scratch = self.paths.artifacts / f"{job['id']}.work"
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(parents=True)
            workload = Workload(prepared.tokenizer, prepared.train, prepared.val, prepared.info["label_names"],
                                seq_len=prepared.seq_len, seed=ms.seed, progress=progress,
                                cancel=cancel if stop is None else Yielding(cancel, stop),
                                teacher=prepared.model, scratch=scratch,
                                onnx_cache=prepared.path / "onnx" / "fp32.onnx")
            cm = compress(prepared.model, recipe, workload)
            t2 = time.perf_counter()
            cancel.check()
            progress(0.8, "saving the artifact")
            shutil.rmtree(out, ignore_errors=True)
            files = cm.save(out)
            shutil.rmtree(scratch, ignore_errors=True)
            t3 = time.perf_counter()
            progress(0.85, "a preview: accuracy on a sample, a short batch-1 timing" if preview
                     else "measuring accuracy and batch-1 latency")
            what = dict(recipe_name=recipe.name, method=recipe.method, description=recipe.describe(),
                        artifact=str(out))
            if stop is not None and stop():
                raise Preempted("a newer setting is queued")
            m = ms.preview(cm, files, **what) if preview else ms.measure(cm, files, batch32=False, stop=stop, **what)
            t4 = time.perf_counter()
        m = dataclasses.replace(m, peak_rss_mib=rss.peak / 2**20, node=platform.node(),
                                seconds=Seconds(load=t1 - t0, compress=t2 - t1, save=t3 - t2, measure=t4 - t3,
                                                total=t4 - t0))
        on_landed = None if self.on_landed is None else (lambda landed: self.on_landed(job["id"], landed))
        if on_landed is not None:
            on_landed(m)  # the point lands now; the rest of its measurement follows
        progress(0.9, "landed; the rest of its measurement follows")
        return Landed(m, cm, ms, files, progress, cancel, rss.peak, on_landed)


def format_error(e: BaseException) -> tuple[str, str]:
    """A one-line error for tables, and the full traceback for the details view."""
    msg = f"{type(e).__name__}: {e}".strip()
    return msg.splitlines()[0][:500] if msg else type(e).__name__, traceback.format_exc()
