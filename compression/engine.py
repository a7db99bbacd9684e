"""Run one job: copy the baseline, compress it by the recipe, save the artifact, measure it.

Example::

    >>> cm = compress(model, Recipe.parse("quant(bits=8)"), workload)   # model is left untouched
    >>> session = JobRunner(store, paths)
    >>> row = session.run(job, progress, cancel)
"""
from __future__ import annotations

import copy
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
from .measure import MeasureSession, Preempted
from .registry import method_for
from .recipes import Recipe
from .store import PREPARE, Store
from .training import CancelToken, Progress
from .workload import Workload


def compress(model: torch.nn.Module, recipe: Recipe, workload: Workload) -> CompressedModel:
    """Apply the recipe's steps in order to a deep copy of ``model``; the input is never changed."""
    current = CompressedModel.fp32(copy.deepcopy(model))
    notes: list[str] = []
    info: dict = {}
    cache = workload.onnx_cache
    for i, spec in enumerate(recipe.steps):
        workload.cancel.check()
        workload.onnx_cache = cache if i == 0 else None  # the cache holds the untouched baseline only
        workload.progress(i / max(1, len(recipe.steps)), f"step {i + 1}/{len(recipe.steps)}: {spec.short()}")
        current = method_for(spec)(current.module, spec, workload)
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


class JobRunner:
    """One worker's session: loads each prepared baseline once, then runs jobs against it.

    ``locate(fingerprint)`` gives the prepared baseline's folder; ``on_partial(job_id, row)`` receives
    a row's first landing. The local worker wires both to the store; a Ray task to its node's copy.
    """

    def __init__(self, paths: Paths, locate: Callable[[str], Path], on_partial: Callable | None = None,
                 store: Store | None = None):
        self.paths, self.locate, self.on_partial, self.store = paths, locate, on_partial, store
        self._cache: dict[str, tuple[baselines.Prepared, MeasureSession]] = {}

    @classmethod
    def local(cls, store: Store, paths: Paths) -> "JobRunner":
        return cls(paths, lambda fp: Path(store.baseline(fp)["path"]), store.add_partial, store)

    def session(self, fp: str) -> tuple[baselines.Prepared, MeasureSession]:
        if fp not in self._cache:
            prepared = baselines.load_prepared(self.locate(fp))
            seed = prepared.info.get("seed", 0)
            ms = MeasureSession(CompressedModel.fp32(prepared.model), prepared.tokenizer, prepared.test, seed)
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

    def run(self, job: dict, progress: Progress, cancel: CancelToken,
            defer_batch32: bool = False) -> dict | None | Callable[[], dict]:
        """Run a claimed job; returns the result row (None for a preparation job).

        With ``defer_batch32`` it returns once the point has landed (through ``on_partial``) with a
        function that times batch 32 and returns the whole row, so a worker can run a live-knob setting
        queued meanwhile first. The deferred timing is still interleaved with this session's baseline."""
        if job["recipe"] == PREPARE:
            if self.store is None:
                raise RuntimeError("baseline preparation runs on the driver, next to the store")
            baselines.prepare(self.store, self.paths, job["baseline"], progress, cancel)
            self._cache.pop(job["baseline"], None)
            return None
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
                                seed=ms.seed, progress=progress, cancel=cancel, teacher=prepared.model,
                                scratch=scratch, onnx_cache=prepared.path / "onnx" / "fp32.onnx")
            cm = compress(prepared.model, recipe, workload)
            t2 = time.perf_counter()
            cancel.check()
            progress(0.8, "saving the artifact")
            shutil.rmtree(out, ignore_errors=True)
            files = cm.save(out)
            shutil.rmtree(scratch, ignore_errors=True)
            t3 = time.perf_counter()
            progress(0.85, "measuring accuracy and batch-1 latency")
            row = ms.measure(cm, files, batch32=False)
            t4 = time.perf_counter()
        row.update(recipe_name=recipe.name, method=recipe.method, description=recipe.describe(),
                   artifact=str(out), peak_rss_mib=rss.peak / 2**20, node=platform.node(),
                   seconds={"load": t1 - t0, "compress": t2 - t1, "save": t3 - t2, "measure": t4 - t3,
                            "total": t4 - t0})
        if self.on_partial is not None:
            self.on_partial(job["id"], row)  # the point lands now; batch 32 follows

        def batch32(preempt: Callable[[], bool] | None = None) -> dict | Callable:
            """The batch-32 timing; if ``preempt()`` says so midway, it is dropped and this function returned."""
            cancel.check()
            progress(0.93, "measuring batch-32 latency")
            with _PeakRss() as rss32:
                t = time.perf_counter()
                try:
                    ms.add_batch32(row, cm, stop=preempt)
                except Preempted:
                    progress(0.9, "landed; batch-32 latency waits for a newer setting")
                    return batch32
                b32 = time.perf_counter() - t
            row["peak_rss_mib"] = max(rss.peak, rss32.peak) / 2**20
            row["seconds"].update(measure_b32=b32, total_with_b32=row["seconds"]["total"] + b32)
            return row

        if defer_batch32:
            progress(0.9, "landed; batch-32 latency follows")
            return batch32
        return batch32()


def format_error(e: BaseException) -> tuple[str, str]:
    """A one-line error for tables, and the full traceback for the details view."""
    msg = f"{type(e).__name__}: {e}".strip()
    return msg.splitlines()[0][:500] if msg else type(e).__name__, traceback.format_exc()
