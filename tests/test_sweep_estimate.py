"""The Sweep page's time estimate: each setting is timed from stored jobs that share the knobs deciding its time.

Before, one median per method was used whatever the knobs, so a sweep of OBC pruning (minutes a job) was
promised at Wanda's seconds. The frame here has the columns `ui.state.results` gives the page."""
from __future__ import annotations

import pandas as pd
import pytest

from compression import api
from compression.estimate import estimate_seconds, fmt_seconds, sweep_estimate


def _frame(jobs: list[tuple[str, dict, float]]) -> pd.DataFrame:
    rows = [{"method": "baseline", "recipe": "baseline", "seconds_total": 1.0}]
    rows += [{"method": m, "recipe": api.recipe_for(m, k).name, "seconds_total": s} for m, k, s in jobs]
    return pd.DataFrame(rows)


STORED = _frame([("prune", {"sparsity": 0.5, "criterion": "wanda"}, 10.0),
                 ("prune", {"sparsity": 0.7, "criterion": "wanda"}, 12.0),
                 ("prune", {"sparsity": 0.5, "criterion": "sparsegpt"}, 20.0),
                 ("prune", {"sparsity": 0.5, "criterion": "obc"}, 200.0),
                 ("quant", {"bits": 8}, 3.0)])


def test_each_setting_takes_the_time_of_stored_jobs_with_its_criterion():
    recipes = api.expand_recipes("prune", {"sparsity": [0.6, 0.8], "criterion": ["wanda", "obc"]})
    seconds, words = estimate_seconds(STORED, "prune", recipes)
    assert seconds == pytest.approx(2 * 11.0 + 2 * 200.0)  # not 4 x the median of all four (15 s)
    assert "2 at 11.0 s each (measured here: the median of 2 prune jobs with criterion=wanda)" in words
    assert "2 at 200.0 s each (measured here: the median of 1 prune job with criterion=obc)" in words


def test_an_unrun_knob_value_is_estimated_from_the_closest_jobs_and_says_so():
    recipes = api.expand_recipes("prune", {"sparsity": [0.6], "criterion": ["sparsegpt"], "refit": ["on"]})
    seconds, words = estimate_seconds(STORED, "prune", recipes)
    assert seconds == pytest.approx(20.0)  # the sparsegpt job without the refit, the nearest one
    assert words.startswith("at 20.0 s per job (estimated: no prune job with refit=on has run here")
    assert "measured" not in words


def test_knobs_that_do_not_change_the_time_share_one_median():
    recipes = api.expand_recipes("prune", {"sparsity": [0.3, 0.9], "criterion": ["wanda"]})
    seconds, words = estimate_seconds(STORED, "prune", recipes)
    assert seconds == pytest.approx(22.0)
    assert words == "at 11.0 s per job (measured here: the median of 2 prune jobs with criterion=wanda)"


def test_methods_never_run_here_are_estimated_or_refused_an_estimate():
    seconds, words = estimate_seconds(STORED, "lowrank", api.expand_recipes("lowrank", {"rank_fraction": [0.5]}))
    assert seconds and words.startswith("at ") and "estimated from the median" in words and "lowrank has not run" in words
    seconds, words = estimate_seconds(STORED, "distill", api.expand_recipes("distill", {"steps": [10]}))
    assert seconds is None and "distill trains" in words
    assert estimate_seconds(pd.DataFrame(), "prune")[0] is None


def test_the_time_deciding_knobs_are_declared_on_the_specs():
    cost = {m: {k["name"] for k in api.knobs(m) if k.get("cost")} for m in ("prune", "quant", "distill", "heads")}
    assert {"criterion", "refit", "recover_steps"} <= cost["prune"] and "sparsity" not in cost["prune"]
    assert {"kernel", "algorithm", "bits"} <= cost["quant"] and "group_size" not in cost["quant"]
    assert "steps" in cost["distill"] and {"importance", "recover_steps"} <= cost["heads"]


def test_a_chain_that_trains_nothing_is_estimated_and_a_mixed_sweep_adds_up():
    recipes = [api.Recipe.parse("prune(sparsity=0.5)>quant(bits=8)")]
    seconds, words = estimate_seconds(STORED, "prune>quant", recipes)
    assert seconds and "estimated from the median" in words  # a post-training chain, not "trains"
    ran = STORED.copy()
    ran.loc[len(ran)] = {"method": "prune>quant", "recipe": "prune(sparsity=0.5)>quant(bits=8)", "seconds_total": 7.0}
    seconds, words = estimate_seconds(ran, "prune>quant", [api.Recipe.parse("prune(sparsity=0.7)>quant(bits=8)")])
    assert (seconds, words) == (7.0, "at 7.0 s per job (measured here: the median of 1 prune>quant job)")
    mixed = api.expand_recipes("prune", {"sparsity": [0.6], "criterion": ["obc"]}) + api.expand_recipes(
        "quant", {"bits": [4, 8]})
    seconds, words = sweep_estimate(STORED, mixed)
    assert seconds == pytest.approx(200.0 + 2 * 3.0)
    assert words.startswith("prune: 1 setting at 200.0 s per job") and "quant: 2 settings: 1 at 3.0 s each" in words
    assert "(estimated: no quant job with bits=4 has run here" in words  # bits decides the kernel under auto


def test_the_cli_sweep_says_how_long_it_will_take(prepared, tmp_path, capsys):
    import shutil

    from compression.cli import main
    ws, args = prepared
    copy = tmp_path / "ws"
    shutil.copytree(ws, copy, ignore=shutil.ignore_patterns("worker.lock"))
    args = [a if a != str(ws) else str(copy) for a in args]
    paths, store = api.open_workspace(str(copy))
    fp = store.baselines()[0]["fingerprint"]
    recipes = api.expand_recipes("quant", {"bits": [3], "kernel": ["rtn"], "group_size": [16]})
    if any(j["recipe"] == recipes[0].key for j in store.jobs()):  # another test of the shared fixture ran it
        pytest.skip("the shared workspace already holds this setting")
    seconds, words = sweep_estimate(api.results_frame(store, baseline=fp), recipes)
    assert main(["sweep", "--method", "quant", "--bits", "3", "--kernel", "rtn", "--group-size", "16", *args]) == 0
    err = capsys.readouterr().err
    # the store's own timed jobs, in words: measured where it ran this bits/kernel pair, else said to be estimated
    assert f"time: about {fmt_seconds(seconds)} of worker time ({words})" in err and words.startswith("quant: 1 setting ")
    assert "(measured here: the median of" in words or "(estimated: no quant job with" in words
