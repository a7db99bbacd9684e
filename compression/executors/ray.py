"""The Ray executor: jobs from the same store run as Ray tasks on a cluster; the engine is unchanged.

Design: a **single writer**. The driver (this process) claims jobs, submits one Ray task per job and
writes every row itself. Why: the store may be SQLite, which nodes on other hosts cannot reach;
only one process moves job states, so a task that Ray retries after its node died still lands exactly
once (the unique job key plus "finish only a running job"); and workers need no database credentials.

Code and data reach the workers explicitly: the ``compression`` package travels in the task's
``runtime_env`` (py_modules), and the prepared baseline's files travel through the object store once
per driver session and are unpacked into each node's cache. Nothing relies on the driver's sys.path.

Each task asks for all CPUs of a node, so latencies are taken with the node to itself.
Preparation (fine-tuning a baseline) runs on the driver, next to the store.

Security: set RAY_AUTH_MODE on every process (``token`` with RAY_AUTH_TOKEN for a real cluster) and bind
the nodes to a private network; see the README.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
import time
from pathlib import Path

from .. import config
from ..config import Paths, UserError
from ..store import PREPARE, Store
from .local import Event

TASK_RETRIES = 3  # Ray re-runs a task whose worker or node died this many times


def require_ray():
    try:
        import ray
    except ImportError:
        raise UserError("the Ray executor needs Ray: pip install -r requirements-ray.txt") from None
    if "RAY_AUTH_MODE" not in os.environ:
        raise UserError("set RAY_AUTH_MODE explicitly (token for a real cluster, with RAY_AUTH_TOKEN; "
                        "disabled only inside a private network namespace)")
    return ray


def _pack(folder: Path) -> dict[str, bytes]:
    """The prepared baseline's files; the ONNX export is a cache each node rebuilds for itself."""
    return {str(f.relative_to(folder)): f.read_bytes() for f in folder.rglob("*")
            if f.is_file() and f.relative_to(folder).parts[0] != "onnx"}


def _unpack(files: dict[str, bytes], folder: Path) -> Path:
    if not (folder / "baseline.json").exists():
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        for rel, data in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
        try:
            tmp.rename(folder)
        except OSError:  # another worker on this node unpacked it first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return folder


_RUNNERS: dict = {}


def run_task(job: dict, baseline_files: dict[str, bytes]) -> dict:
    """Runs on a Ray worker: unpack the baseline into this node's cache, run the job, return its
    Measurement and the artifact's files."""
    import ray

    from ..engine import JobRunner
    from ..training import CancelToken

    cache = Path(tempfile.gettempdir()) / "compression-ray" / job["baseline"][:16]
    node = ray.get_runtime_context().get_node_id()
    path = _unpack(baseline_files, cache)
    paths = Paths(cache.parent / f"ws-{os.getpid()}", "sqlite://")
    runner = _RUNNERS.get(job["baseline"]) or JobRunner(paths, lambda fp: path)
    _RUNNERS.clear()
    _RUNNERS[job["baseline"]] = runner
    m = runner.run(job, lambda f, m: None, CancelToken()).complete()
    art = Path(m.artifact)
    files = {f.name: f.read_bytes() for f in art.iterdir() if f.is_file()}
    import shutil

    shutil.rmtree(art, ignore_errors=True)
    return {"measurement": m, "files": files, "node": f"{socket.gethostname()}/{node[:12]}"}


