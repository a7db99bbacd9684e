"""The local executor: one worker process per workspace, one job at a time (so timings are clean).

A lock file guards the workspace. A heartbeat thread renews each running job's lease and relays a
user's cancel request. A worker that finds jobs still marked running by a dead worker of this host
re-queues them first, so a killed worker leaves nothing stuck.

Example::

    >>> run_worker(paths, store, idle_exit=120)              # python -m compression worker
    >>> spawn_worker(paths)                                  # the same, in the background
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from .. import config, prefetch
from ..config import Paths
from ..evals import is_analysis
from ..store import PREPARE, Store
from ..timing import Preempted
from ..training import Cancelled, CancelToken

HEARTBEAT_SECONDS = 2.0
Event = Callable[[dict, float, str], None]  # (job, fraction, message)


class WorkerBusy(Exception):
    """Another worker already holds this workspace's lock."""


class WorkerLock:
    """An exclusive flock on ``worker.lock``; released by the OS when the process dies, even by SIGKILL."""

    def __init__(self, path: Path):
        self.path = path
        self.fh = None

    def acquire(self) -> "WorkerLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise WorkerBusy(f"a worker is already running for {self.path.parent}") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self.fh = fh
        return self

    def release(self) -> None:
        if self.fh:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()
            self.fh = None


def worker_alive(paths: Paths) -> bool:
    """True when some process holds the workspace's worker lock."""
    try:
        lock = WorkerLock(paths.worker_lock).acquire()
    except WorkerBusy:
        return True
    lock.release()
    return False


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _dead_local_workers(store: Store) -> list[str]:
    """Names of this host's workers that hold running jobs but no longer exist."""
    host = socket.gethostname()
    dead = set()
    for j in store.jobs(states=("running",)):
        w = j["worker"] or ""
        h, _, pid = w.rpartition(":")
        if h == host and pid.isdigit() and not _pid_alive(int(pid)):
            dead.add(w)
    return sorted(dead)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Heartbeat(threading.Thread):
    def __init__(self, store: Store, job_id: int, cancel: CancelToken):
        super().__init__(daemon=True)
        self.store, self.job_id, self.cancel = store, job_id, cancel
        self.progress: tuple[float, str] | None = None
        self._halt = threading.Event()

    def run(self):
        while not self._halt.wait(HEARTBEAT_SECONDS):
            p = self.progress
            try:
                if self.store.heartbeat(self.job_id, *(p or (None, None))):
                    self.cancel.cancel()
            except Exception:  # a busy database must not kill the job; the next beat retries
                pass

    def stop(self):
        self._halt.set()
        self.join()


SPAWN_GRACE_SECONDS = 10.0  # a worker started this recently is still importing: do not start another
MAX_DEFERRED = 3  # landed points whose batch-32 timing waits behind live-knob settings (each holds a model)


def run_worker(paths: Paths, store: Store, *, hardware: str | None = None, idle_exit: float = 180.0,
               until: Callable[[], bool] | None = None, on_event: Event | None = None,
               baseline: str | None = None) -> int:
    """Claim and run jobs until idle for ``idle_exit`` seconds, or until ``until()`` is true.

    While the app keeps a baseline warm (the live knob is on), the worker stays up with it loaded and
    lands each point before its batch-32 timing, which waits until no new setting is queued.
    Returns the number of jobs run. Raises WorkerBusy if another worker holds the lock.
    """
    lock = WorkerLock(paths.worker_lock).acquire()
    paths.worker_ready.unlink(missing_ok=True)  # a killed worker's claim to be ready is not ours
    worker = _Worker(paths, store, hardware or config.hardware_id(), on_event, baseline)
    try:
        idle_since = time.monotonic()
        while True:
            store.requeue_stale(dead_workers=_dead_local_workers(store))
            if worker.step():
                idle_since = time.monotonic()
                continue
            if until is not None and until():
                return worker.ran
            if worker.keep_warm.poll():  # the app is open on the live knob: stay up
                idle_since = time.monotonic()
                time.sleep(0.2)
            elif time.monotonic() - idle_since > idle_exit:
                return worker.ran
            else:
                time.sleep(0.5)
    finally:
        worker.close()
        paths.worker_ready.unlink(missing_ok=True)
        lock.release()


