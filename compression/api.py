"""The engine's public surface for the dashboard (and scripts): no page imports a method module.

Example::

    >>> paths, store = open_workspace()
    >>> fp = register_baseline(store, model="default", dataset="default")
    >>> sweep_id, ids = enqueue_sweep(store, fp, "quant", {"bits": [4, 8]})
    >>> ensure_worker(paths)
    >>> df = results_frame(store, baseline=fp)
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np

from . import config
from .config import TRAIN_LR, TRAIN_SEED, TRAIN_STEPS, Paths, UserError, hardware_id, resolve
from .recipes import Recipe, expand, parse_values, spec_type
from .refusals import optional_missing, refusal, refuse, refuse_missing_runtimes  # noqa: F401 (CLI and UI ask)
from .registry import CATALOGUE, entry
from .report import CSV_COLUMNS, jobs_frame, recipe_name, results_frame, text_table
from .specs import Spec, SpecError
from .prefetch import nearest as prefetch_nearest
from .prefetch import stored_values
from .prefetch import wish as prefetch_wish
from .search_api import (analyses, analysis_outcome, check_per_layer, enqueue_analysis, enqueue_search,
                         enqueue_sensitivity, job_name, layer_count, search_request, search_trials, sensitivity_frame,
                         sensitivity_request, sensitivity_sentence)
from .store import BASELINE_RECIPE, PREPARE, Store
from .workers import (ensure_worker, keep_worker_warm, run_jobs, run_worker, start_worker, worker_alive,
                      worker_warm_for)

__all__ = ["open_workspace", "baseline_request", "add_baseline", "register_baseline", "prepare_baseline",
           "baseline_jobs", "enqueue_sweep", "enqueue_recipes", "run_jobs", "run_worker", "start_worker",
           "ensure_worker", "keep_worker_warm", "worker_warm_for", "worker_alive", "results_frame", "jobs_frame",
           "text_table", "recipe_name", "CSV_COLUMNS", "PREPARE", "BASELINE_RECIPE", "TRAIN_STEPS", "TRAIN_LR",
           "TRAIN_SEED", "methods", "live_knob", "knobs", "predict_texts", "disk_usage", "hardware_id", "UserError",
           "SpecError", "Recipe", "Paths", "Store", "parse_values", "refusal", "prefetch_wish", "prefetch_nearest",
           "stored_values", "enqueue_sensitivity", "enqueue_search", "enqueue_analysis", "analysis_outcome", "analyses",
           "search_trials", "sensitivity_frame", "sensitivity_sentence", "layer_count", "check_per_layer",
           "search_request", "sensitivity_request", "job_name"]


def open_workspace(workspace: str | None = None, store_url: str | None = None) -> tuple[Paths, Store]:
    """The same workspace and store the CLI resolves (flag, then environment, then the user cache).

    Raises UserError with one line when the store cannot be opened (a bad URL, a store newer than this code).
    """
    paths = resolve(workspace, store_url)
    paths.workspace.mkdir(parents=True, exist_ok=True)
    try:
        return paths, Store(paths.store_url)
    except Exception as e:
        raise UserError(f"cannot open the store {paths.store_url}: {str(e).splitlines()[0]}") from None


def baseline_request(model: str = "default", dataset: str = "default", text_col: str = "text",
                     label_col: str = "label", train_steps: int = TRAIN_STEPS, lr: float = TRAIN_LR,
                     seed: int = TRAIN_SEED, force_train: bool = False, seq_len: int | None = None,
                     encoding: str = "utf-8"):
    """A baseline's sources and training settings, checked (a BaselineRequest); nothing is read or stored yet.

    Example: ``req = baseline_request("default", "reviews.csv", text_col="review")``.
    ``seq_len`` None: chosen from the data (64 for the embedded dataset). Raises UserError for a training
    setting out of range or a malformed source argument.
    """
    from .baseline import BaselineRequest
    from .data import DatasetSource, SplitSettings
    from .models import ModelSource
    from .training import TrainSettings

    if train_steps < 0:
        raise UserError(f"--train-steps must be >= 0, got {train_steps}")
    if not 0 < lr < 1:
        raise UserError(f"--lr must be in (0, 1), got {lr}")
    if seq_len is not None and seq_len < 8:
        raise UserError(f"--seq-len must be at least 8 tokens, got {seq_len}")
    return BaselineRequest(ModelSource.from_arg(model), DatasetSource.from_arg(dataset, text_col, label_col, encoding),
                           SplitSettings(seed=seed), TrainSettings(steps=train_steps, lr=lr, seed=seed),
                           force_train=force_train, seq_len=seq_len)


def add_baseline(store: Store, request) -> str:
    """Validate a baseline_request's sources and queue its preparation and its own measurement; its fingerprint.

    Raises UserError with one clear line for a wrong path, a malformed or single-class CSV, etc.
    """
    from .baseline import register

    return register(store, request)


def register_baseline(store: Store, model: str = "default", dataset: str = "default", text_col: str = "text",
                      label_col: str = "label", train_steps: int = TRAIN_STEPS, lr: float = TRAIN_LR,
                      seed: int = TRAIN_SEED, seq_len: int | None = None, encoding: str = "utf-8") -> str:
    """add_baseline(store, baseline_request(...)) in one call (the Baseline page); returns the fingerprint."""
    return add_baseline(store, baseline_request(model, dataset, text_col, label_col, train_steps, lr, seed,
                                                seq_len=seq_len, encoding=encoding))


def baseline_jobs(store: Store, baseline: str) -> list[int]:
    """The ids of a baseline's own jobs: its preparation and its measurement as a result."""
    return [j["id"] for j in store.jobs(baseline=baseline) if j["recipe"] in (PREPARE, BASELINE_RECIPE)]


