"""Executors run queued jobs. The interface is one method, so a cluster backend plugs in beside the local one.

Example::

    >>> get_executor("local").run(paths, store, job_ids, on_event=print)
"""
from __future__ import annotations

import time
from typing import Protocol

from ..config import Paths, UserError
from ..store import Store
from .local import Event, WorkerBusy, run_worker, spawn_worker, worker_alive


class Executor(Protocol):
    def run(self, paths: Paths, store: Store, job_ids: list[int], on_event: Event | None = None) -> None:
        """Return once every job in ``job_ids`` is done, failed or cancelled."""


def _finished(store: Store, ids: list[int]) -> bool:
    return all(j["state"] in ("done", "failed", "cancelled") for j in store.jobs(ids=ids))


class LocalExecutor:
    """Runs the jobs in this process; if a background worker already holds the workspace, follows it."""

    def run(self, paths: Paths, store: Store, job_ids: list[int], on_event: Event | None = None) -> None:
        try:
            run_worker(paths, store, idle_exit=0.0, until=lambda: _finished(store, job_ids), on_event=on_event)
        except WorkerBusy:
            follow(store, job_ids, on_event)


def follow(store: Store, job_ids: list[int], on_event: Event | None = None, poll: float = 1.0) -> None:
    """Watch jobs another worker runs, reporting their progress, until all have finished."""
    last: dict[int, tuple] = {}
    while True:
        jobs = store.jobs(ids=job_ids)
        for j in jobs:
            key = (j["state"], j["progress"], j["message"])
            if on_event and last.get(j["id"]) != key:
                on_event(j, j["progress"], j["message"] or j["state"])
            last[j["id"]] = key
        if all(j["state"] in ("done", "failed", "cancelled") for j in jobs):
            return
        time.sleep(poll)


def get_executor(name: str, address: str | None = None) -> Executor:
    """``local`` (one process, the default) or ``ray`` (tasks on a Ray cluster at ``address``)."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        from .ray import RayExecutor

        return RayExecutor(address)
    raise UserError(f"unknown executor {name!r}: choose local or ray")


__all__ = ["Executor", "LocalExecutor", "get_executor", "follow", "run_worker", "spawn_worker", "worker_alive",
           "WorkerBusy"]
