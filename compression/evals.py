"""What sensitivity runs and searches keep in the store: their jobs' keys, recipes scored on the validation
split, a search's trials and its outcome. The test split never enters these tables.

A sensitivity run or a search is one row of the jobs table, so it is queued, claimed, heartbeated,
cancelled and re-queued like any job. Its recipe key is ``analysis:`` plus its request as canonical JSON,
so the same request is the same job.

Example::

    >>> key = analysis_key({"kind": "sensitivity", "method": "prune", "levels": [0.3, 0.5]})
    >>> request_of(key)["method"]
    'prune'
    >>> put_val_eval(store, fp, recipe.key, {"accuracy": 0.81, "loss": 0.43}, predictions)
"""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import sqlalchemy as sa

from .config import UserError
from .recipes import Recipe, spec_type
from .schema import analysis_outcomes, search_trials, val_evals
from .specs import SpecError
from .store import Store, _jsonable, now

ANALYSIS = "analysis:"
BASE = "[]"  # the baseline's recipe key: its validation score is every drop's reference


def analysis_key(request: dict) -> str:
    """The jobs-table recipe key of a sensitivity run or a search (canonical JSON of its request)."""
    return ANALYSIS + json.dumps(request, sort_keys=True, separators=(",", ":"))


def is_analysis(key: str) -> bool:
    return key.startswith(ANALYSIS)


def request_of(key: str) -> dict:
    """The request an analysis job was queued with."""
    return json.loads(key[len(ANALYSIS):])


def analysis_name(key: str) -> str:
    """A short name for an analysis job: ``search size within 1 point (quant)``, ``sensitivity prune``."""
    r = request_of(key)
    if r.get("kind") == "search":
        return f"search {r['objective']} within {r['max_drop']:g} points ({r['method']})"
    return f"sensitivity {r.get('method')} at {','.join(map(str, r.get('levels', [])))}"


def val_eval(store: Store, baseline: str, recipe: str) -> dict | None:
    """A recipe's stored validation score (with its predictions), or None."""
    with store.engine.connect() as c:
        row = c.execute(sa.select(val_evals.c.data, val_evals.c.predictions)
                        .where(val_evals.c.baseline == baseline, val_evals.c.recipe == recipe)).first()
    return None if row is None else {**row[0], "predictions": row[1]}


def put_val_eval(store: Store, baseline: str, recipe: str, data: dict, predictions: list[int]) -> None:
    """Store a recipe's validation score once (a second writer of the same recipe changes nothing)."""
    with store.engine.begin() as c:
        try:
            with c.begin_nested():
                c.execute(val_evals.insert().values(baseline=baseline, recipe=recipe, created_at=now(),
                                                    data=_jsonable(data), predictions=[int(p) for p in predictions]))
        except sa.exc.IntegrityError:
            pass


def val_eval_frame(store: Store, baseline: str) -> dict[str, dict]:
    """Every stored validation score of a baseline, by recipe key (without predictions)."""
    with store.engine.connect() as c:
        return {r: d for r, d in c.execute(sa.select(val_evals.c.recipe, val_evals.c.data)
                                          .where(val_evals.c.baseline == baseline))}


def add_trial(store: Store, job_id: int, source: str, recipe: str, data: dict) -> None:
    """Record one finished search trial (once per job, source and recipe)."""
    with store.engine.begin() as c:
        try:
            with c.begin_nested():
                c.execute(search_trials.insert().values(job_id=job_id, source=source, recipe=recipe,
                                                        created_at=now(), data=_jsonable(data)))
        except sa.exc.IntegrityError:
            pass


def trials(store: Store, job_id: int) -> list[dict]:
    """A search's finished trials, oldest first: source, recipe key and the trial's numbers."""
    with store.engine.connect() as c:
        rows = c.execute(sa.select(search_trials).where(search_trials.c.job_id == job_id)
                         .order_by(search_trials.c.id)).mappings().all()
    return [{"source": r["source"], "recipe": r["recipe"], "created_at": r["created_at"], **r["data"]} for r in rows]


def set_outcome(store: Store, job_id: int, data: dict) -> None:
    """What an analysis concluded (replaces an earlier conclusion of the same job)."""
    with store.engine.begin() as c:
        c.execute(analysis_outcomes.delete().where(analysis_outcomes.c.job_id == job_id))
        c.execute(analysis_outcomes.insert().values(job_id=job_id, created_at=now(), data=_jsonable(data)))


def outcome(store: Store, job_id: int) -> dict | None:
    with store.engine.connect() as c:
        row = c.execute(sa.select(analysis_outcomes.c.data).where(analysis_outcomes.c.job_id == job_id)).first()
    return None if row is None else row[0]


# ---------------------------------------------------------------- per-layer assignments and the table

LEVELS = {"prune": (0.3, 0.5, 0.7, 0.9), "quant": (2, 3, 4, 8)}  # the defaults
OFF = {"prune": 0.0, "quant": 32}  # the per-layer level that leaves a layer as it was
MAIN = {"prune": "sparsity", "quant": "bits"}
EMB = "embeddings"  # the word-embedding table as one more unit of a quantization search (32 = left in fp32)
EMB_LEVELS = [8, 4]  # the bit-widths quant's embeddings knob offers
UNSEEN = "unseen rows"  # the embedding rows of tokens the train split never uses, one more unit ("same": as the rest)
UNSEEN_LEVELS = ["2", "drop"]  # quant's unseen knob, mildest first