def prepare_baseline(store: Store, request) -> tuple[str, list[int], str | None]:
    """Register a baseline_request and re-queue a failed or cancelled preparation (``prepare`` asked again).

    Returns (fingerprint, the baseline's own job ids, its folder when it is prepared and measured already:
    then there is nothing to run).
    """
    fp = add_baseline(store, request)
    ids = baseline_jobs(store, fp)
    row = store.baseline(fp)
    if row["prepared"] and all(j["state"] == "done" for j in store.jobs(ids=ids)):
        return fp, ids, row["path"]
    store.requeue(ids)
    return fp, ids, None


def baselines_matching(store: Store, prefix: str) -> list[str]:
    """The full fingerprints that start with ``prefix`` (the CLI and the URL carry 12 characters)."""
    return [b["fingerprint"] for b in store.baselines() if b["fingerprint"].startswith(prefix or "\0")]


def methods() -> list[type[Spec]]:
    """Every catalogued method's spec type, in catalogue order."""
    return [e.spec for e in CATALOGUE.values()]


def live_knob(method: str) -> str | None:
    """The knob the dashboard's live slider drives for a method (``"bits"`` for quant), or None."""
    return entry(method).live_knob


def knobs(method: str) -> list[dict]:
    """A method's knobs with their metadata: name, type, default, lo, hi, step, choices, unit, help, sweep."""
    t = spec_type(method)
    out = []
    for f in dataclasses.fields(t):
        m = dict(f.metadata)
        out.append({"name": f.name, "type": {"int": int, "float": float}.get(str(f.type), str),
                    "default": f.default, **m})
    return out


def enqueue_sweep(store: Store, baseline: str, method: str, values: dict[str, list], name: str | None = None,
                  hardware: str | None = None) -> tuple[int, list[int]]:
    """Expand knob value lists to recipes and queue what is missing; returns (sweep id, job ids)."""
    recipes = expand(spec_type(method), values)
    if not recipes:
        raise UserError("the sweep is empty: pick at least one value for each knob")
    return enqueue_recipes(store, baseline, recipes, name or method, {"method": method, "knobs": values}, hardware)


