"""The embedding rows of tokens the train split never uses: quant's ``unseen`` knob (2 bits or dropped), its saved
form, where it is refused, and the size search's unit for it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from compression import api
from compression.artifacts import load, weight_bytes
from compression.config import UserError
from compression.engine import compress
from compression.recipes import Recipe
from compression.specs import QuantSpec, SpecError
from compression.workload import Workload
from conftest import FILLER, NEG, POS, baseline_args, make_csv, make_tiny_model

RARE = [f"rare{i}" for i in range(400)]  # in the vocabulary, never in the train split: most of the tiny table


def _with_rare_words(path):
    """The tiny BERT with ``RARE`` appended to its vocabulary (and rows for them in its embedding table)."""
    from transformers import AutoModelForSequenceClassification, BertTokenizerFast

    make_tiny_model(path, head=True)
    tok = BertTokenizerFast.from_pretrained(path)
    vocab = sorted(tok.get_vocab(), key=tok.get_vocab().get) + RARE
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    torch.manual_seed(1)
    model.resize_token_embeddings(len(vocab), mean_resizing=False)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def rare(tmp_path_factory):
    """(model, tokenizer, train frame, a batch that uses rare words)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = _with_rare_words(tmp_path_factory.mktemp("rare") / "model")
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"text": [" ".join(rng.choice(POS + NEG + FILLER, 6)) for _ in range(60)],
                          "label": rng.integers(0, 2, 60)})
    batch = dict(tok(["good rare3 film", "rare7 rare9 bad"], padding=True, return_tensors="pt"))
    return model, tok, train, batch


def _apply(rare, spec, tmp_path, val=None):
    model, tok, train, _ = rare
    wl = Workload(tok, train, train if val is None else val, ["negative", "positive"], scratch=tmp_path)
    return compress(model, Recipe((spec,)), wl)


def _table(cm) -> torch.Tensor:
    return cm.module.get_input_embeddings().weight.detach()


def _unseen_ids(tok) -> list[int]:
    return [tok.convert_tokens_to_ids(w) for w in RARE]


@pytest.mark.parametrize("emb", ["none", "4"])
def test_unseen_rows_take_fewer_bits_or_none_and_the_file_shrinks(rare, tmp_path, emb):
    model, tok, _, batch = rare
    original = model.get_input_embeddings().weight.detach().clone()
    rows = _unseen_ids(tok)
    seen = [i for i in range(len(original)) if i not in set(rows)]
    sizes, tables = {}, {}
    for unseen in ("same", "2", "drop"):
        cm = _apply(rare, QuantSpec(bits=8, kernel="rtn", embeddings=emb, unseen=unseen), tmp_path / unseen)
        tables[unseen] = _table(cm)
        sizes[unseen] = weight_bytes(cm.save(tmp_path / f"art-{unseen}"))
        again = load(tmp_path / f"art-{unseen}")  # the saved form rebuilds the same table and the same answers
        assert torch.equal(_table(again), tables[unseen])
        assert np.allclose(again.predict(batch), cm.predict(batch), atol=1e-5)
    assert torch.equal(tables["2"][seen], tables["same"][seen])  # the rows the train split uses are untouched
    assert torch.equal(tables["drop"][seen], tables["same"][seen])
    if emb == "none":
        assert torch.equal(tables["same"], original)
    assert not tables["drop"][rows].any()  # dropped rows read back as zeros
    two = tables["2"][rows]
    assert max(len(torch.unique(r)) for r in two) <= 4 and not torch.equal(two, tables["same"][rows])
    per_row = original.shape[1] * (4 if emb == "none" else 0.5)  # bytes a row takes when stored like the others
    dim = original.shape[1]
    assert sizes["same"] - sizes["drop"] >= len(rows) * per_row - len(original) / 8 - 1024  # all but the row mask
    assert sizes["2"] - sizes["drop"] == pytest.approx(len(rows) * (dim / 4 + 2), abs=512)  # 2-bit codes + a scale