def check_levels(method: str, levels) -> list:
    """The levels of a sensitivity run or a search, checked: one clear sentence for a method without per-layer
    settings or a level its spec refuses."""
    if method not in LEVELS:
        raise UserError(f"per-layer sensitivity and search cover {', '.join(LEVELS)}; {method!r} has no per-layer "
                        "setting")
    levels = list(levels) or list(LEVELS[method])
    t = spec_type(method)
    out = []
    for lv in levels:
        try:
            t(**{MAIN[method]: lv, "kernel": "rtn"} if method == "quant" else {MAIN[method]: lv})
        except SpecError as e:
            raise UserError(f"level {lv}: {e}") from None
        out.append(int(lv) if method == "quant" else round(float(lv), 4))
    return sorted(set(out), reverse=method == "quant")  # mildest first


def assignment_recipe(method: str, levels: dict, base: dict | None = None) -> Recipe:
    """One recipe for a per-layer assignment (layer index -> level, and for quant optionally ``EMB`` -> the word
    embeddings' bits and ``UNSEEN`` -> the unseen tokens' rows); the same assignment is always the same recipe: the
    most common compressing level is the main setting, the others go in ``per_layer``.

    Example: ``assignment_recipe("prune", {0: 0.5, 1: 0.5, 2: 0.0})`` -> prune(sparsity=0.5,per_layer=2:0).
    """
    levels = dict(levels)
    kw = dict(base or {})
    emb, unseen = levels.pop(EMB, None), levels.pop(UNSEEN, None)
    if emb is not None:  # the embeddings are a unit of this assignment, not a fixed part of the base
        kw.pop("embeddings", None)
        if emb != OFF[method]:
            kw["embeddings"] = str(int(emb))
    if unseen is not None:
        kw.pop("unseen", None)
        if unseen != "same":
            kw["unseen"] = str(unseen)
    counts = Counter(lv for lv in levels.values() if lv != OFF[method])
    if not counts and "embeddings" not in kw and "unseen" not in kw:
        return Recipe(())
    # only the embeddings compressed: the main bit-width is a placeholder, every layer is listed at fp32
    main = max(counts, key=lambda lv: (counts[lv], lv if method == "prune" else -lv)) if counts else 8
    per_layer = tuple((u, lv) for u, lv in sorted(levels.items()) if lv != main)
    if method == "quant":
        kw.setdefault("kernel", "rtn")
    return Recipe((spec_type(method)(**{**kw, MAIN[method]: main, "per_layer": per_layer}),))


def unit_recipe(method: str, unit, level: float, n_layers: int, base: dict | None = None) -> Recipe:
    """Only ``unit`` (a layer index, ``EMB`` or ``UNSEEN``) compressed, at ``level``; every other unit left as it
    was."""
    levels = {u: (level if u == unit else OFF[method]) for u in range(n_layers)}
    if unit in (EMB, UNSEEN):
        levels[unit] = level
    return assignment_recipe(method, levels, base)


def table(store: Store, baseline: str, method: str, levels, n_layers: int, base: dict | None = None,
          emb_levels=(), unseen_levels=()) -> pd.DataFrame:
    """unit x level on validation: accuracy, loss, the drop against the baseline in points with its paired 95% CI,
    and the rise in loss (NaN where a cell is not scored yet). ``emb_levels`` adds the word embeddings as a unit,
    ``unseen_levels`` the embedding rows of tokens the train split never uses."""
    scores = val_eval_frame(store, baseline)
    base_loss = (scores.get(BASE) or {}).get("loss", np.nan)
    rows = []
    for u, lv in cells_of(n_layers, levels, emb_levels, unseen_levels):
        d = scores.get(unit_recipe(method, u, lv, n_layers, base).key) or {}
        rows.append({"unit": u if u in (EMB, UNSEEN) else f"layer {u}", "layer": u, "level": lv,
                     "accuracy": d.get("accuracy", np.nan),
                     "loss": d.get("loss", np.nan), "loss_rise": d.get("loss", np.nan) - base_loss,
                     "size_mib": d.get("size_bytes", np.nan) / 2**20,
                     "drop": 0.0 - 100 * d.get("accuracy_delta", np.nan),
                     "drop_lo": 0.0 - 100 * d.get("delta_hi", np.nan),
                     "drop_hi": 0.0 - 100 * d.get("delta_lo", np.nan)})
    return pd.DataFrame(rows)


def cells_of(n_layers: int, levels, emb_levels=(), unseen_levels=()) -> list[tuple]:
    """The (unit, level) cells of a sensitivity table: the layers, then the embeddings, then the unseen rows."""
    return ([(u, lv) for u in range(n_layers) for lv in levels] + [(EMB, lv) for lv in emb_levels]
            + [(UNSEEN, lv) for lv in unseen_levels])