def enqueue_recipes(store: Store, baseline: str, recipes: list[Recipe], name: str, request: dict | None = None,
                    hardware: str | None = None, *, retry_failed: bool = False,
                    remeasure: bool = False) -> tuple[int, list[int]]:
    """Queue recipes as one named sweep (only what is missing is added); returns (sweep id, job ids).

    ``retry_failed`` re-queues the sweep's failed and cancelled jobs; ``remeasure`` measures done ones again
    (their old results are kept).
    """
    if store.baseline(baseline) is None:
        raise UserError(f"unknown baseline {baseline[:12]}; prepare it first")
    refuse(store, baseline, recipes)
    check_per_layer(store, baseline, recipes)
    sweep_id = store.add_sweep(name, baseline, request or {"recipes": [r.name for r in recipes]})
    ids = store.enqueue(baseline, [r.key for r in recipes], hardware or config.hardware_id(), sweep=sweep_id)
    if retry_failed:
        store.requeue(ids)
    if remeasure:
        store.requeue(ids, states=("done",), remeasure=True)
    return sweep_id, ids


def predict_texts(artifact: str | Path, texts: list[str], tokenizer_dir: str | Path, seq_len: int = 64) -> dict:
    """Labels, confidences and the wall time of one call for a saved compressed model (the playground)."""
    import time

    from .artifacts import load
    from .models import load_tokenizer

    cm = load(Path(artifact))
    tok = load_tokenizer(Path(tokenizer_dir))
    batch = dict(tok(list(texts), padding=True, truncation=True, max_length=seq_len, return_tensors="pt"))
    cm.predict(batch)  # warm-up
    t = time.perf_counter()
    logits = cm.predict(batch)
    ms = (time.perf_counter() - t) * 1e3
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return {"pred": p.argmax(1).tolist(), "confidence": p.max(1).tolist(), "ms": ms, "notes": cm.notes}


def disk_usage(paths: Paths) -> dict[str, int]:
    """Bytes used by the workspace's baselines, artifacts and store."""
    def size(p: Path) -> int:
        if p.is_file():
            return p.stat().st_size
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.exists() else 0

    store_files = [f for f in paths.workspace.glob("store.sqlite*")]
    return {"baselines": size(paths.baselines), "artifacts": size(paths.artifacts),
            "store": sum(size(f) for f in store_files), "total": size(paths.workspace)}


def delete_artifacts(paths: Paths, job_ids: list[int]) -> int:
    """Free disk space of the given jobs' saved models (their results stay). Returns bytes freed."""
    freed = 0
    for j in job_ids:
        d = paths.artifacts / str(j)
        if d.exists():
            freed += sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
            shutil.rmtree(d)
    return freed


# ---------------------------------------------------------------- additions for the dashboard

def store_version(store: Store) -> tuple:
    """A cheap token that changes whenever results, jobs or sweeps change (for the app's caches)."""
    return store.version()


def result_data(store: Store, job_id: int) -> dict | None:
    """The newest stored result of one job (every field, including predictions, notes and seconds)."""
    return store.latest_result(job_id)


def baseline_result(store: Store, baseline: str) -> dict | None:
    """The baseline measured as a result (its empty recipe): its predictions, size and latency."""
    ids = [j["id"] for j in store.jobs(baseline=baseline) if j["recipe"] == BASELINE_RECIPE and j["state"] == "done"]
    return result_data(store, ids[-1]) if ids else None


def saved_test_split(store: Store, baseline: str):
    """The prepared baseline's saved test split (text, label id), aligned with stored predictions; checked
    against its recorded row count and hash."""
    from .splits import load_split

    row = store.baseline(baseline)
    if not row or not row.get("path"):
        raise UserError(f"baseline {baseline[:12]} is not prepared yet")
    n_labels = len((row.get("info") or {}).get("label_names") or []) or None
    return load_split(Path(row["path"]) / "data", "test", n_labels)