def test_only_the_train_split_decides_which_rows_are_unseen(rare, tmp_path):
    model, tok, train, _ = rare
    spec = QuantSpec(bits=8, kernel="rtn", embeddings="4", unseen="drop")
    plain = _table(_apply(rare, spec, tmp_path / "a"))
    poisoned = pd.DataFrame({"text": [" ".join(RARE[i:i + 5]) for i in range(0, 400, 5)], "label": 0})
    assert torch.equal(_table(_apply(rare, spec, tmp_path / "b", val=poisoned)), plain)  # val never counts
    wider = pd.concat([train, pd.DataFrame({"text": ["rare5 good"], "label": [1]})], ignore_index=True)
    wl = Workload(tok, wider, train, ["negative", "positive"], scratch=tmp_path / "c")
    row = tok.convert_tokens_to_ids("rare5")
    assert not plain[row].any() and _table(compress(model, Recipe((spec,)), wl))[row].any()  # train does


@pytest.mark.parametrize("kw, words", [
    ({"kernel": "ort"}, "quant.kernel=ort stores the word-embedding table whole"),
    ({"kernel": "quanto"}, "quant.kernel=quanto stores the word-embedding table whole"),
    ({"kernel": "nbits", "bits": 4, "group_size": 32}, "quant.kernel=nbits stores the word-embedding table whole"),
])
def test_kernels_that_store_the_table_whole_refuse_it_in_one_sentence(kw, words):
    with pytest.raises(SpecError, match=words):
        QuantSpec(**{"bits": 8, **kw, "unseen": "2"})


@pytest.mark.parametrize("kw, words", [
    ({"method": "prune", "unseen": "drop"}, "--embeddings and --unseen apply to a quantization search only"),
    ({"unseen": "4"}, "--unseen '4' is not allowed: choose same, 2, drop or search"),
])
def test_the_search_refuses_an_impossible_unseen_request(kw, words):
    with pytest.raises(UserError, match=words):
        api.search_request(1.0, "size", **kw)


def test_the_unseen_rows_are_a_unit_of_the_assignment():
    from compression.evals import EMB, UNSEEN, assignment_recipe

    only = assignment_recipe("quant", {0: 32, 1: 32, UNSEEN: "drop"}, {"kernel": "rtn"})
    assert only.name == "quant(kernel=rtn,unseen=drop,per_layer=0:32;1:32)"
    assert assignment_recipe("quant", {0: 32, EMB: 32, UNSEEN: "same"}, {"kernel": "rtn"}).steps == ()
    assert api.search_request(1.0, "size")["unseen_levels"] == ["2", "drop"]  # a size search's default
    assert "unseen_levels" not in api.search_request(1.0, "latency")


@pytest.fixture(scope="module")
def rare_ws(tmp_path_factory):
    """A prepared baseline whose vocabulary has 400 words the train split never uses (nor validation)."""
    from compression.cli import main

    root = tmp_path_factory.mktemp("rare-ws")
    model = _with_rare_words(root / "model")
    args = baseline_args(model, make_csv(root / "reviews.csv", n=600)) + ["--workspace", str(root / "ws")]
    assert main(["prepare", *args]) == 0
    return root / "ws", args


def test_the_search_scores_the_unseen_rows_and_drops_them_when_harmless(rare_ws):
    from compression.cli import main
    from compression.evals import UNSEEN, table

    ws, args = rare_ws
    assert main(["search", "--max-drop", "1.0", "--objective", "size", "--levels", "8", "--embeddings", "none",
                 "--trials", "2", *args]) == 0
    _, store = api.open_workspace(str(ws))
    fp = store.baselines()[0]["fingerprint"]
    job = api.analyses(store, fp, "search")[0]
    req = job["request"]
    sens = table(store, fp, "quant", req["levels"], 2, req["base"], unseen_levels=req["unseen_levels"])
    cells = sens[sens["unit"] == UNSEEN]
    assert list(cells["level"]) == ["2", "drop"] and (cells["drop"].abs() < 1e-9).all()  # validation never uses them
    out = api.analysis_outcome(store, job["id"])
    assert "unseen=drop" in out["recipe"]  # harmless and the biggest saving here: chosen
