"""How long a sweep will take, from the jobs this store has already timed (the Sweep page and the CLI's sweep).

Each setting is timed from stored jobs of its method that share its values of the knobs that decide how long a
job takes (declared ``knob(..., cost=True)``): OBC pruning takes minutes a job where Wanda takes seconds, so one
median per method would mislead.
"""
from __future__ import annotations

import dataclasses
import statistics

from .recipes import Recipe, spec_type
from .registry import entry
from .specs import SpecError


def _knobs(method: str) -> list[dict]:
    """A single method's knobs with their metadata; none for a chain, whose jobs match on the whole chain."""
    try:
        return [{"name": f.name, **f.metadata} for f in dataclasses.fields(spec_type(method))]
    except SpecError:
        return []


def estimate_seconds(df, method: str, recipes=()) -> tuple[float | None, str]:
    """Worker seconds for these settings of a method, and where that number comes from, in words.

    Each setting is matched to this method's stored jobs that share its values of the knobs that decide how long
    a job takes (``knob(cost=True)``: prune's criterion, distill's steps...); their median is measured here. Where
    no stored job shares them, the method's other jobs give an estimate that says which values were never run
    here. A post-training method never run here is estimated from the other post-training methods' jobs; a method
    that trains gets no estimate until one of its own jobs lands, since training takes far longer than anything
    else's timing says. Without settings (``recipes``) it speaks for one job of any setting."""
    if df is None or df.empty or "seconds_total" not in df:
        return None, "no estimate: nothing has run here yet"
    n = len(recipes) or 1
    own = df[df["method"] == method][["recipe", "seconds_total"]].dropna()
    if own.empty:
        if not _post_training(method):
            return None, (f"no estimate: {method} trains and has not run here yet, "
                          "so other methods' times do not carry over")
        fast = {m for m in df["method"].unique() if m != "baseline" and _post_training(m)}
        vals = df[df["method"].isin(fast)]["seconds_total"].dropna().tolist()
        if not vals:
            return None, "no estimate: no post-training method has run here yet"
        per = statistics.median(vals)
        return per * n, (f"{_at(per)} (estimated from the median of {_jobs(len(vals))} of other post-training methods "
                         f"here: {', '.join(sorted(fast))}; {method} has not run here yet)")
    cost = [k["name"] for k in _knobs(method) if k.get("cost")]
    stored = [(_cost_values(name, method, cost), s) for name, s in own.itertuples(index=False)]
    groups: dict[tuple, int] = {}
    for r in recipes:
        v = tuple(getattr(r.steps[-1], c) for c in cost)
        groups[v] = groups.get(v, 0) + 1
    if not groups:
        groups = {None: 1}
    seen = [{sv[i] for sv, _ in stored if sv is not None} for i in range(len(cost))]
    # the knobs worth naming: those whose value differs between the stored jobs or between this sweep's settings
    varied = [i for i in range(len(cost)) if len(seen[i] | {v[i] for v in groups if v is not None}) > 1]
    total, words = 0.0, []
    for v, count in groups.items():
        same = [s for sv, s in stored if v is None or sv == v]
        if same:
            per = statistics.median(same)
            named = ", ".join(f"{cost[i]}={v[i]}" for i in varied) if v is not None else ""
            why = f"measured here: the median of {len(same)} {method} job{'s' * (len(same) != 1)}" + (
                f" with {named}" if named else "")
        else:
            # the nearest stored jobs: those sharing the most of these knobs' values
            shared = [(sum(a == b for a, b in zip(sv, v)) if sv is not None else -1, s) for sv, s in stored]
            best = max(k for k, _ in shared)
            per = statistics.median(s for k, s in shared if k == best)
            near = sum(k == best for k, _ in shared)
            new = [i for i in varied if v[i] not in seen[i]] or varied
            named = ", ".join(f"{cost[i]}={v[i]}" for i in new)
            why = (f"estimated: no {method} job with {named} has run here, and that changes how long a job takes; "
                   f"this is the median of the {near} {method} job{'s' * (near != 1)} closest to it"
                   + (f", sharing {best} of its {len(cost)} time-deciding knobs" if best >= 0 else ""))
        total += per * count
        words.append((count, per, why))
    if len(words) == 1:
        return total, f"{_at(words[0][1])} ({words[0][2]})"
    return total, ": " + "; ".join(f"{c} at {per:.1f} s each ({why})" for c, per, why in words)


def _at(per: float) -> str:
    return f"at {per:.1f} s per job"


def _cost_values(name: str, method: str, cost: list[str]) -> tuple | None:
    """A stored job's values of the knobs that decide its time; None where its recipe no longer reads."""
    if not cost:  # a method without such knobs, or a chain: every stored job of it matches
        return ()
    try:
        steps = Recipe.parse(name).steps
    except Exception:  # an old store's recipe name the grammar no longer reads: it still counts, unmatched
        return None
    return tuple(getattr(steps[-1], c) for c in cost) if steps and steps[-1].method == method else None


def _jobs(n: int) -> str:
    return f"{n} job{'s' * (n != 1)}"


def _post_training(method: str) -> bool:
    """True for a method, or a chain of them ('prune>quant'), that trains nothing."""
    try:
        return all(entry(m).post_training for m in method.split(">"))
    except SpecError:
        return False


def sweep_estimate(df, recipes) -> tuple[float | None, str]:
    """The worker time of these recipes in all (methods and chains mixed), in words: the CLI's sweep line."""
    by_method: dict[str, list] = {}
    for r in recipes:
        by_method.setdefault(r.method, []).append(r)
    total, parts, unknown = 0.0, [], []
    for method, rs in by_method.items():
        s, words = estimate_seconds(df, method, rs)
        if s is None:
            unknown.append(f"{method}: {words}")
            continue
        total += s
        parts.append(f"{method}: {len(rs)} setting{'s' * (len(rs) != 1)}{'' if words[0] == ':' else ' '}{words}")
    if not parts:
        return None, "; ".join(unknown) or "nothing to run"
    return total, "; ".join(parts + unknown)


def fmt_seconds(s: float) -> str:
    """Seconds in words a person reads at a glance: 8.2 s, 75 s, 3.5 min, 2.1 h."""
    if s < 90:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    return f"{s / 60:.1f} min" if s < 5400 else f"{s / 3600:.1f} h"


