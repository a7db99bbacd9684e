"""The store's tables and their migrations: what a store on disk looks like, version by version.

The Store class (store.py) reads and writes these tables; this module only creates and upgrades them.

Example::

    >>> with engine.begin() as c:
    ...     migrate(c, url)          # creates missing tables, upgrades an older store in place
"""
from __future__ import annotations

import sqlalchemy as sa

SCHEMA_VERSION = 4  # 2: jobs.node, sweeps.deleted_at (undo); 3: ISA class in hardware ids, results.predictions;
# 4: val_evals, search_trials, analysis_outcomes (sensitivity and search; optuna keeps its own tables beside them)

meta = sa.MetaData()

meta_kv = sa.Table("meta", meta, sa.Column("key", sa.String(64), primary_key=True),
                   sa.Column("value", sa.Text, nullable=False))

baselines = sa.Table(
    "baselines", meta,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("model_source", sa.JSON, nullable=False),
    sa.Column("dataset_source", sa.JSON, nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),  # split + training settings + versions
    sa.Column("prepared", sa.Boolean, nullable=False, default=False),
    sa.Column("path", sa.Text),
    sa.Column("info", sa.JSON),  # label names, split sizes, reference accuracies, training log
    sa.Column("created_at", sa.Float, nullable=False),
)

