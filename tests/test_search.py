"""The accuracy-aware search: chooses on validation only, leaves the fragile layer alone, keeps stopped trials."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from compression import api
from compression.cli import main
from compression.training import Cancelled, CancelToken
from fragile import FRAGILE, LAYERS, fragile  # noqa: F401  (the fixture)


def _levels(out: dict) -> dict[int, float]:
    return {int(u): lv for u, lv in out["levels"].items() if u.isdigit()}


def _chosen(store, jid) -> dict:
    out = api.analysis_outcome(store, jid)
    trial = next(t for t in api.search_trials(store, jid).to_dict("records") if t["recipe"] == out["recipe_key"])
    return {**out, "levels": trial["levels"]}


def test_the_search_leaves_the_fragile_layer_least_compressed_and_measures_only_it(fragile, capsys):  # noqa: F811
    import optuna

    ws, args, fp = fragile
    assert main(["search", "--max-drop", "1.0", "--objective", "size", "--trials", "6", *args]) == 0
    out = capsys.readouterr().out
    assert "chose quant(" in out
    _, store = api.open_workspace(str(ws))
    jid = api.analyses(store, fp, "search")[0]["id"]
    chosen = _chosen(store, jid)
    levels = _levels(chosen)
    assert levels[FRAGILE] == 32  # kept in fp32 ...
    assert all(levels[u] < 32 for u in range(LAYERS) if u != FRAGILE)  # ... while every other layer is quantized
    assert chosen["drop"] <= 1.0 and chosen["origin"] == "search"
    emb = chosen["levels"]["embeddings"]  # the word embeddings are a unit of a size search too
    assert emb in (8, 4) and f"embeddings={emb}" in chosen["recipe"]
    # only the chosen recipe is measured on test, through the normal job path, in a sweep labelled origin=search
    final = store.job(chosen["job_id"])
    assert final["state"] == "done" and final["recipe"] == chosen["recipe_key"]
    sweep = next(s for s in store.sweeps(fp) if chosen["job_id"] in s["job_ids"] and s["name"] == "search")
    assert sweep["request"]["origin"] == "search" and sweep["request"]["search_job"] == jid
    df = api.results_frame(store, baseline=fp)
    row = df[df["job_id"] == chosen["job_id"]]
    assert len(row) == 1 and "per_layer" in row["recipe"].iloc[0]  # its recipe is readable in the details
    trials = api.search_trials(store, jid)
    assert set(trials["source"]) == {"greedy", "nsga2"}
    study = optuna.load_study(study_name=f"search-job-{jid}", storage=store.url)
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 6  # (a repeated recipe is one row)


def _poisoned_copy(pristine: Path, fp: str) -> Path:
    """The pristine workspace with its baseline pointing at its own folder and every test label flipped."""
    from compression.splits import load_split, save_splits

    _, store = api.open_workspace(str(pristine))
    row = store.baseline(fp)
    folder = pristine / "baselines" / Path(row["path"]).name
    store.mark_prepared(fp, str(folder), row["info"])
    splits = {name: load_split(folder / "data", name) for name in ("train", "val", "test")}
    splits["test"]["label"] = 1 - splits["test"]["label"]
    save_splits(folder / "data", splits)
    return pristine


def test_the_search_never_reads_the_test_split(fragile, monkeypatch):  # noqa: F811
    import compression.sensitivity as sensitivity
    from compression.search import run_analysis

    ws, args, fp = fragile
    poisoned = _poisoned_copy(Path(f"{ws}.pristine"), fp)
    real = sensitivity.load_split

    def no_test(folder, name, *a, **k):
        assert name != "test", "the search read the test split"
        return real(folder, name, *a, **k)

    monkeypatch.setattr(sensitivity, "load_split", no_test)
    chosen = []
    for where in (ws, poisoned):
        _, store = api.open_workspace(str(where))
        jid = api.enqueue_search(store, fp, 1.0, "size", trials=4, seed=3)
        run_analysis(store, store.job(jid), lambda f, m: None, CancelToken())
        chosen.append(api.analysis_outcome(store, jid)["recipe"])
    assert chosen[0] == chosen[1]
    assert json.loads((poisoned / "baselines").joinpath(Path(store.baseline(fp)["path"]).name, "data",
                                                        "splits.json").read_text())["test"]["rows"] > 0


def test_a_stopped_search_keeps_its_finished_trials(fragile):  # noqa: F811
    import optuna

    from compression.search import run_analysis

    ws, args, fp = fragile
    _, store = api.open_workspace(str(ws))
    jid = api.enqueue_search(store, fp, 1.0, "size", trials=5, seed=7)
    token = CancelToken()

    def progress(fraction, message):
        if message.startswith("NSGA-II trial 2/"):
            token.cancel()

    with pytest.raises(Cancelled):
        run_analysis(store, store.job(jid), progress, token)
    store.fail(jid, "cancelled by the user", state="cancelled")
    kept = api.search_trials(store, jid)
    assert len(kept[kept["source"] == "nsga2"]) == 2 and len(kept[kept["source"] == "greedy"]) >= 1
    study = optuna.load_study(study_name=f"search-job-{jid}", storage=store.url)
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 2
    assert api.enqueue_search(store, fp, 1.0, "size", trials=5, seed=7) == jid  # the same search, queued again
    run_analysis(store, store.job(jid), lambda f, m: None, CancelToken())
    after = api.search_trials(store, jid)
    assert after.head(len(kept))["recipe"].tolist() == kept["recipe"].tolist()  # nothing lost, nothing redone
    study = optuna.load_study(study_name=f"search-job-{jid}", storage=store.url)
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 5
    assert api.analysis_outcome(store, jid)["recipe"]


@pytest.mark.parametrize("argv, sentence", [
    (["--max-drop", "-1"], "error: --max-drop -1 asks the compressed model to beat the baseline; give the accuracy "
                           "points you accept to lose, 0 or more (e.g. 1.0)"),
    (["--objective", "speed"], "error: --objective 'speed' is not known: choose size or latency"),
    (["--objective", "latency", "--method", "prune"], "error: pruning leaves dense kernels as slow as before, so a "
                                                      "latency search over sparsity finds nothing faster; search "
                                                      "latency with --method quant"),
])
def test_impossible_requests_are_one_sentence_and_store_nothing(fragile, capsys, argv, sentence):  # noqa: F811
    ws, args, fp = fragile
    _, store = api.open_workspace(str(ws))
    before = len(store.jobs())
    assert main(["search", *argv, *args]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [sentence]
    assert len(store.jobs()) == before


def test_a_budget_no_setting_meets_is_one_sentence(fragile):  # noqa: F811
    from compression import search
    from compression.recipes import Recipe

    ws, args, fp = fragile
    _, store = api.open_workspace(str(ws))

    class Hopeless:  # every setting loses half the validation rows
        n_layers, base = LAYERS, {"accuracy": 1.0}

        def evaluate(self, recipe: Recipe, latency: bool = False) -> dict:
            return {"accuracy": 1.0 if not recipe.steps else 0.5, "size_bytes": 1000, "latency_ms": None}

    jid = api.enqueue_search(store, fp, 0.5, "size", levels=[8], trials=2, seed=11)
    search.run_search(store, store.job(jid), lambda f, m: None, CancelToken(), Hopeless())
    error = api.analysis_outcome(store, jid)["error"]
    assert error.startswith("no per-layer quant setting stays within 0.5 points of the baseline on validation")
    assert error.endswith("allow a larger --max-drop") and "\n" not in error
    assert not [s for s in store.sweeps(fp) if s["request"].get("search_job") == jid]  # nothing is measured


def test_the_search_page_draws_the_heatmap_and_refuses_a_negative_budget(fragile, monkeypatch):  # noqa: F811
    from streamlit.testing.v1 import AppTest

    ws, args, fp = fragile
    monkeypatch.setenv("COMPRESSION_WORKSPACE", str(ws))
    monkeypatch.setenv("COMPRESSION_NO_AUTOSTART", "1")
    monkeypatch.setenv("COMPRESSION_NO_WORKER_SPAWN", "1")
    paths, store = api.open_workspace(str(ws))
    jid = api.enqueue_sensitivity(store, fp, "prune", [0.3, 0.6])
    api.run_jobs(paths, store, [jid])
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=90)
    at.query_params["baseline"] = fp[:12]
    at.run()
    at.switch_page("pages/search.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert any(f"Layer {FRAGILE} is the most sensitive" in m.value for m in at.markdown)
    at.number_input(key="max_drop").set_value(-1.0)
    at.button(key="start_search").click().run()
    assert ("--max-drop -1 asks the compressed model to beat the baseline; give the accuracy points you accept to "
            "lose, 0 or more (e.g. 1.0)") in [e.value for e in at.error]  # (the newest search's own outcome may show too)
    at.number_input(key="max_drop").set_value(2.5)
    at.checkbox(key="pareto").check()
    at.button(key="start_search").click().run()
    newest = api.analyses(store, fp, "search")[0]["request"]
    assert newest["max_drop"] == 2.5 and newest["pareto"] is True  # the checkbox asks for the Pareto set on test


def test_greedy_second_pass_keeps_each_further_step_that_still_fits():
    import pandas as pd

    from compression.search import greedy

    ladders = {0: [32, 8, 4, 2], 1: [32, 8, 4, 2], 2: [32, 8, 4, 2]}
    table = {(0, 8): 0.1, (0, 4): 0.2, (0, 2): 1.5,  # the table fears unit 0 at 2 bits; alone it fits
             (1, 8): 0.0, (1, 4): 0.1, (1, 2): 0.3,
             (2, 8): 0.0, (2, 4): 0.4, (2, 2): 3.0}
    sens = pd.DataFrame([{"layer": u, "level": lv, "drop": d} for (u, lv), d in table.items()])
    real = {(0, 2): 0.0, (2, 2): 5.0}  # what validation says of a step the table got wrong

    class Score:
        budget = 1.0

        def __init__(self):
            self.seen = []

        def __call__(self, levels, source):
            self.seen.append(dict(levels))
            drop = sum(real.get((u, lv), table.get((u, lv), 0.0)) for u, lv in levels.items())
            return {"name": str(levels), "drop": drop, "feasible": drop <= self.budget}

    score = Score()
    got = greedy(score, sens, ladders, CancelToken())
    assert score.seen[0] == {0: 4, 1: 2, 2: 4}  # the first pass: each unit at its most aggressive step that fits alone
    assert got == {0: 2, 1: 2, 2: 4}  # the second pass kept unit 0 at 2 bits and reverted unit 2's step
    assert {0: 2, 1: 2, 2: 2} in score.seen


def test_the_embeddings_are_a_unit_of_the_assignment():
    from compression.evals import EMB, assignment_recipe

    only = assignment_recipe("quant", {0: 32, 1: 32, EMB: 4}, {"kernel": "rtn"})
    assert only.name == "quant(kernel=rtn,embeddings=4,per_layer=0:32;1:32)"
    assert assignment_recipe("quant", {0: 32, 1: 32, EMB: 32}, {"kernel": "rtn"}).steps == ()
    mixed = assignment_recipe("quant", {0: 4, 1: 3, EMB: 8}, {"kernel": "rtn"})
    assert mixed.key == assignment_recipe("quant", {EMB: 8, 1: 3, 0: 4}, {"kernel": "rtn"}).key
    assert mixed.name == "quant(bits=3,kernel=rtn,embeddings=8,per_layer=0:4)"


@pytest.mark.parametrize("pareto", [False, True])
def test_the_validation_pareto_set_is_measured_on_test_only_when_asked(fragile, pareto):  # noqa: F811
    from compression import search
    from compression.recipes import Recipe

    ws, args, fp = fragile
    _, store = api.open_workspace(str(ws))

    class Fake:  # accuracy falls and size shrinks with the bits taken off, so several trials trade one for the other
        n_layers, base = LAYERS, {"accuracy": 1.0}

        def evaluate(self, recipe: Recipe, latency: bool = False) -> dict:
            bits = dict(recipe.steps[0].per_layer) if recipe.steps else {}
            main = recipe.steps[0].bits if recipe.steps else 32
            total = sum(bits.get(u, main) for u in range(LAYERS)) if recipe.steps else 96
            return {"accuracy": 1.0 - (96 - total) / 1000, "size_bytes": 2**20 * total, "latency_ms": None}

    jid = api.enqueue_search(store, fp, 5.0, "size", levels=[8, 4], embeddings="none", trials=8, seed=5,
                             pareto=pareto)
    search.run_search(store, store.job(jid), lambda f, m: None, CancelToken(), Fake())
    out = api.analysis_outcome(store, jid)
    front = search.pareto_front(store, jid)
    assert len(front) > 1 and out["recipe_key"] in [t["recipe"] for t in front]
    sweep = next(s for s in store.sweeps(fp) if s["request"].get("search_job") == jid)
    queued = [store.job(j)["recipe"] for j in sweep["job_ids"]]
    if pareto:
        assert sorted(queued) == sorted(t["recipe"] for t in front)  # every point of the front, origin=search
        assert out["pareto_job_ids"] and sweep["request"]["origin"] == "search"
    else:
        assert queued == [out["recipe_key"]] and out["pareto_job_ids"] == []


def test_greedy_in_a_size_search_reverts_the_step_that_costs_most_per_mib_saved():
    import pandas as pd

    from compression.evals import UNSEEN
    from compression.search import greedy

    ladders = {0: [32, 4], 1: [32, 4], UNSEEN: ["same", "drop"]}
    # unit 0's step costs less accuracy than the unseen rows' but saves a tenth of the bytes
    cells = {(0, 4): (0.4, 9.0), (1, 4): (0.1, 9.0), (UNSEEN, "drop"): (0.6, 6.0)}
    sens = pd.DataFrame([{"layer": u, "level": lv, "drop": d, "size_mib": s} for (u, lv), (d, s) in cells.items()])

    class Score:
        budget = 0.8

        def __call__(self, levels, source):
            drop = sum(cells.get((u, lv), (0.0, 0))[0] for u, lv in levels.items())
            return {"name": str(levels), "drop": drop, "feasible": drop <= self.budget}

    assert greedy(Score(), sens, ladders, CancelToken(), base_mib=10.0) == {0: 32, 1: 4, UNSEEN: "drop"}
    assert greedy(Score(), sens, ladders, CancelToken()) == {0: 4, 1: 4, UNSEEN: "same"}  # by drop alone


def test_greedy_reverts_the_smallest_saving_first_among_steps_the_table_calls_free():
    import pandas as pd

    from compression.search import greedy

    ladders = {0: [32, 4], 1: [32, 4]}
    sens = pd.DataFrame([{"layer": 0, "level": 4, "drop": -0.3, "size_mib": 9.0},   # saves 1 MiB
                         {"layer": 1, "level": 4, "drop": 0.0, "size_mib": 2.0}])   # saves 8 MiB

    class Score:
        budget = 0.5

        def __call__(self, levels, source):
            drop = 0.8 if all(lv == 4 for lv in levels.values()) else 0.0  # together they cost; alone nothing
            return {"name": str(levels), "drop": drop, "feasible": drop <= self.budget}

    assert greedy(Score(), sens, ladders, CancelToken(), base_mib=10.0) == {0: 32, 1: 4}