def ranking(df: pd.DataFrame) -> pd.DataFrame:
    """Units from most to least sensitive: the mean validation drop over the levels scored, ties broken by the
    mean rise in validation loss (a small validation split moves accuracy in coarse steps)."""
    g = df.dropna(subset=["drop"]).groupby("unit", sort=False)[["drop", "loss_rise"]].mean()
    return g.sort_values(["drop", "loss_rise"], ascending=False)


def sentence(df: pd.DataFrame) -> str:
    """A plain sentence naming the most and the least sensitive unit, with their numbers."""
    r = ranking(df)
    if r.empty:
        return "No unit is scored yet."
    (most, m), (least, lo) = next(r.iterrows()), list(r.iterrows())[-1]
    return (f"{most.capitalize()} is the most sensitive: compressed alone, it costs {m['drop']:.1f} accuracy points "
            f"on average over the levels on validation (loss +{m['loss_rise']:.3f}); {least} is the least "
            f"({lo['drop']:.1f} points, loss +{lo['loss_rise']:.3f}).")


# ---------------------------------------------------------------- requests

OBJECTIVES = {"size": "size of the saved weight files (MiB)",
              "latency": "batch-1 latency, a short timing on validation inputs here (ms; search only)"}
DEFAULTS = {"size": ("quant", {"kernel": "rtn"}, [8, 4, 3, 2]),  # mixed bit-widths shrink the file (the word
            # embeddings are a unit of their own, see search_request)
            "latency": ("quant", {"kernel": "torch"}, [8])}  # int8 where it costs little, fp32 elsewhere


def search_request(max_drop: float, objective: str, method: str | None = None, levels=None, trials: int = 20,
                   seed: int = 0, embeddings: str | None = None, pareto: bool = False,
                   unseen: str | None = None) -> dict:
    """A search's request, checked: an impossible budget or an unknown objective is one clear sentence.

    ``embeddings`` (quant only): ``search`` makes the word-embedding table one more unit the search chooses for
    (fp32, 8 or 4 bits; the default of a size search, since the table is half of a small model); ``none``, ``8``
    or ``4`` fix it for every candidate alike. ``unseen`` (quant only): ``search`` makes the table's rows of tokens
    the train split never uses a unit too (as the other rows, 2 bits or dropped; the default of a size search);
    ``same``, ``2`` or ``drop`` fix them. ``pareto``: also measure the validation Pareto set on test."""
    if objective not in OBJECTIVES:
        raise UserError(f"--objective {objective!r} is not known: choose {' or '.join(OBJECTIVES)}")
    if not max_drop >= 0:
        raise UserError(f"--max-drop {max_drop:g} asks the compressed model to beat the baseline; give the accuracy "
                        "points you accept to lose, 0 or more (e.g. 1.0)")
    if max_drop > 100:
        raise UserError(f"--max-drop {max_drop:g} is more than 100 accuracy points")
    if not 0 <= trials <= 500:
        raise UserError(f"--trials must be between 0 and 500, got {trials}")
    d_method, base, d_levels = DEFAULTS[objective]
    method = method or d_method
    if method != d_method:
        base = {}
    if objective == "latency" and method == "prune":
        raise UserError("pruning leaves dense kernels as slow as before, so a latency search over sparsity finds "
                        "nothing faster; search latency with --method quant")
    levels = check_levels(method, levels or (d_levels if method == d_method else ()))
    extra: dict = {"pareto": True} if pareto else {}
    if method == "quant":
        emb = embeddings or ("search" if objective == "size" else "none")
        if emb not in ("none", "8", "4", "search"):
            raise UserError(f"--embeddings {emb!r} is not allowed: choose none, 8, 4 or search")
        if emb == "search":
            extra["emb_levels"] = list(EMB_LEVELS)
        elif emb != "none":
            base = {**base, "embeddings": emb}
        rows = unseen or ("search" if objective == "size" else "same")
        if rows not in ("same", "2", "drop", "search"):
            raise UserError(f"--unseen {rows!r} is not allowed: choose same, 2, drop or search")
        if rows != "same" and base.get("kernel") not in ("rtn", "torch"):
            raise UserError("--unseen needs kernel rtn or torch (the others store the embedding table whole)")
        if rows == "search":
            extra["unseen_levels"] = list(UNSEEN_LEVELS)
        elif rows != "same":
            base = {**base, "unseen": rows}
    elif embeddings not in (None, "none") or unseen not in (None, "same"):
        raise UserError("--embeddings and --unseen apply to a quantization search only")
    if objective == "latency" and set(levels) - {8}:
        raise UserError("a latency search runs real int8 kernels: give --levels 8 (the other bit-widths run "
                        "dequantized in fp32 here and are no faster)")
    return {"kind": "search", "objective": objective, "max_drop": round(float(max_drop), 3), "method": method,
            "levels": levels, "base": base, "trials": int(trials), "seed": int(seed), **extra}


def sensitivity_request(method: str, levels=None) -> dict:
    """A sensitivity run's request, checked."""
    return {"kind": "sensitivity", "method": method, "levels": check_levels(method, levels or ()),
            "base": {"kernel": "rtn"} if method == "quant" else {}}
