"""The results store: baselines, jobs, results, sweeps. SQLAlchemy over SQLite (WAL) or any URL.

Jobs are keyed by (baseline fingerprint, recipe key, hardware id), so enqueueing a sweep again only
adds what is missing. A claim is an atomic ``UPDATE ... WHERE state='queued'``; a running job holds a
heartbeat lease, and a stale lease is re-queued.

Example::

    >>> store = Store("sqlite:////tmp/ws/store.sqlite")
    >>> store.enqueue(fp, [recipe.key], hardware="cpu-x86_64-avx2-2t")
    >>> job = store.claim("cpu-x86_64-avx2-2t", worker="host:123")
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy import event

from .schema import (SCHEMA_VERSION, baselines, jobs, migrate, results, schema_version, sqlite_pragmas,  # noqa: F401
                     sweep_jobs, sweeps)

STATES = ("queued", "running", "done", "failed", "cancelled")
PREPARE = "prepare"  # the recipe key of a baseline-preparation job
BASELINE_RECIPE = "[]"  # the recipe key of the baseline measured like any result (the empty recipe)
LEASE_SECONDS = 60.0


def now() -> float:
    return time.time()


def iso(t: float | None) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if t else ""


class Store:
    """All reads and writes of the shared truth. Safe to use from several processes."""

    def __init__(self, url: str):
        self.url = url
        kw: dict = {}
        if url.startswith("sqlite"):
            kw["connect_args"] = {"timeout": 30, "check_same_thread": False}
        self.engine = sa.create_engine(url, future=True, **kw)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", sqlite_pragmas)
        self._migrate()

    def _migrate(self) -> None:
        with self.engine.begin() as c:
            migrate(c, self.url)

    @property
    def schema_version(self) -> int:
        with self.engine.connect() as c:
            return schema_version(c)

    # ------------------------------------------------------------------ baselines
    def add_baseline(self, fingerprint: str, name: str, model_source: dict, dataset_source: dict,
                     settings: dict) -> None:
        with self.engine.begin() as c:
            if c.execute(sa.select(baselines.c.fingerprint).where(baselines.c.fingerprint == fingerprint)).first():
                return
            c.execute(baselines.insert().values(fingerprint=fingerprint, name=name, model_source=model_source,
                                                dataset_source=dataset_source, settings=settings,
                                                prepared=False, created_at=now()))

    def mark_prepared(self, fingerprint: str, path: str, info: dict) -> None:
        with self.engine.begin() as c:
            c.execute(baselines.update().where(baselines.c.fingerprint == fingerprint)
                      .values(prepared=True, path=path, info=info))

    def baseline(self, fingerprint: str) -> dict | None:
        with self.engine.connect() as c:
            r = c.execute(sa.select(baselines).where(baselines.c.fingerprint == fingerprint)).mappings().first()
            return dict(r) if r else None

    def baselines(self) -> list[dict]:
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(sa.select(baselines).order_by(baselines.c.created_at)).mappings()]

    # ------------------------------------------------------------------ jobs
    def enqueue(self, baseline: str, recipes: list[str], hardware: str, *, priority: int = 1,
                sweep: int | None = None) -> list[int]:
        """Add jobs that are missing; return the ids of all of them (new and existing)."""
        ids = []
        with self.engine.begin() as c:
            for key in recipes:
                q = sa.select(jobs.c.id).where(jobs.c.baseline == baseline, jobs.c.recipe == key,
                                               jobs.c.hardware == hardware)
                row = c.execute(q).first()
                if row is None:
                    try:
                        with c.begin_nested():
                            c.execute(jobs.insert().values(baseline=baseline, recipe=key, hardware=hardware,
                                                           state="queued", priority=priority, created_at=now()))
                    except sa.exc.IntegrityError:  # another process enqueued it at the same moment
                        pass
                    row = c.execute(q).first()
                ids.append(row[0])
                if sweep is not None:
                    exists = c.execute(sa.select(sweep_jobs).where(sweep_jobs.c.sweep_id == sweep,
                                                                   sweep_jobs.c.job_id == row[0])).first()
                    if not exists:
                        c.execute(sweep_jobs.insert().values(sweep_id=sweep, job_id=row[0]))
        return ids

    def requeue(self, ids: list[int], *, states=("failed", "cancelled"), remeasure: bool = False) -> int:
        """Put failed/cancelled (or, with remeasure, done) jobs back in the queue. Old results stay."""
        with self.engine.begin() as c:
            return c.execute(jobs.update().where(jobs.c.id.in_(ids), jobs.c.state.in_(states))
                             .values(state="queued", error=None, traceback=None, progress=0.0,
                                     message="re-queued", cancel_requested=False, remeasure=remeasure)).rowcount

    @staticmethod
    def _claimable(hardware: str, baseline: str | None, below: int | None = None):
        """The next queued job for this hardware whose baseline is ready (preparation jobs first); with
        ``below``, only jobs of a priority number under it."""
        ready = sa.or_(jobs.c.recipe == PREPARE, baselines.c.prepared.is_(True))
        q = (sa.select(jobs.c.id).join(baselines, baselines.c.fingerprint == jobs.c.baseline)
             .where(jobs.c.state == "queued", jobs.c.hardware == hardware, ready)
             .order_by(jobs.c.priority, jobs.c.id).limit(1))
        if below is not None:
            q = q.where(jobs.c.priority < below)
        return q.where(jobs.c.baseline == baseline) if baseline else q

    def has_queued(self, hardware: str, baseline: str | None = None, below: int | None = None) -> bool:
        """True when a job could be claimed now (of a priority number under ``below``, if given)."""
        with self.engine.connect() as c:
            return c.execute(self._claimable(hardware, baseline, below)).first() is not None

    def claim(self, hardware: str, worker: str, baseline: str | None = None, node: str | None = None,
              below: int | None = None) -> dict | None:
        """Atomically take the next queued job whose baseline is ready (preparation jobs first); with
        ``below``, only one of a priority number under it."""
        while True:
            with self.engine.begin() as c:
                row = c.execute(self._claimable(hardware, baseline, below)).first()
                if row is None:
                    return None
                t = now()
                n = c.execute(jobs.update().where(jobs.c.id == row[0], jobs.c.state == "queued")
                              .values(state="running", worker=worker, node=node or worker.rpartition(":")[0],
                                      heartbeat_at=t, started_at=t,
                                      attempts=jobs.c.attempts + 1, progress=0.0, message="starting")).rowcount
                if n == 1:
                    return dict(c.execute(sa.select(jobs).where(jobs.c.id == row[0])).mappings().first())
            # another worker took it between our select and update: try the next one

    def heartbeat(self, job_id: int, progress: float | None = None, message: str | None = None) -> bool:
        """Renew the lease; returns True when the user asked to cancel this job."""
        vals: dict = {"heartbeat_at": now()}
        if progress is not None:
            vals["progress"] = float(progress)
        if message is not None:
            vals["message"] = message[:500]
        with self.engine.begin() as c:
            c.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state == "running").values(**vals))
            return bool(c.execute(sa.select(jobs.c.cancel_requested).where(jobs.c.id == job_id)).scalar())

    def add_partial(self, job_id: int, result: dict) -> None:
        """A landing of a running job's result before its last stage (a preview, or before its batch-32
        timing): it replaces the job's earlier landing, and finish replaces it."""
        with self.engine.begin() as c:
            self._drop_partials(c, job_id)
            c.execute(results.insert().values(job_id=job_id, created_at=now(), **_columns({**result, "partial": True})))

    def _drop_partials(self, c, job_id: int) -> None:
        for rid, data in c.execute(sa.select(results.c.id, results.c.data).where(results.c.job_id == job_id)).all():
            if data.get("partial"):
                c.execute(results.delete().where(results.c.id == rid))

    def finish(self, job_id: int, result: dict | None) -> None:
        """Mark done; store the result row in the same transaction (no half-written jobs)."""
        t = now()
        with self.engine.begin() as c:
            self._drop_partials(c, job_id)
            if result is not None:
                c.execute(results.insert().values(job_id=job_id, created_at=t, **_columns(result)))
            c.execute(jobs.update().where(jobs.c.id == job_id)
                      .values(state="done", finished_at=t, progress=1.0, message="done", remeasure=False))

    def finish_running(self, job_id: int, result: dict, node: str | None = None) -> bool:
        """Finish a job only if it is still running: a duplicate delivery of the same job writes nothing."""
        t = now()
        with self.engine.begin() as c:
            n = c.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state == "running")
                          .values(state="done", finished_at=t, progress=1.0, message="done", remeasure=False,
                                  node=node)).rowcount
            if n != 1:
                return False
            self._drop_partials(c, job_id)
            c.execute(results.insert().values(job_id=job_id, created_at=t, **_columns(result)))
            return True

    def fail(self, job_id: int, error: str, tb: str = "", state: str = "failed") -> None:
        """Mark failed (or cancelled) with the error; a half-measured result is not kept."""
        with self.engine.begin() as c:
            self._drop_partials(c, job_id)
            c.execute(jobs.update().where(jobs.c.id == job_id)
                      .values(state=state, finished_at=now(), error=error[:2000], traceback=tb[-20000:],
                              message=state))

    def cancel(self, ids: list[int]) -> int:
        """Queued jobs are cancelled at once; running ones are asked to stop at their next check."""
        with self.engine.begin() as c:
            n = c.execute(jobs.update().where(jobs.c.id.in_(ids), jobs.c.state == "queued")
                          .values(state="cancelled", finished_at=now(), message="cancelled")).rowcount
            n += c.execute(jobs.update().where(jobs.c.id.in_(ids), jobs.c.state == "running")
                           .values(cancel_requested=True, message="cancelling")).rowcount
            return n

    def requeue_stale(self, lease: float = LEASE_SECONDS, dead_workers: list[str] = ()) -> int:
        """Running jobs whose lease expired, or whose worker is known dead, go back to queued."""
        with self.engine.begin() as c:
            cond = jobs.c.heartbeat_at < now() - lease
            if dead_workers:
                cond = sa.or_(cond, jobs.c.worker.in_(list(dead_workers)))
            stale = [r[0] for r in c.execute(sa.select(jobs.c.id).where(jobs.c.state == "running", cond))]
            for jid in stale:
                self._drop_partials(c, jid)
            return c.execute(jobs.update().where(jobs.c.id.in_(stale), jobs.c.state == "running")
                             .values(state="queued", message="re-queued: its worker stopped")).rowcount

    def fail_dependents(self, baseline: str, error: str) -> None:
        """When preparation fails, the baseline's queued jobs cannot run: fail them with the reason."""
        with self.engine.begin() as c:
            c.execute(jobs.update().where(jobs.c.baseline == baseline, jobs.c.state == "queued")
                      .values(state="failed", finished_at=now(), error=f"baseline preparation failed: {error}"[:2000]))

    def job(self, job_id: int) -> dict | None:
        with self.engine.connect() as c:
            r = c.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
            return dict(r) if r else None

    def jobs(self, baseline: str | None = None, ids: list[int] | None = None, states=None) -> list[dict]:
        q = sa.select(jobs).order_by(jobs.c.id)
        if baseline:
            q = q.where(jobs.c.baseline == baseline)
        if ids is not None:
            q = q.where(jobs.c.id.in_(ids))
        if states:
            q = q.where(jobs.c.state.in_(states))
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    def counts(self, ids: list[int] | None = None, baseline: str | None = None) -> dict[str, int]:
        out = {s: 0 for s in STATES}
        for j in self.jobs(baseline=baseline, ids=ids):
            out[j["state"]] += 1
        return out

    # ------------------------------------------------------------------ sweeps
    def add_sweep(self, name: str, baseline: str, request: dict) -> int:
        with self.engine.begin() as c:
            return c.execute(sweeps.insert().values(name=name, baseline=baseline, created_at=now(),
                                                    request=request)).inserted_primary_key[0]

    def sweeps(self, baseline: str | None = None, archived: bool | None = False, deleted: bool = False) -> list[dict]:
        q = sa.select(sweeps).order_by(sweeps.c.id.desc())
        q = q.where(sweeps.c.deleted_at.is_not(None) if deleted else sweeps.c.deleted_at.is_(None))
        if baseline:
            q = q.where(sweeps.c.baseline == baseline)
        if archived is not None:
            q = q.where(sweeps.c.archived_at.is_not(None) if archived else sweeps.c.archived_at.is_(None))
        with self.engine.connect() as c:
            out = [dict(r) for r in c.execute(q).mappings()]
            for s in out:
                s["job_ids"] = [r[0] for r in c.execute(sa.select(sweep_jobs.c.job_id)
                                                        .where(sweep_jobs.c.sweep_id == s["id"]))]
            return out

    def archive_sweep(self, sweep_id: int, archived: bool = True) -> None:
        """Archive hides a sweep and its points; unarchive (undo) brings them back. Nothing is deleted."""
        with self.engine.begin() as c:
            c.execute(sweeps.update().where(sweeps.c.id == sweep_id).values(archived_at=now() if archived else None))

    def delete_sweep(self, sweep_id: int, deleted: bool = True) -> None:
        """Delete hides the sweep everywhere (also from the archive list) until undone; rows stay until purged."""
        with self.engine.begin() as c:
            c.execute(sweeps.update().where(sweeps.c.id == sweep_id).values(deleted_at=now() if deleted else None))

    # ------------------------------------------------------------------ results
    def results(self, baseline: str | None = None, hardware: str | None = None, latest: bool = True,
                include_archived: bool = False) -> list[dict]:
        """Result rows joined with their job; with ``latest`` only the newest measurement per job.

        Without the per-row predictions: :meth:`latest_result` has them."""
        q = (sa.select(results.c.id, results.c.job_id, results.c.created_at, results.c.data, jobs.c.baseline,
                       jobs.c.recipe, jobs.c.hardware)
             .join(jobs, jobs.c.id == results.c.job_id).order_by(results.c.job_id, results.c.id))
        if baseline:
            q = q.where(jobs.c.baseline == baseline)
        if hardware:
            q = q.where(jobs.c.hardware == hardware)
        with self.engine.connect() as c:
            rows = [dict(r) for r in c.execute(q).mappings()]
            hidden = set()
            if not include_archived:
                # a job is hidden only when every sweep it belongs to is archived
                linked = c.execute(sa.select(sweep_jobs.c.job_id, sweeps.c.archived_at, sweeps.c.deleted_at)
                                   .join(sweeps, sweeps.c.id == sweep_jobs.c.sweep_id)).all()
                live: dict[int, bool] = {}
                for jid, arch, dele in linked:
                    live[jid] = live.get(jid, False) or (arch is None and dele is None)
                hidden = {j for j, v in live.items() if not v}
        rows = [r for r in rows if r["job_id"] not in hidden]
        if latest:
            by_job: dict[int, dict] = {}
            for r in rows:
                by_job[r["job_id"]] = r
            rows = list(by_job.values())
        return rows

    def result_count(self, job_id: int) -> int:
        with self.engine.connect() as c:
            return c.execute(sa.select(sa.func.count()).select_from(results).where(results.c.job_id == job_id)).scalar()

    def latest_result(self, job_id: int) -> dict | None:
        """The newest stored result of one job (every field, including predictions, notes and seconds)."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(results.c.data, results.c.predictions).where(results.c.job_id == int(job_id))
                            .order_by(results.c.id.desc()).limit(1)).first()
        if row is None:
            return None
        return {**row[0], "predictions": row[1]} if row[1] is not None else row[0]

    def version(self) -> tuple:
        """A cheap token that changes whenever results, jobs or sweeps change (for the app's caches)."""
        with self.engine.connect() as c:
            r = c.execute(sa.select(sa.func.count(), sa.func.max(results.c.id))).one()
            j = c.execute(sa.select(sa.func.count(), sa.func.max(jobs.c.finished_at))).one()
            s = c.execute(sa.select(sa.func.count(), sa.func.max(sweeps.c.archived_at),
                                    sa.func.count(sweeps.c.archived_at))).one()
        return tuple(r) + tuple(j) + tuple(s)


def _columns(result: dict) -> dict:
    """A result row as the results table stores it: the predictions apart from the numbers."""
    data = _jsonable(result)
    return {"data": data, "predictions": data.pop("predictions", None)}


def _jsonable(x):
    """Result dicts hold numpy scalars now and then; the JSON column wants plain Python."""
    return json.loads(json.dumps(x, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