class _Worker:
    """The local worker's steps: run the next queued job up to its landing, or complete a landed one."""

    def __init__(self, paths: Paths, store: Store, hardware: str, on_event: Event | None, baseline: str | None):
        from ..engine import JobRunner

        self.paths, self.store, self.hardware, self.on_event, self.baseline = paths, store, hardware, on_event, baseline
        self.runner = JobRunner.local(store, paths)
        self.keep_warm = KeepWarm(paths, self.runner, on_event)
        self.deferred: list[tuple[dict, _Heartbeat, object]] = []  # (job, its heartbeat, its Landed)
        self.ran = 0
        self._prefetch_at = float("-inf")

    def step(self) -> bool:
        """Do one unit of work; False when there was none."""
        full = len(self.deferred) >= MAX_DEFERRED
        # a landed setting's own measurement goes before any prefetched neighbour, and only a setting the user
        # or a sweep queued (not a prefetch) preempts it
        below = prefetch.PRIORITY if self.deferred else None
        job = None if full else self.store.claim(self.hardware, worker_name(), baseline=self.baseline, below=below)
        if job is not None:
            self._start(job)
            return True
        if self.deferred:  # time a landed point's rest; a newer setting preempts it unless the queue is full
            job, beat, landed = self.deferred.pop(0)
            stop = None if full else (lambda: self.store.has_queued(self.hardware, self.baseline,
                                                                    below=prefetch.PRIORITY))
            self._settle(job, beat, lambda: landed.complete(preempt=stop), landed=landed, first=True)
            return True
        return self._prefetch()

    def _prefetch(self) -> bool:
        """Nothing queued, the live knob on: queue the nearest slider value not yet measured (claimed next)."""
        fp = self.runner.loaded
        if fp is None or time.monotonic() - self._prefetch_at < 2.0 or fp not in config.wanted_warm(self.paths):
            return False
        self._prefetch_at = time.monotonic()  # a look at most every 2 s: the idle loop spins every 0.2 s
        recipe = prefetch.next_setting(self.store, self.paths, fp, self.hardware)
        if recipe is None:
            return False
        prefetch.enqueue(self.store, fp, recipe, self.hardware)
        return True

    def _start(self, job: dict) -> None:
        self.keep_warm.forget_failures()  # a job may have prepared a baseline that failed to load before
        cancel = CancelToken()
        beat = _Heartbeat(self.store, job["id"], cancel)

        def progress(fraction: float, message: str) -> None:
            beat.progress = (fraction, message)
            if self.on_event:
                self.on_event(job, fraction, message)

        beat.start()
        if job["recipe"] == PREPARE:
            self._settle(job, beat, lambda: self.runner.prepare(self.store, job, progress, cancel))
        elif is_analysis(job["recipe"]):  # a sensitivity run or a search: validation only, no result row
            from ..search import run_analysis  # here: it loads torch, which spawning a worker does not need

            self._settle(job, beat, lambda: run_analysis(self.store, job, progress, cancel))
        else:
            live = bool(config.wanted_warm(self.paths))
            # the live knob's own settings (queued ahead, at priority 0) land first as a preview
            preview = live and job["priority"] == 0
            # a prefetched neighbour yields to a release at once (it is queued again, measured later)
            stop = (lambda: self.store.has_queued(self.hardware, self.baseline, below=prefetch.PRIORITY)) \
                if live and job["priority"] >= prefetch.PRIORITY else None
            landed = self._settle(job, beat, lambda: self.runner.run(job, progress, cancel, preview, stop), keep=True)
            if landed is None:
                pass  # failed or cancelled, and recorded so
            elif live:  # a newer setting lands before the rest of this one's measurement
                self._defer(job, beat, landed)
            else:
                self._settle(job, beat, landed.complete, landed=landed)
        self.keep_warm.announce()
        self.ran += 1

    def _defer(self, job: dict, beat: _Heartbeat, landed, first: bool = False) -> None:
        """Keep a landed point for its batch-32 timing later (its heartbeat keeps its lease)."""
        self.deferred.insert(0 if first else len(self.deferred), (job, beat, landed))

    def _settle(self, job: dict, beat: _Heartbeat, work: Callable, landed=None, first: bool = False,
                keep: bool = False):
        """Run ``work``; record done, failed (with its traceback) or cancelled. A preempted completion is
        deferred again, first in line. With ``keep``, a successful result is returned, not recorded."""
        from ..engine import format_error

        try:
            out = work()
        except Preempted:
            if landed is None:  # before its first landing: back in the queue, nothing of it stored
                self.store.requeue([job["id"]], states=("running",))
            else:
                self._defer(job, beat, landed, first=first)
                return None
        except Cancelled:
            self.store.fail(job["id"], "cancelled by the user", state="cancelled")
            self._event(job, "cancelled")
        except Exception as e:  # a failed setting is one failed row, never a dead sweep
            msg, tb = format_error(e)
            self.store.fail(job["id"], msg, tb)
            if job["recipe"] == PREPARE:
                self.store.fail_dependents(job["baseline"], msg)
            self._event(job, f"failed: {msg}")
        else:
            if keep:
                return out
            self.store.finish(job["id"], None if out is None else out.to_row())
            self._event(job, "done")
        beat.stop()
        return None

    def _event(self, job: dict, message: str) -> None:
        if self.on_event:
            self.on_event(job, 1.0, message)

    def close(self) -> None:
        for _, beat, _ in self.deferred:  # only on a crash; the next worker re-queues their jobs (a dead worker's)
            beat.stop()


