"""Per-layer settings as recipes, and per-layer sensitivity on the validation split."""
from __future__ import annotations

import pytest

from compression import api
from compression.cli import main
from compression.recipes import Recipe
from compression.specs import PruneSpec, QuantSpec, SpecError
from fragile import FRAGILE, LAYERS, fragile  # noqa: F401  (the fixture)


# ---------------------------------------------------------------- per_layer in specs and recipes

def test_equal_per_layer_maps_are_one_recipe_key():
    a = Recipe.parse("prune(sparsity=0.8, per_layer=((5, 0.5), (4, 0.5)))")
    b = Recipe.parse("prune(sparsity=0.8,per_layer=4:0.5;5:0.5)")
    c = Recipe((PruneSpec(sparsity=0.8, per_layer={4: 0.5, 5: 0.50000000001, 6: 0.8}),))  # 6 at the main level
    assert a.key == b.key == c.key
    assert hash(a.steps[0]) == hash(c.steps[0]) and a.steps[0].per_layer == ((4, 0.5), (5, 0.5))
    assert Recipe.from_key(a.key) == a and Recipe.parse(a.name) == a  # the text form reads back
    assert a.key != Recipe.parse("prune(sparsity=0.8,per_layer=4:0.5)").key
    assert Recipe.parse("quant(bits=4,per_layer=1:8;2:4)").key == Recipe.parse("quant(bits=4,per_layer=1:8)").key


