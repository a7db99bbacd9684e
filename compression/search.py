"""Accuracy-aware search: per-layer settings that meet a validation budget, smallest or fastest first.

1. The sensitivity table (compression/sensitivity.py) for the method and its levels.
2. Greedy allocation: each layer starts at the most aggressive level whose drop alone fits the budget (the
   least sensitive layers get the most compression); while the whole model's validation drop exceeds the
   budget, the step whose sensitivity costs the most is reverted one level.
3. optuna's NSGA-II (validation accuracy up, the objective down, the budget as a constraint) over the
   per-layer levels, starting from the greedy answer. Its trials live in the same database as the store.
4. The answer is chosen on validation alone: the feasible trial with the smallest objective. Only that recipe
   is then queued as an ordinary job (a sweep named "search", ``origin: search``) and measured on the test
   split by the full protocol, through the normal job path.

Every trial lands in ``search_trials`` as it finishes, so a stopped search keeps what it found.

Example::

    >>> key = analysis_key(search_request(max_drop=1.0, objective="size"))
    >>> store.enqueue(fp, [key], hardware)                   # the worker runs it like any job
    >>> outcome(store, job_id)["recipe"]                      # the chosen recipe's name
"""
from __future__ import annotations

import warnings

from .evals import (OBJECTIVES, OFF, add_trial, assignment_recipe, is_analysis, outcome, request_of, search_request,
                    sensitivity_request, set_outcome, table, trials, unit_recipe)
from .recipes import Recipe
from .sensitivity import ValBench, run_sensitivity
from .store import Store
from .training import CancelToken, Progress

def run_analysis(store: Store, job: dict, progress: Progress, cancel: CancelToken) -> None:
    """The worker's entry for an analysis job (a sensitivity run or a search)."""
    req = request_of(job["recipe"])
    bench = ValBench(store, job["baseline"], progress, cancel)
    try:
        if req["kind"] == "sensitivity":
            run_sensitivity(store, job, progress, cancel, bench)
        else:
            run_search(store, job, progress, cancel, bench)
    finally:
        bench.close()


class _Trials:
    """Scores an assignment on validation and records it as a trial of this search."""

    def __init__(self, store: Store, job: dict, req: dict, bench: ValBench):
        self.store, self.job, self.req, self.bench = store, job, req, bench
        self.budget = req["max_drop"]

    def __call__(self, levels: dict[int, float], source: str) -> dict:
        recipe = assignment_recipe(self.req["method"], levels, self.req["base"])
        ev = self.bench.evaluate(recipe, latency=self.req["objective"] == "latency")
        drop = 100 * (self.bench.base["accuracy"] - ev["accuracy"])
        value = ev["latency_ms"] if self.req["objective"] == "latency" else ev["size_bytes"] / 2**20
        data = {"name": recipe.name, "val_accuracy": ev["accuracy"], "drop": drop, "objective": value,
                "objective_label": OBJECTIVES[self.req["objective"]], "feasible": drop <= self.budget + 1e-9,
                "levels": {str(u): lv for u, lv in sorted(levels.items())}}
        add_trial(self.store, self.job["id"], source, recipe.key, data)
        return data


def greedy(score: _Trials, sens, ladder: list, n_layers: int, cancel: CancelToken,
           progress: Progress = lambda f, m: None) -> dict[int, float] | None:
    """Greedy allocation from the sensitivity table; None when even one layer at the mildest level is too much."""
    drop = {(int(r.layer), r.level): r.drop for r in sens.itertuples()}

    def cost(u: int, i: int) -> float:
        return 0.0 if i == 0 else drop.get((u, ladder[i]), float("inf"))

    idx = {u: max([i for i in range(1, len(ladder)) if cost(u, i) <= score.budget] or [0]) for u in range(n_layers)}
    while True:
        cancel.check()
        if not any(idx.values()):
            return None
        levels = {u: ladder[i] for u, i in idx.items()}
        got = score(levels, "greedy")
        progress(0.3 + 0.2 * (1 - sum(idx.values()) / (n_layers * (len(ladder) - 1))),
                 f"greedy: {got['name']}, drop {got['drop']:.2f} points on validation")
        if got["feasible"]:
            return levels
        # revert the step that costs the most accuracy per the table (ties: the most compressed layer)
        u = max((u for u in idx if idx[u]), key=lambda u: (cost(u, idx[u]) - cost(u, idx[u] - 1), idx[u]))
        idx[u] -= 1


