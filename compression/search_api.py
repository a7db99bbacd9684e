"""The API of per-layer sensitivity and the accuracy-aware search (compression.api re-exports it): queue them
as jobs, read their tables, trials and outcomes. Nothing here loads torch; the worker runs the jobs.

Example::

    >>> job = enqueue_search(store, fp, max_drop=1.0, objective="size")
    >>> ensure_worker(paths)
    >>> search_trials(store, job)                 # the trials so far, as they land
    >>> analysis_outcome(store, job)["recipe"]    # the chosen recipe, then measured on test as a normal job
"""
from __future__ import annotations

from pathlib import Path

from . import config
from .config import UserError
from .recipes import Recipe
from .store import Store


def layer_count(store: Store, baseline: str) -> int | None:
    """The baseline model's number of encoder layers, read from its config.json (None when not known yet)."""
    import json

    from .families import model_type_at

    row = store.baseline(baseline) or {}
    folder = Path(row["path"]) / "model" if row.get("path") else Path((row.get("model_source") or {}).get("path") or "")
    if model_type_at(folder) is None:
        return None
    cfg = json.loads((folder / "config.json").read_text())
    return next((int(cfg[k]) for k in ("num_hidden_layers", "n_layer", "n_layers", "num_layers") if k in cfg), None)


def check_per_layer(store: Store, baseline: str, recipes: list[Recipe]) -> None:
    """One sentence for a per-layer map that names a layer the baseline's model does not have."""
    n = layer_count(store, baseline)
    for r in recipes:
        for s in r.steps:
            pl = getattr(s, "per_layer", ())
            if n is not None and pl and max(i for i, _ in pl) >= n:
                raise UserError(f"{s.short()} names layer {max(i for i, _ in pl)}, but this model has {n} layers "
                                f"(0..{n - 1})")


def job_name(key: str) -> str:
    """A job's name for progress lines and tables: an analysis by its request, any other by its recipe."""
    from .report import recipe_name

    return recipe_name(key)


def search_request(max_drop: float, objective: str, method: str | None = None, levels=None, trials: int = 20,
                   seed: int = 0, embeddings: str | None = None, pareto: bool = False,
                   unseen: str | None = None) -> dict:
    """A search's request checked before anything is stored (an impossible budget is one UserError sentence)."""
    from .evals import search_request as checked

    return checked(max_drop, objective, method, levels, trials, seed, embeddings, pareto, unseen)


def sensitivity_request(method: str, levels=None) -> dict:
    """A sensitivity run's request checked before anything is stored."""
    from .evals import sensitivity_request as checked

    return checked(method, levels)


def enqueue_analysis(store: Store, baseline: str, request: dict, hardware: str | None = None) -> int:
    """Queue a sensitivity run or a search as one job (a stopped or failed one continues where it stopped);
    its job id. The same request is the same job."""
    from .evals import analysis_key

    if store.baseline(baseline) is None:
        raise UserError(f"unknown baseline {baseline[:12]}; prepare it first")
    jid = store.enqueue(baseline, [analysis_key(request)], hardware or config.hardware_id())[0]
    store.requeue([jid])
    return jid


def enqueue_sensitivity(store: Store, baseline: str, method: str, levels=None, hardware: str | None = None) -> int:
    """Queue per-layer sensitivity for ``method`` at ``levels`` (validation split only); its job id.

    Example: ``enqueue_sensitivity(store, fp, "prune", [0.3, 0.5, 0.7, 0.9])``.
    """
    return enqueue_analysis(store, baseline, sensitivity_request(method, levels), hardware)


def enqueue_search(store: Store, baseline: str, max_drop: float, objective: str, method: str | None = None,
                   levels=None, trials: int = 20, seed: int = 0, hardware: str | None = None,
                   embeddings: str | None = None, pareto: bool = False, unseen: str | None = None) -> int:
    """Queue an accuracy-aware search (greedy, then optuna NSGA-II) within ``max_drop`` validation points;
    its job id. An impossible budget raises UserError with one sentence. With ``pareto`` the validation Pareto
    set is measured on test too (each in the search's sweep, ``origin: search``), not only the chosen recipe.

    Example: ``enqueue_search(store, fp, max_drop=1.0, objective="size")``.
    """
    request = search_request(max_drop, objective, method, levels, trials, seed, embeddings, pareto, unseen)
    return enqueue_analysis(store, baseline, request, hardware)


def analysis_outcome(store: Store, job_id: int) -> dict | None:
    """What a sensitivity run or search concluded: the chosen recipe and its measurement job, or ``error``."""
    from .evals import outcome

    return outcome(store, job_id)


def analyses(store: Store, baseline: str, kind: str) -> list[dict]:
    """A baseline's sensitivity runs or searches (``kind``), newest first: each job with its ``request``."""
    from .evals import is_analysis, request_of

    out = [{**j, "request": request_of(j["recipe"])} for j in store.jobs(baseline=baseline) if is_analysis(j["recipe"])]
    return [j for j in reversed(out) if j["request"].get("kind") == kind]


def search_trials(store: Store, job_id: int) -> "pd.DataFrame":
    """A search's finished trials as they land: source, recipe, validation accuracy, drop, objective, feasible."""
    import pandas as pd

    from .evals import trials

    cols = ["source", "name", "val_accuracy", "drop", "objective", "objective_label", "feasible", "recipe"]
    return pd.DataFrame(trials(store, job_id), columns=cols + ["levels", "created_at"])


def sensitivity_frame(store: Store, baseline: str, method: str, levels=None) -> tuple["pd.DataFrame", dict | None]:
    """unit x level -> validation accuracy and drop (points, with its paired 95% CI), and the baseline's own
    validation score (accuracy and its 95% CI) when scored."""
    from .evals import BASE, check_levels, table, val_eval

    n = layer_count(store, baseline) or 0
    levels = check_levels(method, levels or [])
    base_kw = {"kernel": "rtn"} if method == "quant" else {}
    base = val_eval(store, baseline, BASE)
    return table(store, baseline, method, levels, n, base_kw), base


def sensitivity_sentence(df) -> str:
    """A plain sentence naming the most and least sensitive units."""
    from .evals import sentence

    return sentence(df)

