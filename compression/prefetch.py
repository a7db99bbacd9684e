"""Prefetch for the live knob: while the knob is on and the worker has nothing queued, it measures the
slider's grid values nearest the current position (full protocol, lowest priority), so a release on one
of them shows a stored point at once.

The page writes its wish (baseline, method, knob, current value, the slider's grid) to a small JSON file
in the workspace each time it runs; a wish older than ``config.KEEPALIVE_SECONDS`` is ignored.

Example::

    >>> wish(paths, fp, "prune", "sparsity", 0.5, [0.0, 0.01, ..., 0.99])
    >>> next_setting(store, paths, fp, hardware)        # the worker, when idle
    Recipe(prune(sparsity=0.51))
"""
from __future__ import annotations

import json
import time

from . import config
from .config import Paths
from .recipes import Recipe
from .registry import entry
from .store import Store

NEAREST = 4  # grid values each side of the slider's position worth measuring ahead
PRIORITY = 2  # after every sweep job (1) and every live setting (0)


def _file(paths: Paths, baseline: str):
    return paths.workspace / "prefetch" / f"{baseline}.json"


def wish(paths: Paths, baseline: str, method: str, knob: str, value, grid: list) -> None:
    """The page's slider for ``method`` stands at ``value``; ``grid`` is every value it can take."""
    f = _file(paths, baseline)
    f.parent.mkdir(parents=True, exist_ok=True)
    wishes = _read(f)
    norm = (lambda v: round(v, 6) if isinstance(v, float) else v)  # 0.30000000000000004 is the slider's 0.3
    wishes[method] = {"knob": knob, "value": norm(value), "grid": [norm(v) for v in grid], "at": time.time()}
    tmp = f.with_suffix(".tmp")
    tmp.write_text(json.dumps(wishes))
    tmp.replace(f)


def _read(f) -> dict:
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return {}


def nearest(grid: list, value, n: int = NEAREST) -> list:
    """The ``n`` grid values each side of ``value`` (itself excluded), nearest first.

    Example: ``nearest([0.1, 0.2, 0.3, 0.4], 0.2, 1)`` -> ``[0.1, 0.3]``.
    """
    if value not in grid:
        return []
    i = grid.index(value)
    out = []
    for d in range(1, n + 1):
        out += [grid[j] for j in (i - d, i + d) if 0 <= j < len(grid)]
    return out


def setting(method: str, knob: str, value) -> Recipe:
    """The one-step recipe the live knob queues for this position (every other knob at its default)."""
    return Recipe((entry(method).spec(**{knob: value}),))


def next_setting(store: Store, paths: Paths, baseline: str, hardware: str) -> Recipe | None:
    """The nearest grid value of a fresh wish whose setting is not stored (in any state) on ``hardware``."""
    known = {j["recipe"] for j in store.jobs(baseline=baseline) if j["hardware"] == hardware}
    now = time.time()
    for method, w in sorted(_read(_file(paths, baseline)).items(), key=lambda kv: -kv[1].get("at", 0)):
        if now - w.get("at", 0) > config.KEEPALIVE_SECONDS:
            continue
        for v in nearest(w["grid"], w["value"]):
            try:
                r = setting(method, w["knob"], v)
            except Exception:  # a grid value the spec refuses (e.g. rank 0 = unset): not a setting
                continue
            if r.key not in known:
                return r
    return None


def enqueue(store: Store, baseline: str, recipe: Recipe, hardware: str) -> int:
    """Queue one prefetched setting, after everything else, in the baseline's "prefetch" sweep."""
    mine = [s for s in store.sweeps(baseline) if s["name"] == "prefetch"]
    sweep = mine[0]["id"] if mine else store.add_sweep("prefetch", baseline, {"prefetch": True})
    return store.enqueue(baseline, [recipe.key], hardware, priority=PRIORITY, sweep=sweep)[0]


def stored_values(states: dict[str, str], method: str, knob: str, grid: list) -> list:
    """The grid values whose settings are measured (done), given ``states`` (recipe key -> job state on
    this hardware, as ``api.job_states`` reads them once per page run): what a release shows at once."""
    out = []
    for v in grid:
        try:
            if states.get(setting(method, knob, v).key) == "done":
                out.append(v)
        except Exception:  # a grid value the spec refuses (e.g. rank 0 = unset): not a setting
            continue
    return out