jobs = sa.Table(
    "jobs", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("baseline", sa.String(64), sa.ForeignKey("baselines.fingerprint"), nullable=False),
    sa.Column("recipe", sa.Text, nullable=False),
    sa.Column("hardware", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, default="queued"),
    sa.Column("priority", sa.Integer, nullable=False, default=1),  # preparation first
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("worker", sa.Text),
    sa.Column("node", sa.Text),  # the host or Ray node that ran it (not part of the key)
    sa.Column("heartbeat_at", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("progress", sa.Float, nullable=False, default=0.0),
    sa.Column("message", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("traceback", sa.Text),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("remeasure", sa.Boolean, nullable=False, default=False),
    sa.UniqueConstraint("baseline", "recipe", "hardware", name="uq_job_key"),
)

results = sa.Table(
    "results", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    # per test row, apart from ``data``: charts read every result's numbers, only details read these
    sa.Column("predictions", sa.JSON),
)

sweeps = sa.Table(
    "sweeps", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("baseline", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("archived_at", sa.Float),
    sa.Column("deleted_at", sa.Float),  # deleted sweeps are hidden like archived ones until purged; undo restores
    sa.Column("request", sa.JSON),  # what the user asked for (method and knob ranges)
)

sweep_jobs = sa.Table(
    "sweep_jobs", meta,
    sa.Column("sweep_id", sa.Integer, sa.ForeignKey("sweeps.id"), primary_key=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), primary_key=True),
)

# A recipe scored on the validation split (sensitivity cells, search trials): one row per (baseline, recipe),
# so a stopped sensitivity run or search starts again where it stopped. The test split is never read for these.
val_evals = sa.Table(
    "val_evals", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("baseline", sa.String(64), nullable=False),
    sa.Column("recipe", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),  # accuracy, loss, rows, size_bytes, seconds
    sa.Column("predictions", sa.JSON),  # per validation row, for the paired change against the baseline
    sa.UniqueConstraint("baseline", "recipe", name="uq_val_eval"),
)

# One search's trials as they finish (greedy steps and NSGA-II trials), for its chart and its choice.
search_trials = sa.Table(
    "search_trials", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False, index=True),
    sa.Column("source", sa.String(16), nullable=False),  # greedy | nsga2
    sa.Column("recipe", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),  # val accuracy, drop, objective value and its label, feasible
    sa.UniqueConstraint("job_id", "source", "recipe", name="uq_search_trial"),
)

# What a sensitivity run or a search concluded: the chosen recipe and its measurement job, or why none.
analysis_outcomes = sa.Table(
    "analysis_outcomes", meta,
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
)


def migrate(c, url: str) -> None:
    """Create missing tables and bring an older store up to SCHEMA_VERSION (in the caller's transaction)."""
    existed = sa.inspect(c).has_table("meta")
    meta.create_all(c)  # creates only missing tables; old tables are upgraded by MIGRATIONS
    row = c.execute(sa.select(meta_kv.c.value).where(meta_kv.c.key == "schema_version")).first()
    version = int(row[0]) if row else (1 if existed else 0)
    if version == 0:  # a new store: its tables are already the newest
        c.execute(meta_kv.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
        version = SCHEMA_VERSION
    elif version > SCHEMA_VERSION:
        raise RuntimeError(f"the store at {url} has schema {version}, newer than this code "
                           f"({SCHEMA_VERSION}); update the code")
    for v in range(version + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[v](c)
        c.execute(meta_kv.update().where(meta_kv.c.key == "schema_version").values(value=str(v)))
    _recanonicalize(c)


def knob_signature() -> str:
    """A hash of every catalogued spec's knobs and defaults: it changes when a method gains a knob."""
    import dataclasses
    import hashlib
    import json

    from .registry import CATALOGUE

    sig = {m: [(f.name, repr(f.default)) for f in dataclasses.fields(e.spec)] for m, e in CATALOGUE.items()}
    return hashlib.sha256(json.dumps(sig, sort_keys=True).encode()).hexdigest()[:16]


def _recanonicalize(c) -> None:
    """When a method gains a knob, every stored recipe key of it gains the field at its default: the same
    setting must stay the same job, so a sweep run again reuses it instead of measuring it anew. A key that
    no longer parses (a method since removed) is left as it is."""
    from .recipes import Recipe

    sig = knob_signature()
    row = c.execute(sa.select(meta_kv.c.value).where(meta_kv.c.key == "knob_signature")).first()
    if row is not None and row[0] == sig:
        return
    taken = {tuple(r) for r in c.execute(sa.select(jobs.c.baseline, jobs.c.recipe, jobs.c.hardware)).all()}
    for job_id, baseline, key, hw in c.execute(sa.select(jobs.c.id, jobs.c.baseline, jobs.c.recipe,
                                                         jobs.c.hardware)).all():
        try:
            new = Recipe.from_key(key).key if key.startswith("[") else key
        except Exception:
            continue
        if new != key and (baseline, new, hw) not in taken:
            c.execute(jobs.update().where(jobs.c.id == job_id).values(recipe=new))
            taken.add((baseline, new, hw))
    if row is None:
        c.execute(meta_kv.insert().values(key="knob_signature", value=sig))
    else:
        c.execute(meta_kv.update().where(meta_kv.c.key == "knob_signature").values(value=sig))


def schema_version(c) -> int:
    """The version recorded in the store's meta table."""
    return int(c.execute(sa.select(meta_kv.c.value).where(meta_kv.c.key == "schema_version")).scalar())


def sqlite_pragmas(dbapi_conn, _record) -> None:
    """WAL and a long busy timeout, so several processes share one SQLite file (see the Contracts)."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _v2(c) -> None:
    """v1 -> v2: record the node that ran each job; soft-delete sweeps."""
    c.execute(sa.text("ALTER TABLE jobs ADD COLUMN node TEXT"))
    c.execute(sa.text("ALTER TABLE sweeps ADD COLUMN deleted_at FLOAT"))


def _v3(c) -> None:
    """v2 -> v3: each result's predictions move to their own column (reading every result for a chart no
    longer reads 1,000s of numbers per row), and ``cpu-x86_64-2t`` becomes ``cpu-x86_64-<isa>-2t``. A job whose result records this machine's
    CPU model (or that has not run yet) takes this machine's class; one measured on another model, whose
    class cannot be known now, becomes ``unknown``: never reused or drawn as this machine's."""
    import json
    import re

    from . import config

    if "predictions" not in {col["name"] for col in sa.inspect(c).get_columns("results")}:
        c.execute(sa.text("ALTER TABLE results ADD COLUMN predictions JSON"))
    for rid, data in c.execute(sa.select(results.c.id, results.c.data)).all():
        if "predictions" in (data or {}):
            d = dict(data)
            preds = d.pop("predictions")
            c.execute(results.update().where(results.c.id == rid).values(data=d, predictions=preds))
    here_model = config.cpu_model()
    here_isa = config.isa_class(config.cpu_flags())
    old = c.execute(sa.text("SELECT id, hardware, state FROM jobs")).all()
    for job_id, hw, state in old:
        m = re.fullmatch(r"cpu-([^-]+)-(\d+)t", hw or "")
        if not m:
            continue
        rows = c.execute(sa.text("SELECT data FROM results WHERE job_id = :j ORDER BY id DESC"), {"j": job_id}).all()
        cpus = set()
        for (data,) in rows:
            d = json.loads(data) if isinstance(data, str) else (data or {})
            cpus.add((d.get("context") or {}).get("cpu"))
        ran_here = cpus == {here_model} or (not rows and state in ("queued", "running"))
        isa = here_isa if ran_here else "unknown"
        c.execute(sa.text("UPDATE jobs SET hardware = :h WHERE id = :j"),
                  {"h": f"cpu-{m.group(1)}-{isa}-{m.group(2)}t", "j": job_id})


def _v4(c) -> None:
    """v3 -> v4: the sensitivity and search tables; ``migrate`` has created them already (they are new)."""


# version -> function(connection) that upgrades a store from version-1 to version
MIGRATIONS: dict = {2: _v2, 3: _v3, 4: _v4}
