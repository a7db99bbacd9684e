"""The family adapters (compression/families.py), on tiny random models of every family.

Each method that reaches into a model's parts goes through the adapter; these tests check that it really
shrinks what it says, that the model still runs and reloads the same, and that ONNX takes the family's inputs.
The full family x method matrix with real per-family tokenizers lives in test_families.py.
"""
from __future__ import annotations

import zlib

import pandas as pd
import pytest
import torch

from compression import artifacts
from compression.config import UserError
from compression.families import family, family_of
from compression.registry import method_for
from compression.specs import DistillSpec, HeadsSpec, LayersSpec, NeuronsSpec, PruneSpec, QuantSpec
from compression.workload import Workload

SIZE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=100,
            num_labels=2, max_position_embeddings=64)
SPECIAL = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)


def config(name: str):
    import transformers as T

    return {
        "bert": lambda: T.BertConfig(**SIZE),
        "distilbert": lambda: T.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, vocab_size=100,
                                                 num_labels=2, max_position_embeddings=64),
        "roberta": lambda: T.RobertaConfig(type_vocab_size=1, **SIZE, **SPECIAL),
        "electra": lambda: T.ElectraConfig(embedding_size=16, **SIZE),
        "deberta-v2": lambda: T.DebertaV2Config(relative_attention=True, pos_att_type=["p2c", "c2p"],
                                                position_buckets=8, **SIZE),
        "albert": lambda: T.AlbertConfig(embedding_size=16, **SIZE),
        "mpnet": lambda: T.MPNetConfig(**SIZE, **SPECIAL),
        "modernbert": lambda: T.ModernBertConfig(cls_token_id=1, sep_token_id=2, global_attn_every_n_layers=2,
                                                 **SIZE, **SPECIAL),
        "gpt2": lambda: T.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_inner=64, vocab_size=100, num_labels=2,
                                     n_positions=64, **SPECIAL),
        "llama": lambda: T.LlamaConfig(num_key_value_heads=2, **SIZE, **SPECIAL),
        "qwen2": lambda: T.Qwen2Config(num_key_value_heads=4, **SIZE, **SPECIAL),
    }[name]()


FAMILIES = ["bert", "distilbert", "roberta", "electra", "deberta-v2", "albert", "mpnet", "modernbert", "gpt2",
            "llama", "qwen2"]


def build(name: str):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config(name)).eval()


class Tokenizer:
    """Word ids from a hash, right-padded with 0: enough for training and importance batches."""

    def __init__(self, names):
        self.model_input_names = names

    def __call__(self, texts, padding=True, truncation=True, max_length=16, return_tensors="pt"):
        ids = [[5 + zlib.crc32(w.encode()) % 90 for w in t.split()][:max_length] for t in texts]
        n = max(map(len, ids))
        out = {"input_ids": torch.tensor([x + [0] * (n - len(x)) for x in ids]),
               "attention_mask": torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x in ids])}
        if "token_type_ids" in self.model_input_names:
            out["token_type_ids"] = torch.zeros_like(out["input_ids"])
        return out


def workload(model, tmp_path) -> Workload:
    words = "good bad film plot story cast fine dull great poor".split()
    texts = [" ".join(words[(i * 7 + j) % 10] for j in range(3 + i % 5)) for i in range(96)]
    df = pd.DataFrame({"text": texts, "label": [i % 2 for i in range(96)]})
    tok = Tokenizer(family(model).input_names(model))
    return Workload(tok, df, df, ["a", "b"], seq_len=16, scratch=tmp_path, teacher=None)