@pytest.mark.parametrize("text, words", [
    ("prune(per_layer=1:1.5)", "a layer takes 0..0.99"),
    ("quant(bits=4,per_layer=1:9)", "2..8 bits, or 32"),
    ("quant(bits=4,per_layer=x)", "cannot be read"),
    ("quant(bits=4,per_layer=1:4;1:8)", "names layer 1 twice"),
    ("quant(bits=8,kernel=torch,per_layer=1:4)", "8 or 32"),
    ("prune(sparsity=0.5,pattern=2:4,per_layer=1:0.3)", "pattern=unstructured"),
])
def test_impossible_per_layer_levels_are_one_sentence(text, words):
    with pytest.raises(SpecError) as e:
        Recipe.parse(text)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_per_layer_from_the_command_line_and_a_layer_the_model_lacks(fragile, capsys):  # noqa: F811
    ws, args, fp = fragile
    assert main(["sweep", "--method", "prune", "--sparsity", "0.5", "--per-layer", "1:0;7:0.3", "--detach",
                 *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: prune(per_layer=1:0;7:0.3) names layer 7, but this model has 3 layers (0..2)"]
    paths, store = api.open_workspace(str(ws))
    assert not any("per_layer" in j["recipe"] and "[7" in j["recipe"] for j in store.jobs())


def test_each_layer_gets_its_own_level(tiny_model):
    import pandas as pd
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from compression.engine import compress
    from compression.workload import Workload

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    frame = pd.DataFrame({"text": ["good film"] * 4, "label": [1] * 4})
    wl = Workload(tok, frame, frame, ["neg", "pos"])
    pruned = compress(model, Recipe((PruneSpec(sparsity=0.8, per_layer="1:0.2"),)), wl).module
    zeros = [float((layer.intermediate.dense.weight == 0).float().mean()) for layer in pruned.bert.encoder.layer]
    assert zeros[0] == pytest.approx(0.8, abs=0.02) and zeros[1] == pytest.approx(0.2, abs=0.02)
    cm = compress(model, Recipe((QuantSpec(bits=2, per_layer="1:32"),)), wl)
    assert {p.meta["bits"] for n, p in cm.packed.items() if ".layer.0." in n} == {2}
    assert not [n for n in cm.packed if ".layer.1." in n]  # layer 1 stays fp32
    kept = cm.module.bert.encoder.layer[1].output.dense.weight
    assert torch.equal(kept, model.bert.encoder.layer[1].output.dense.weight)


# ---------------------------------------------------------------- sensitivity

@pytest.mark.parametrize("method, levels", [("prune", "0.3,0.6"), ("quant", "4,8")])
def test_the_fragile_layer_ranks_most_sensitive(fragile, method, levels, capsys):  # noqa: F811
    ws, args, fp = fragile
    assert main(["sensitivity", "--method", method, "--levels", levels, *args]) == 0
    out = capsys.readouterr().out
    assert f"Layer {FRAGILE} is the most sensitive" in out
    _, store = api.open_workspace(str(ws))
    df, base = api.sensitivity_frame(store, fp, method, api.parse_values(levels, float))
    assert len(df) == LAYERS * 2 and df["drop"].notna().all() and base["rows"] == 100
    worst = df.groupby("layer")["drop"].mean()
    assert worst.idxmax() == FRAGILE and worst[FRAGILE] > 20 and worst.drop(FRAGILE).max() < 5


def test_a_cancelled_sensitivity_run_keeps_its_cells_and_continues(fragile):  # noqa: F811
    from compression.search import run_analysis
    from compression.training import Cancelled, CancelToken

    ws, args, fp = fragile
    _, store = api.open_workspace(str(ws))
    jid = api.enqueue_sensitivity(store, fp, "prune", [0.2, 0.4])
    job = store.job(jid)
    token = CancelToken()

    def progress(fraction, message):
        if message.startswith("layer 1 at 0.2"):  # after two of the six cells
            token.cancel()

    with pytest.raises(Cancelled):
        run_analysis(store, job, progress, token)
    df, _ = api.sensitivity_frame(store, fp, "prune", [0.2, 0.4])
    assert df["drop"].notna().sum() == 2
    seen = []
    run_analysis(store, job, lambda f, m: seen.append(m), CancelToken())
    df, _ = api.sensitivity_frame(store, fp, "prune", [0.2, 0.4])
    assert df["drop"].notna().all()
    assert [m for m in seen if m.startswith("layer")][0].startswith("layer 0 at 0.2")  # walks the cells ...
    assert api.analysis_outcome(store, jid)["sentence"].startswith(f"Layer {FRAGILE} is the most sensitive")


def test_sensitivity_refuses_a_method_without_per_layer_levels(fragile, capsys):  # noqa: F811
    ws, args, fp = fragile
    assert main(["sensitivity", "--method", "distill", *args]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: per-layer sensitivity and search cover prune, quant; 'distill' has no per-layer setting"]
    assert main(["sensitivity", "--method", "quant", "--levels", "9", *args]) == 2
    assert "level 9" in capsys.readouterr().err


def test_the_heatmap_shows_each_cell_and_the_baseline_noise_band():
    import pandas as pd

    from ui.search import heatmap, trials_figure

    df = pd.DataFrame({"unit": ["layer 0", "layer 0", "layer 1", "layer 1"], "layer": [0, 0, 1, 1],
                       "level": [0.3, 0.6] * 2, "drop": [0.0, 1.0, 12.0, float("nan")],
                       "drop_lo": [-1.0, 0.0, 9.0, float("nan")], "drop_hi": [1.0, 2.0, 15.0, float("nan")]})
    fig = heatmap(df, {"accuracy": 0.9, "accuracy_lo": 0.85, "accuracy_hi": 0.95, "rows": 100}, "prune")
    assert fig.data[0].text[1] == ["12.0", ""] and "not scored yet" in fig.data[0].hovertext[1][1]
    assert "baseline 90.0% on validation (95% CI 85.0–95.0%" in fig.layout.title.text
    trials = pd.DataFrame({"source": ["greedy", "nsga2"], "name": ["a", "b"], "val_accuracy": [0.9, 0.85],
                           "drop": [0.0, 5.0], "objective": [1.0, 0.5], "objective_label": ["size (MiB)"] * 2,
                           "feasible": [True, False], "recipe": ["ka", "kb"]})
    fig = trials_figure(trials, 0.9, 1.0, chosen="ka")
    assert [t.name for t in fig.data] == ["greedy trials", "nsga2 trials", "chosen"]
    assert any("budget: 1 points" in (a.text or "") for a in fig.layout.annotations)