def flips(store: Store, baseline: str, job_id: int) -> "pd.DataFrame":
    """Test sentences whose prediction differs between the baseline and one compressed result."""
    import pandas as pd

    data, base = result_data(store, job_id), baseline_result(store, baseline)
    cols = ["text", "true label", "baseline says", "compressed says"]
    if not data or not base or "predictions" not in data or "predictions" not in base:
        return pd.DataFrame(columns=cols)
    test = saved_test_split(store, baseline)
    names = (store.baseline(baseline)["info"] or {}).get("label_names") or []
    name = (lambda i: names[i] if 0 <= i < len(names) else str(i))
    p, b = np.asarray(data["predictions"]), np.asarray(base["predictions"])
    idx = np.flatnonzero(p != b)
    return pd.DataFrame({"text": test["text"].to_numpy()[idx], "true label": [name(int(test["label"][i])) for i in idx],
                         "baseline says": [name(int(b[i])) for i in idx],
                         "compressed says": [name(int(p[i])) for i in idx]}, columns=cols)


def baseline_of(store: Store, prefix: str) -> str | None:
    """The full fingerprint for a prefix (the URL carries 12 characters), or None."""
    match = baselines_matching(store, prefix)
    return match[0] if len(match) == 1 else None


def default_baseline(store: Store) -> dict | None:
    """The embedded default baseline's row (default model on the default dataset), if registered.

    Where a workspace holds several (the default prepared again after a change of its preparation, e.g. the
    length-bucketed fine-tune), the newest prepared one, else the newest."""
    rows = [b for b in store.baselines()
            if (b["model_source"] or {}).get("kind") == "default" and (b["dataset_source"] or {}).get("kind") == "default"]
    prepared = [b for b in rows if b["prepared"]]
    return (prepared or rows)[-1] if rows else None


def starter_values() -> dict[str, dict[str, list]]:
    """A small first sweep over the registered methods (bf16, int8, a few sparsities, a couple of ranks)."""
    wanted = {"cast": {"dtype": ["bf16"]}, "quant": {"bits": [8, 4]}, "prune": {"sparsity": [0.3, 0.5, 0.7]},
              "lowrank": {"rank_fraction": [0.5, 0.25]}}
    out = {}
    for t in methods():
        names = {f.name for f in dataclasses.fields(t)}
        vals = {k: v for k, v in wanted.get(t.method, {}).items() if k in names}
        if vals:
            out[t.method] = vals
    return out


def enqueue_setting(store: Store, baseline: str, recipe: Recipe, hardware: str | None = None) -> int:
    """Queue one setting (the live knob) in the baseline's "live knob" sweep, or reuse its stored job.

    It goes ahead of queued sweep jobs (priority 0, as preparation), and a cancelled one is queued again.
    """
    refuse(store, baseline, [recipe])
    live = [s for s in store.sweeps(baseline) if s["name"] == "live knob"]
    sweep_id = live[0]["id"] if live else store.add_sweep("live knob", baseline, {"live": True})
    jid = store.enqueue(baseline, [recipe.key], hardware or config.hardware_id(), priority=0, sweep=sweep_id)[0]
    store.requeue([jid], states=("cancelled",))
    return jid


def recipe_for(method: str, values: dict) -> Recipe:
    """One single-step recipe from a method name and knob values (validated like any spec)."""
    return Recipe((spec_type(method)(**values),))


def job_states(store: Store, baseline: str, hardware: str | None = None) -> dict[str, str]:
    """Recipe key -> state of every job of a baseline on a hardware id (to count what a sweep would add)."""
    hw = hardware or config.hardware_id()
    return {j["recipe"]: j["state"] for j in store.jobs(baseline=baseline) if j["hardware"] == hw}


def expand_recipes(method: str, values: dict[str, list]) -> list[Recipe]:
    """The recipes a sweep over these knob values would queue (for counting before enqueueing)."""
    return expand(spec_type(method), values)


def csv_columns(path: str | Path, encoding: str = "utf-8") -> list[str]:
    """The column names of a CSV/TSV/JSON lines/Parquet file (for the column pickers); a clear UserError
    when unreadable."""
    from .data import sniff_columns

    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"dataset file {p} does not exist")
    return sniff_columns(p, encoding)


def data_summary(store: Store, baseline: str) -> str | None:
    """What preparing the baseline dropped and truncated, with counts (None before it is prepared)."""
    row = store.baseline(baseline)
    return ((row or {}).get("info") or {}).get("cleaning_summary")