class KeepWarm:
    """The app's wish to keep a baseline loaded (the live knob), and the worker's answer ("ready").

    Two pages on two baselines keep whichever is loaded (one fits in memory) rather than reload in
    turn. A baseline that fails to load (not prepared yet, or gone) is not retried until a job runs.
    """

    def __init__(self, paths: Paths, runner, on_event: Event | None):
        self.paths, self.runner, self.on_event = paths, runner, on_event
        self._unwarmable: set[str] = set()

    def forget_failures(self) -> None:
        self._unwarmable.clear()

    def poll(self) -> list[str]:
        """Load the baseline the app asks to keep warm, unless one it asks for is loaded; returns those asked for."""
        from ..engine import format_error

        wants = config.wanted_warm(self.paths)
        want = next((w for w in wants if w not in self._unwarmable), None)
        if not wants or self.runner.loaded in wants or want is None:
            return wants
        event = {"id": None, "baseline": want, "recipe": "warm"}
        try:
            if self.runner.warm(want):
                self.announce()
                if self.on_event:
                    self.on_event(event, 1.0, "warm")
        except Exception as e:  # the job itself will say why
            self._unwarmable.add(want)
            if self.on_event:
                self.on_event(event, 1.0, f"warm failed: {format_error(e)[0]}")
        return wants

    def announce(self) -> None:
        """Tell the app which baseline this worker holds loaded (the live knob says "ready" when it is its own)."""
        if self.runner.loaded:
            self.paths.worker_ready.write_text(f"{self.runner.loaded} {os.getpid()}\n")
        else:
            self.paths.worker_ready.unlink(missing_ok=True)


def spawn_worker(paths: Paths, idle_exit: float = 180.0, executor: str = "local",
                 address: str | None = None) -> subprocess.Popen | None:
    """Start a background worker for this workspace unless one is alive; its log goes to logs/worker.log.

    With ``executor="ray"`` the worker is a Ray driver that runs the jobs on the cluster at ``address``.
    """
    lock = paths.worker_lock if executor == "local" else paths.workspace / "ray-driver.lock"
    paths.workspace.mkdir(parents=True, exist_ok=True)
    with open(lock.with_suffix(".spawn"), "a+") as spawn:  # two page runs at once start one worker
        fcntl.flock(spawn, fcntl.LOCK_EX)
        try:
            WorkerLock(lock).acquire().release()
        except WorkerBusy:
            return None
        spawn.seek(0)
        try:
            last = float(spawn.read().strip() or 0)
        except ValueError:
            last = 0.0
        if time.time() - last < SPAWN_GRACE_SECONDS:
            return None  # one was started moments ago and is still importing
        spawn.seek(0)
        spawn.truncate()
        spawn.write(f"{time.time()}\n")
        return _spawn(paths, idle_exit, executor, address)


WORKER_NICE = 5  # the background worker yields the CPU to the dashboard and its browser (see _spawn)


def _lower_priority() -> None:
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)


def _spawn(paths: Paths, idle_exit: float, executor: str, address: str | None) -> subprocess.Popen:
    """The worker process, at a lower CPU priority (nice WORKER_NICE) than the page that started it: while it
    prefetches or sweeps, a release or a click is answered at once instead of waiting for a core. It changes
    nothing on an idle machine; a timing during which anything else used the CPU is labelled contended, as
    always (timing.py)."""
    paths.logs.mkdir(parents=True, exist_ok=True)
    log = open(paths.logs / f"worker-{executor}.log", "ab")
    env = {**os.environ, "COMPRESSION_WORKSPACE": str(paths.workspace), "COMPRESSION_STORE_URL": paths.store_url}
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "compression", "worker", "--idle-exit", str(idle_exit), "--executor", executor]
    if address:
        cmd += ["--address", address]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True, cwd=root, preexec_fn=_lower_priority)