class RayExecutor:
    """Claims jobs from the store and runs them as Ray tasks, one per node at a time."""

    def __init__(self, address: str | None = None, task_cpus: int | None = None):
        self.address, self.task_cpus = address, task_cpus

    def connect(self):
        ray = require_ray()
        if not ray.is_initialized():
            pkg = str(Path(__file__).resolve().parents[1])
            try:
                ray.init(address=self.address, runtime_env={"py_modules": [pkg],
                                                            "env_vars": {"RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"]}},
                         logging_level="ERROR", log_to_driver=False)
            except ConnectionError as e:
                raise UserError(f"cannot reach the Ray cluster at {self.address}: {e}") from None
        return ray

    def _capacity(self, ray) -> tuple[int, int]:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpus = [int(n["Resources"].get("CPU", 0)) for n in nodes if n["Resources"].get("CPU", 0) >= 1]
        if not cpus:
            raise UserError("the Ray cluster has no node with a CPU to run jobs")
        return len(cpus), self.task_cpus or min(cpus)

    def run(self, paths: Paths, store: Store, job_ids: list[int], on_event: Event | None = None,
            idle_exit: float | None = None) -> None:
        """Run until every job in ``job_ids`` has finished (or, as a worker, until idle)."""
        from . import LocalExecutor

        prep = [j["id"] for j in store.jobs(ids=job_ids) if j["recipe"] == PREPARE]
        prep += [j["id"] for j in store.jobs(states=("queued",)) if j["recipe"] == PREPARE]
        if prep:
            LocalExecutor().run(paths, store, sorted(set(prep)), on_event)
        ray = self.connect()
        task = ray.remote(max_retries=TASK_RETRIES, retry_exceptions=False)(run_task)
        me = f"ray-driver:{socket.gethostname()}:{os.getpid()}"
        hw = config.hardware_id()
        refs: dict = {}  # object ref -> job
        shipped: dict[str, object] = {}
        idle_since = time.monotonic()
        while True:
            store.requeue_stale()
            slots, cpus = self._capacity(ray)
            while len(refs) < slots:
                job = store.claim(hw, me)
                if job is None:
                    break
                if job["recipe"] == PREPARE:  # queued meanwhile: preparation stays on the driver
                    store.requeue([job["id"]], states=("running",))
                    LocalExecutor().run(paths, store, [job["id"]], on_event)
                    continue
                fp = job["baseline"]
                if fp not in shipped:
                    shipped[fp] = ray.put(_pack(Path(store.baseline(fp)["path"])))
                ref = task.options(num_cpus=cpus).remote(job, shipped[fp])
                refs[ref] = job
                if on_event:
                    on_event(job, 0.1, "submitted to Ray")
            if refs:
                idle_since = time.monotonic()
                done, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
                for job in refs.values():
                    if store.heartbeat(job["id"], None, "running on Ray"):
                        for r, j in list(refs.items()):
                            if j["id"] == job["id"]:
                                ray.cancel(r, force=True)
                for ref in done:
                    self._collect(ray, store, paths, refs.pop(ref), ref, on_event)
            else:
                finished = all(j["state"] in ("done", "failed", "cancelled") for j in store.jobs(ids=job_ids))
                if job_ids and finished:
                    return
                if idle_exit is not None and time.monotonic() - idle_since > idle_exit:
                    return
                time.sleep(0.5)

    def _collect(self, ray, store: Store, paths: Paths, job: dict, ref, on_event) -> None:
        from ray.exceptions import RayTaskError, TaskCancelledError

        try:
            out = ray.get(ref)
        except TaskCancelledError:
            store.fail(job["id"], "cancelled by the user", state="cancelled")
            return
        except RayTaskError as e:  # the method itself raised: a failed setting, with its traceback
            cause = e.cause if getattr(e, "cause", None) is not None else e
            store.fail(job["id"], f"{type(cause).__name__}: {cause}".splitlines()[0][:500], str(e))
            if on_event:
                on_event(job, 1.0, f"failed: {cause}")
            return
        except Exception as e:  # the node or worker died after all retries: run it again later
            if (store.job(job["id"])["attempts"] or 0) >= TASK_RETRIES:
                store.fail(job["id"], f"lost with its node {TASK_RETRIES} times: {type(e).__name__}", str(e))
            else:
                store.requeue([job["id"]], states=("running",))
            return
        art = paths.artifacts / str(job["id"])
        art.mkdir(parents=True, exist_ok=True)
        for name, data in out["files"].items():
            (art / name).write_bytes(data)
        m = dataclasses.replace(out["measurement"], artifact=str(art), node=out["node"])
        if store.finish_running(job["id"], m.to_row(), node=out["node"]) and on_event:
            on_event(job, 1.0, "done")