def batch(model):
    ids = torch.randint(5, 100, (3, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    ids[0, 8:], mask[0, 8:] = 0, 0  # padding; the decoders' pad id is 0 too
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return {n: feed[n] for n in family(model).input_names(model)}


def shapes(model):
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


@pytest.mark.parametrize("name", FAMILIES)
def test_heads_neurons_layers_really_shrink_and_the_model_still_runs(name, tmp_path):
    for spec, what in [(HeadsSpec(fraction=0.5), "attention"), (NeuronsSpec(fraction=0.5, importance="norm"), "ffn"),
                       (LayersSpec(fraction=0.5), "layers")]:
        model = build(name)
        fam = family(model)
        before, n_params = shapes(model), sum(p.numel() for p in model.parameters())
        cm = method_for(spec)(model, spec, workload(model, tmp_path))
        out = cm.predict(batch(model))
        assert out.shape == (3, 2) and torch.isfinite(torch.from_numpy(out)).all()
        if what == "layers":
            assert fam.num_layers(cm.module) == 1
            assert cm.info["layers_total"] == 2 and len(cm.info["layers_kept"]) == 1
        else:
            part = fam.o if what == "attention" else fam.ffn_out
            full = 4 * fam.head_dim(model) if what == "attention" else 64
            widths = [fam.part(b, part).weight.shape[1] for b in fam.blocks(cm.module)]
            assert sum(widths) < full * len(widths), (name, what, widths)
        if not (fam.shared and what == "layers"):  # ALBERT runs its one layer fewer times: nothing to shrink
            assert sum(p.numel() for p in cm.module.parameters()) < n_params and shapes(cm.module) != before
        cm.save(tmp_path / what)
        again = artifacts.load(tmp_path / what)
        assert (abs(again.predict(batch(model)) - out) < 1e-5).all(), (name, what)


@pytest.mark.parametrize("name", FAMILIES)
def test_pruned_neurons_are_exactly_the_masked_ones(name, tmp_path):
    """Removing neurons computes what the full model computes with those neurons' outputs zeroed: every input
    row that feeds them (both halves of a fused gated FFN such as ModernBERT's Wi) goes with the same index."""
    spec = NeuronsSpec(fraction=0.75, importance="norm")
    model, full = build(name), build(name)
    fam = family(model)
    fam.linears(full)  # GPT-2: the same Linear layout the method works on
    cm = method_for(spec)(model, spec, workload(model, tmp_path))
    with torch.no_grad():
        for pruned, b in zip(fam.blocks(cm.module), fam.blocks(full)):
            w, kept = fam.part(b, fam.ffn_out).weight, fam.part(pruned, fam.ffn_out).weight
            idx = [next(j for j in range(w.shape[1]) if torch.equal(w[:, j], col)) for col in kept.t()]
            assert len(idx) == 16 and len(set(idx)) == 16, idx
            w[:, [j for j in range(w.shape[1]) if j not in idx]] = 0
        masked = full(**batch(full)).logits.numpy()
    assert abs(cm.predict(batch(full)) - masked).max() < 1e-5


@pytest.mark.parametrize("name", FAMILIES)
def test_distill_builds_a_student_of_the_asked_depth_and_width(name, tmp_path):
    model = build(name)
    fam = family(model)
    w = workload(model, tmp_path)
    w.teacher = build(name)
    cm = method_for(DistillSpec(student_layers=1, width=16, steps=2))(model, DistillSpec(student_layers=1, width=16,
                                                                                         steps=2), w)
    assert fam.num_layers(cm.module) == 1 and fam.hidden(cm.module) == 16
    assert len(fam.blocks(cm.module)) == 1
    assert cm.predict(batch(w.teacher)).shape == (3, 2)


@pytest.mark.parametrize("name", ["bert", "gpt2", "qwen2", "modernbert"])
def test_quanto_w8a8_reloads_to_the_same_numbers(name, tmp_path):
    """Calibration stops quantizing outputs that only feed float functions; the reload must do the same."""
    spec = QuantSpec(bits=8, kernel="quanto")
    model = build(name)
    cm = method_for(spec)(model, spec, workload(model, tmp_path))
    out = cm.predict(batch(model))
    cm.save(tmp_path / "q")
    assert abs(artifacts.load(tmp_path / "q").predict(batch(model)) - out).max() < 1e-6


@pytest.mark.parametrize("name", FAMILIES)
def test_prune_reaches_its_sparsity_inside_the_blocks(name, tmp_path):
    model = build(name)
    cm = method_for(PruneSpec(sparsity=0.5))(model, PruneSpec(sparsity=0.5), workload(model, tmp_path))
    assert abs(cm.info["sparsity"] - 0.5) < 0.01 and cm.info["pruned_layers"] >= 4


@pytest.mark.parametrize("name, tokens", [("bert", ["input_ids", "token_type_ids", "attention_mask"]),
                                          ("roberta", ["input_ids", "attention_mask"]),
                                          ("gpt2", ["input_ids", "attention_mask"]),
                                          ("llama", ["input_ids", "attention_mask"])])
def test_onnx_int8_takes_the_tokenizers_inputs(name, tokens, tmp_path):
    model = build(name)
    ref = model(**batch(model)).logits.detach().numpy()
    w = workload(model, tmp_path)
    w.tokenizer = Tokenizer(tokens)
    cm = method_for(QuantSpec(bits=8, kernel="ort"))(model, QuantSpec(bits=8, kernel="ort"), w)
    assert sorted(i.name for i in cm.session.get_inputs()) == sorted(tokens)
    assert abs(cm.predict(batch(model)) - ref).max() < 0.1  # int8 stays close to fp32


def test_an_unsupported_family_is_named_with_the_supported_ones():
    with pytest.raises(UserError, match=r"'t5' is not supported.*bert.*distilbert.*gpt2"):
        family_of("t5")
    assert family_of("xlm-roberta").name == "roberta" and family_of("camembert").name == "roberta"


def test_a_decoder_without_a_pad_token_is_a_clear_error():
    model = build("gpt2")
    model.config.pad_token_id = None
    with pytest.raises(UserError, match="pad_token_id"):
        family(model)


def test_gpt2_conv1d_becomes_an_equal_linear():
    model = build("gpt2")
    ref = model(**batch(model)).logits
    layers = family(model).linears(model)
    assert len(layers) == 8 and all(type(m) is torch.nn.Linear for _, m in layers)
    assert torch.allclose(model(**batch(model)).logits, ref, atol=1e-5)


def _baseline_of(store, folder: str, model_type: str) -> str:
    import json
    from pathlib import Path

    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / "config.json").write_text(json.dumps({"model_type": model_type}))
    store.add_baseline(model_type * 8, model_type, {"kind": "local", "ref": folder}, {"kind": "default"}, {})
    return model_type * 8


def test_a_method_that_cannot_run_is_refused_before_any_job_is_stored(tmp_path):
    from compression import api

    _, store = api.open_workspace(str(tmp_path / "ws"))
    t5 = _baseline_of(store, str(tmp_path / "t5"), "t5")
    why = api.refusal(store, t5, "heads")
    assert "'t5' is not supported" in why and "modernbert" in why
    with pytest.raises(UserError, match="'t5' is not supported"):
        api.enqueue_sweep(store, t5, "quant", {"bits": [8]})
    with pytest.raises(UserError, match="'t5' is not supported"):
        api.enqueue_setting(store, t5, api.recipe_for("prune", {"sparsity": 0.5}))
    assert store.jobs(baseline=t5) == []

    albert = _baseline_of(store, str(tmp_path / "albert"), "albert")
    assert api.refusal(store, albert, "distill") is None and api.refusal(store, albert, "heads") is None
    with pytest.raises(UserError, match="albert: it shares one layer"):
        api.enqueue_recipes(store, albert, [api.recipe_for("distill", {"student_layers": 1, "layer_map": "0"})], "x")
    api.enqueue_sweep(store, albert, "layers", {"fraction": [0.5]})
    assert len(store.jobs(baseline=albert)) == 1


def test_the_sweep_page_and_the_live_knob_grey_a_refused_method_out(prepared, tmp_path, monkeypatch):
    import shutil

    from streamlit.testing.v1 import AppTest

    from compression import families
    from test_ui_pages import APP, _env

    ws = tmp_path / "ws"
    shutil.copytree(prepared[0], ws, ignore=shutil.ignore_patterns("worker.lock"))
    _env(monkeypatch, ws)
    why = "quantization is refused here for this test"
    monkeypatch.setitem(families.REFUSALS, ("bert", "quant"), why)
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    at.toggle(key="live_on").set_value(True).run()
    slider = at.slider(key="live:quant")
    assert slider.disabled and slider.help == why
    at.switch_page("pages/sweep.py").run()
    at.multiselect(key="sweep_methods").set_value(["quant"]).run()
    assert not at.exception and why in [w.value for w in at.warning]
    assert at.button(key="enqueue").disabled  # nothing to queue: the one chosen method is refused