def nsga2(store: Store, score: _Trials, ladder: list, n_layers: int, start: dict | None, progress: Progress,
          cancel: CancelToken) -> None:
    """optuna NSGA-II over the per-layer levels, its trials in the store's database (resumed when stopped)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    n_trials, seed = score.req["trials"], score.req["seed"]
    kw = {"engine_kwargs": {"connect_args": {"timeout": 30}}} if store.url.startswith("sqlite") else {}
    storage = optuna.storages.RDBStorage(store.url, **kw)
    sampler = optuna.samplers.NSGAIISampler(population_size=max(4, min(10, n_trials // 3)), seed=seed)
    study = optuna.create_study(study_name=f"search-job-{score.job['id']}", storage=storage, sampler=sampler,
                                directions=["maximize", "minimize"], load_if_exists=True)
    done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    if not study.trials and start is not None:
        study.enqueue_trial({f"layer_{u}": lv for u, lv in start.items()})

    def objective(trial):
        cancel.check()
        levels = {u: trial.suggest_categorical(f"layer_{u}", ladder) for u in range(n_layers)}
        got = score(levels, "nsga2")
        trial.set_constraint("drop_over_budget", got["drop"] - score.budget)  # feasible when <= 0
        trial.set_user_attr("recipe", got["name"])
        k = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) + 1
        progress(0.5 + 0.45 * k / max(1, n_trials), f"NSGA-II trial {k}/{n_trials}: {got['name']}, "
                                                    f"drop {got['drop']:.2f} points on validation")
        return got["val_accuracy"], got["objective"]

    if n_trials > done:
        study.optimize(objective, n_trials=n_trials - done, catch=())


def choose(store: Store, job_id: int) -> dict | None:
    """The feasible trial with the smallest objective (ties: higher validation accuracy), on validation alone."""
    ok = [t for t in trials(store, job_id) if t["feasible"] and t["recipe"] != "[]"]
    return min(ok, key=lambda t: (round(t["objective"], 6), -t["val_accuracy"])) if ok else None


def run_search(store: Store, job: dict, progress: Progress, cancel: CancelToken, bench: ValBench) -> None:
    """The body of a search job: sensitivity, greedy, NSGA-II, choose; then queue the chosen recipe's
    measurement on the test split as an ordinary job."""
    req = request_of(job["recipe"])
    method, levels = req["method"], req["levels"]
    progress(0.01, "per-layer sensitivity on the validation split")
    n = bench.n_layers
    base = bench.base
    for k, u in enumerate(range(n)):
        for lv in levels:
            cancel.check()
            progress(0.02 + 0.28 * k / n, f"sensitivity: layer {u} at {lv}")
            bench.evaluate(unit_recipe(method, u, lv, n, req["base"]))
    sens = table(store, job["baseline"], method, levels, n, req["base"])
    ladder = [OFF[method], *levels]
    score = _Trials(store, job, req, bench)
    progress(0.3, "greedy allocation: the least sensitive layers get the most compression")
    start = greedy(score, sens, ladder, n, cancel, progress)
    if req["trials"]:
        nsga2(store, score, ladder, n, start, progress, cancel)
    best = choose(store, job["id"])
    info = {"kind": "search", "objective": req["objective"], "max_drop": req["max_drop"],
            "baseline_val_accuracy": base["accuracy"], "layers": n, "trials": len(trials(store, job["id"]))}
    if best is None:
        mildest = sens[sens["level"] == levels[0]].dropna(subset=["drop"]).sort_values("drop").head(1)
        least = (f"; the mildest single step, {mildest['unit'].iloc[0]} at {levels[0]}, drops "
                 f"{mildest['drop'].iloc[0]:.2f} points") if len(mildest) else ""
        set_outcome(store, job["id"], {**info, "error": f"no per-layer {method} setting stays within "
                                                        f"{req['max_drop']:g} points of the baseline on validation"
                                                        f"{least}; allow a larger --max-drop"})
        return
    sweep = store.add_sweep("search", job["baseline"], {"origin": "search", "search_job": job["id"], **req,
                                                        "val_accuracy": best["val_accuracy"], "drop": best["drop"]})
    final = store.enqueue(job["baseline"], [best["recipe"]], job["hardware"], sweep=sweep)[0]
    set_outcome(store, job["id"], {**info, "recipe": best["name"], "recipe_key": best["recipe"],
                                   "val_accuracy": best["val_accuracy"], "drop": best["drop"],
                                   "objective_value": best["objective"], "objective_label": best["objective_label"],
                                   "job_id": final, "sweep_id": sweep, "origin": "search"})
    progress(1.0, f"chose {best['name']}; its measurement on the test split is queued as job {final}")


__all__ = ["search_request", "sensitivity_request", "run_analysis", "choose", "greedy", "is_analysis", "outcome",
           "trials", "Recipe"]
