"""Accuracy-aware search: per-layer settings that meet a validation budget, smallest or fastest first.

The units are the encoder layers and, for a quantization search that asks for it (a size search does by
default), the word-embedding table (fp32, 8 or 4 bits) and that table's rows of tokens the train split never
uses (stored as the other rows, in 2 bits, or dropped).

1. The sensitivity table (compression/sensitivity.py) for the method and its levels, one unit at a time.
2. Greedy allocation: each unit starts at the most aggressive level whose drop alone fits the budget (the
   least sensitive units get the most compression); while the whole model's validation drop exceeds the
   budget, the step whose sensitivity costs the most is reverted one level. Once it fits, a second pass
   tries one more step on each unit, least sensitive first, and keeps each step that still fits.
3. optuna's NSGA-II (validation accuracy up, the objective down, the budget as a constraint) over the
   per-unit levels, starting from the greedy answer. Its trials live in the same database as the store.
4. The answer is chosen on validation alone: the feasible trial with the smallest objective. Only that recipe
   (and, when asked, the validation Pareto set) is then queued as ordinary jobs (a sweep named "search",
   ``origin: search``) and measured on the test split by the full protocol, through the normal job path.

Every trial lands in ``search_trials`` as it finishes, so a stopped search keeps what it found.

Example::

    >>> key = analysis_key(search_request(max_drop=1.0, objective="size"))
    >>> store.enqueue(fp, [key], hardware)                   # the worker runs it like any job
    >>> outcome(store, job_id)["recipe"]                      # the chosen recipe's name
"""
from __future__ import annotations

import warnings

from .evals import (BASE, EMB, OBJECTIVES, OFF, UNSEEN, add_trial, assignment_recipe, cells_of, is_analysis, outcome,
                    request_of, search_request, sensitivity_request, set_outcome, table, trials, unit_recipe)
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

    def __call__(self, levels: dict, source: str) -> dict:
        recipe = assignment_recipe(self.req["method"], levels, self.req["base"])
        ev = self.bench.evaluate(recipe, latency=self.req["objective"] == "latency")
        drop = 100 * (self.bench.base["accuracy"] - ev["accuracy"])
        value = ev["latency_ms"] if self.req["objective"] == "latency" else ev["size_bytes"] / 2**20
        order = sorted(levels, key=lambda u: (u == EMB, u == UNSEEN, u if isinstance(u, int) else 0))  # layers first
        data = {"name": recipe.name, "val_accuracy": ev["accuracy"], "drop": drop, "objective": value,
                "objective_label": OBJECTIVES[self.req["objective"]], "feasible": drop <= self.budget + 1e-9,
                "levels": {str(u): levels[u] for u in order}}
        add_trial(self.store, self.job["id"], source, recipe.key, data)
        return data


def _param(u) -> str:
    return {EMB: EMB, UNSEEN: "unseen_rows"}.get(u, f"layer_{u}")


def greedy(score: _Trials, sens, ladders: dict, cancel: CancelToken,
           progress: Progress = lambda f, m: None, base_mib: float | None = None) -> dict | None:
    """Greedy allocation from the sensitivity table (``ladders``: unit -> its levels, mildest first, the first
    leaving it as it was); None when even one unit at the mildest level is too much.

    First pass: each unit starts at the most aggressive level whose drop alone fits the budget, and the step the
    table says costs most is reverted until the whole model fits. Second pass: once it fits, each unit in turn,
    least sensitive next step first, takes one step more; a step that still fits on validation is kept.
    With ``base_mib`` (a size search: the baseline's size, the table's cells have theirs in ``size_mib``), a step's
    cost is its drop per MiB it saves, so a step that saves a lot (the embedding table's) is not reverted before a
    layer's step that saves little."""
    drop = {(r.layer, r.level): r.drop for r in sens.itertuples()}
    size = {(r.layer, r.level): r.size_mib for r in sens.itertuples()} if base_mib is not None else {}
    total = sum(len(ladder) - 1 for ladder in ladders.values())

    def cost(u, i: int) -> float:
        return 0.0 if i == 0 else drop.get((u, ladders[u][i]), float("inf"))

    def per_mib(u, i: int) -> float:
        """The step to level i: its drop per MiB saved (just its drop without sizes); inf when it saves nothing.
        A step the table scores at no cost or a gain (noise) counts as costing 0.1 points, so among those the one
        that saves the least is reverted first."""
        step = cost(u, i) - cost(u, i - 1)
        if not size:
            return step
        step = max(step, 0.1)
        saved = (base_mib if i == 1 else size.get((u, ladders[u][i - 1]), 0.0)) - size.get((u, ladders[u][i]), 0.0)
        return step / saved if saved > 1e-9 else float("inf")

    tried = [0]

    def run(idx: dict, note: str) -> dict:
        cancel.check()
        got = score({u: ladders[u][i] for u, i in idx.items()}, "greedy")
        tried[0] += 1
        progress(0.3 + 0.2 * min(1.0, tried[0] / (total + len(ladders))),
                 f"greedy{note}: {got['name']}, drop {got['drop']:.2f} points on validation")
        return got

    idx = {u: max([i for i in range(1, len(ladder)) if cost(u, i) <= score.budget] or [0])
           for u, ladder in ladders.items()}
    while True:
        if not any(idx.values()):
            return None
        if run(idx, "")["feasible"]:
            break
        # revert the step that costs the most accuracy (per MiB) per the table (ties: the most compressed unit)
        u = max((u for u in idx if idx[u]), key=lambda u: (per_mib(u, idx[u]), idx[u]))
        idx[u] -= 1
    frozen: set = set()
    while True:
        more = [u for u in idx if u not in frozen and idx[u] + 1 < len(ladders[u]) and cost(u, idx[u] + 1) < 1e9]
        if not more:
            return {u: ladders[u][i] for u, i in idx.items()}
        u = min(more, key=lambda u: (per_mib(u, idx[u] + 1), str(u)))
        idx[u] += 1
        if not run(idx, " (second pass)")["feasible"]:
            idx[u] -= 1
            frozen.add(u)


