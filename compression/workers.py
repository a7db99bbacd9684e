"""Workers: running queued jobs here or on Ray, and the background worker the dashboard keeps alive.

The API re-exports these; the dashboard imports them through :mod:`compression.api` without loading torch
(the executors, which do, are imported only when a worker is started or run).

Example::

    >>> ensure_worker(paths)            # start the background worker unless one is alive
    >>> keep_worker_warm(paths, fp)     # the live knob: keep fp's baseline loaded
"""
from __future__ import annotations

import os

from . import config
from .config import Paths, UserError
from .store import Store


def run_jobs(paths: Paths, store: Store, ids: list[int], on_event=None, executor: str = "local",
             address: str | None = None) -> None:
    """Run the jobs here (``local``; a worker already running is followed instead) or on Ray at ``address``."""
    from .executors import get_executor

    get_executor(executor, address).run(paths, store, ids, on_event)


def run_worker(paths: Paths, store: Store, executor: str = "local", address: str | None = None,
               idle_exit: float = 180.0, on_event=None) -> int | None:
    """Run queued jobs until idle for ``idle_exit`` seconds (``python -m compression worker``).

    Returns the number of jobs a local worker ran (None for a Ray driver). Raises UserError when another
    worker (or Ray driver) already holds the workspace.
    """
    from .executors import WorkerBusy, get_executor
    from .executors import run_worker as local_worker

    if executor == "ray":
        from .executors.local import WorkerLock

        try:
            lock = WorkerLock(paths.workspace / "ray-driver.lock").acquire()
        except WorkerBusy as e:
            raise UserError(f"a Ray driver is already running: {e}") from None
        try:
            get_executor("ray", address).run(paths, store, [], on_event, idle_exit=idle_exit)
        finally:
            lock.release()
        return None
    try:
        return local_worker(paths, store, idle_exit=idle_exit, on_event=on_event)
    except WorkerBusy as e:
        raise UserError(str(e)) from None


def worker_alive(paths: Paths) -> bool:
    """True when some process holds the workspace's worker lock (the same test as executors.local.worker_alive,
    without importing the executors, which pull in torch)."""
    import fcntl

    if not paths.worker_lock.exists():
        return False
    with open(paths.worker_lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def start_worker(paths: Paths, executor: str = "local", address: str | None = None) -> bool:
    """Start the background worker (a Ray driver for ``address`` with ``executor="ray"``) unless one is alive.

    True if it started one. ``sweep --detach`` calls it; the app calls ensure_worker, which tests can turn off.
    """
    from .executors import spawn_worker  # imported here: it pulls in torch, which the app's pages never need

    return spawn_worker(paths, executor=executor, address=address) is not None


def ensure_worker(paths: Paths, executor: str = "local", address: str | None = None) -> bool:
    """start_worker, unless autostart is off for tests (COMPRESSION_NO_WORKER_SPAWN=1); True if started."""
    if os.environ.get("COMPRESSION_NO_WORKER_SPAWN") == "1":
        return False
    return start_worker(paths, executor, address)


def keep_worker_warm(paths: Paths, baseline: str) -> bool:
    """Keep the local worker up with ``baseline`` loaded, so a live-knob setting starts at once.

    Call it again within ``config.KEEPALIVE_SECONDS`` (the Trade-offs page does, while the live knob is on);
    starts the worker if none is alive. True if it started one."""
    config.keep_warm(paths, baseline)
    return ensure_worker(paths)


def worker_warm_for(paths: Paths, baseline: str) -> bool:
    """True when a live worker holds ``baseline`` loaded: a new setting starts without loading anything."""
    try:  # the ready note names the baseline and the worker's pid; the lock file holds the live worker's pid
        fp, _, pid = paths.worker_ready.read_text().strip().partition(" ")
        return fp == baseline and worker_alive(paths) and paths.worker_lock.read_text().strip() == pid
    except OSError:
        return False