def nsga2(store: Store, score: _Trials, ladders: dict, start: dict | None, progress: Progress,
          cancel: CancelToken) -> None:
    """optuna NSGA-II over the per-unit levels, its trials in the store's database (resumed when stopped)."""
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
        study.enqueue_trial({_param(u): lv for u, lv in start.items()})

    def objective(trial):
        cancel.check()
        levels = {u: trial.suggest_categorical(_param(u), ladder) for u, ladder in ladders.items()}
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
    ok = [t for t in trials(store, job_id) if t["feasible"] and t["recipe"] != BASE]
    return min(ok, key=lambda t: (round(t["objective"], 6), -t["val_accuracy"])) if ok else None


def pareto_front(store: Store, job_id: int) -> list[dict]:
    """The search's validation Pareto set: the trials no other trial beats on both validation accuracy and the
    objective, smallest objective first (within the budget or not; one trial per recipe)."""
    by_key = {t["recipe"]: t for t in trials(store, job_id) if t["recipe"] != BASE}
    front, best = [], -1.0
    for t in sorted(by_key.values(), key=lambda t: (round(t["objective"], 6), -t["val_accuracy"])):
        if t["val_accuracy"] > best:
            front.append(t)
            best = t["val_accuracy"]
    return front


def run_search(store: Store, job: dict, progress: Progress, cancel: CancelToken, bench: ValBench) -> None:
    """The body of a search job: sensitivity, greedy, NSGA-II, choose; then queue the chosen recipe's
    measurement on the test split as an ordinary job (and, when asked, the validation Pareto set's)."""
    req = request_of(job["recipe"])
    method, levels = req["method"], req["levels"]
    emb_levels, unseen_levels = req.get("emb_levels") or [], req.get("unseen_levels") or []
    progress(0.01, "per-unit sensitivity on the validation split")
    n = bench.n_layers
    base = bench.base
    cells = cells_of(n, levels, emb_levels, unseen_levels)
    for k, (u, lv) in enumerate(cells):
        cancel.check()
        progress(0.02 + 0.28 * k / len(cells), f"sensitivity: {'layer ' * isinstance(u, int)}{u} at {lv}")
        bench.evaluate(unit_recipe(method, u, lv, n, req["base"]))
    sens = table(store, job["baseline"], method, levels, n, req["base"], emb_levels, unseen_levels)
    ladders = {u: [OFF[method], *levels] for u in range(n)}
    if emb_levels:
        ladders[EMB] = [OFF[method], *emb_levels]
    if unseen_levels:
        ladders[UNSEEN] = ["same", *unseen_levels]
    score = _Trials(store, job, req, bench)
    progress(0.3, "greedy allocation: the least sensitive units get the most compression")
    base_mib = base["size_bytes"] / 2**20 if req["objective"] == "size" and base.get("size_bytes") else None
    start = greedy(score, sens, ladders, cancel, progress, base_mib)
    if req["trials"]:
        nsga2(store, score, ladders, start, progress, cancel)
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
    front = [t["recipe"] for t in pareto_front(store, job["id"]) if t["recipe"] != best["recipe"]]
    ids = store.enqueue(job["baseline"], [best["recipe"], *(front if req.get("pareto") else [])], job["hardware"],
                        sweep=sweep)
    set_outcome(store, job["id"], {**info, "recipe": best["name"], "recipe_key": best["recipe"],
                                   "val_accuracy": best["val_accuracy"], "drop": best["drop"],
                                   "objective_value": best["objective"], "objective_label": best["objective_label"],
                                   "job_id": ids[0], "pareto_job_ids": ids[1:], "sweep_id": sweep, "origin": "search"})
    also = f" with the validation Pareto set's {len(ids) - 1} other recipes" if req.get("pareto") else ""
    progress(1.0, f"chose {best['name']}; its measurement on the test split is queued as job {ids[0]}{also}")


__all__ = ["search_request", "sensitivity_request", "run_analysis", "choose", "greedy", "is_analysis", "outcome",
           "trials", "pareto_front", "Recipe"]
