"""The family matrix: every family x every registered method example x every int8 kernel.

Each family's tiny model (tests/family_models.py) carries a tokenizer of its own class, so a method that
assumes BERT's parts or BERT's inputs fails here. Each case holds the registry tests' invariants (see
test_methods.py): the input is untouched, a mild post-training setting stays close, an aggressive one
changes the outputs, the saved artifact reloads to the same numbers, structured pruning really shrinks
tensors, and an ONNX graph takes exactly inputs the tokenizer gives. A family or method joins by being
registered (family_models.FAMILIES, registry.CATALOGUE). A refusal passes only where the README lists it.

The end-to-end cases (``-k e2e``) run prepare and a one-setting-per-method sweep through the CLI.
"""
from __future__ import annotations

import copy
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from compression.artifacts import count_params, load
from compression.config import UserError
from compression.engine import compress
from compression.families import family_of
from compression.recipes import Recipe
from compression.registry import CATALOGUE
from compression.specs import PruneSpec, QuantSpec, SpecError
from compression.workload import Workload
from conftest import baseline_args, make_csv, require
from family_models import FAMILIES, LABELS, build, check

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ("torch", "ort", "ort-fused", "ort-static", "quanto", "rtn", "openvino")
CASES = ([(m, "mild" if i == 0 else "aggressive", s) for m, e in CATALOGUE.items() for i, s in enumerate(e.examples)]
         + [("quant", k, QuantSpec(bits=8, kernel=k)) for k in KERNELS]
         # SmoothQuant's graph surgery: a Mul before each weight MatMul the family's export holds (and on BERT's
         # fused graph, the attention output's scale folded into the Attention op's V weights)
         + [("quant", "ort-fused-smooth", QuantSpec(bits=8, kernel="ort-fused", smooth=0.8))]
         # OBC's greedy per-row pruner on the same Hessians as the registry's SparseGPT example
         + [("prune", "obc", PruneSpec(sparsity=0.2, criterion="obc", calibration="sequential", allocation="owl"))]
         # each block's sparsity priced on train text (methods/allocate.py), then SparseGPT with those levels
         + [("prune", "measured", PruneSpec(sparsity=0.4, criterion="sparsegpt", allocation="measured"))])
MATRIX = [(f, m, w, s) for f in FAMILIES for m, w, s in CASES]
# The matrix's share of the CI budget (12 minutes on 2 cores); the e2e cases are counted apart.
BUDGET_S = 12 * 60

# How the README may name a family or a method in its refusal list (word-bounded, case as written).
FAMILY_NAMES = {
    "bert": ["BERT"], "distilbert": ["DistilBERT"], "roberta": ["RoBERTa"], "xlm-roberta": ["XLM-RoBERTa", "XLM-R"],
    "camembert": ["CamemBERT"], "electra": ["ELECTRA"], "deberta-v2": ["DeBERTa-v2", "DeBERTa-v3", "DeBERTa"],
    "albert": ["ALBERT"], "mpnet": ["MPNet"], "modernbert": ["ModernBERT"], "gpt2": ["GPT-2", "GPT2"],
    "qwen2": ["Qwen2", "Qwen"],
}


def _named(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text, re.IGNORECASE if name.islower() else 0) is not None


def readme_refusals(text: str | None = None) -> set[tuple[str, str]]:
    """(family, method) pairs the README's refusal list names: the lines under a heading that says
    "refus", the rows of a table whose header does, and any line that does. ``("albert", "layers")`` when a
    row names both."""
    text = (ROOT / "README.md").read_text() if text is None else text
    lines, inside, level, table = [], False, 0, False
    for line in text.splitlines():
        h = re.match(r"(#+)\s", line)
        if h:
            if inside and len(h.group(1)) <= level:
                inside = False
            if re.search(r"refus", line, re.IGNORECASE):
                inside, level = True, len(h.group(1))
            continue
        says = re.search(r"refus", line, re.IGNORECASE) is not None
        row = line.lstrip().startswith("|")
        table = row and (table or says)
        if inside or says or table:
            lines.append(line)
    pairs = set()
    for line in lines:
        fams = [f for f, names in FAMILY_NAMES.items() if any(_named(line, n) for n in names)]
        meths = [m for m, e in CATALOGUE.items() if _named(line, m) or _named(line, e.spec.label)]
        meths += [f"quant-{k}" for k in KERNELS if _named(line, f"kernel={k}") or _named(line, f"quant-{k}")]
        pairs |= {(f, m) for f in fams for m in meths}
    return pairs


def test_readme_refusal_parser_reads_a_table_and_a_list():
    text = ("# x\n## Refusals\n| family | method | why |\n|---|---|---|\n| ALBERT | layers | shares one layer |\n"
            "- GPT-2: quant with kernel=ort, no reason\n## Next\n- BERT: heads (works)\n"
            "| family | refused | why |\n|---|---|---|\n| ModernBERT | heads | fused Wqkv |\n\n| MPNet | layers | x |\n")
    assert readme_refusals(text) == {("albert", "layers"), ("gpt2", "quant"), ("gpt2", "quant-ort"),
                                     ("modernbert", "heads")}


@pytest.fixture(scope="session", autouse=True)
def _matrix_clock(request):
    """The matrix prints its own time, so a CI log shows how much of the budget it used."""
    start = time.perf_counter()
    yield
    spent = time.perf_counter() - start
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # past pytest's capture, into the CI log
        print(f"\nfamily matrix: {spent:.0f} s for this session's tests in test_families.py "
              f"(budget {BUDGET_S} s on 2 cores)")


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("families")


_FAMILY_CACHE: dict = {}


@pytest.fixture
def family(request, family_dir):
    """(path, model, tokenizer, frame, batch, onnx cache) for one family, built once per session."""
    name = request.param
    if name not in _FAMILY_CACHE:
        path = build(name, family_dir / name)
        model, tok, _ = check(path)
        df = pd.read_csv(make_csv(family_dir / f"{name}.csv", n=120))
        df = pd.DataFrame({"text": df["review"], "label": (df["sentiment"] == "positive").astype(int)})
        batch = dict(tok(df["text"].tolist()[:32], padding=True, truncation=True, max_length=64, return_tensors="pt"))
        _FAMILY_CACHE[name] = (path, model.eval(), tok, df, batch, family_dir / name / "onnx" / "fp32.onnx")
    return (name, *_FAMILY_CACHE[name])


def rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


ATTENTION = re.compile(r"attn|attention|query|key|value|q_proj|k_proj|v_proj|o_proj|q_lin|k_lin|v_lin|out_lin|Wqkv")
FFN = re.compile(r"intermediate|ffn|mlp|lin1|lin2|fc|Wi|Wo|up_proj|down_proj|gate_proj|output\.dense")


def shrunk(before: dict, after: dict, pattern: re.Pattern) -> list[str]:
    """Tensors under ``pattern`` whose shape lost elements (a structured method's visible effect)."""
    return [k for k, v in after.items() if k in before and pattern.search(k) and v.numel() < before[k].numel()]


@pytest.mark.parametrize("family, method, which, spec", [pytest.param(f, m, w, s, id=f"{f}-{m}-{w}")
                                                         for f, m, w, s in MATRIX], indirect=["family"])
def test_family_method(family, method, which, spec, tmp_path):
    name, path, model, tok, df, batch, onnx_cache = family
    if which == "openvino":  # the optional runtime (requirements-openvino.txt; make test and CI install it)
        require("OpenVINO and NNCF", lambda: __import__("nncf") and __import__("openvino"))
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        ref = model(**batch).logits.numpy()
    wl = Workload(tok, df, df, LABELS, scratch=tmp_path, teacher=model, onnx_cache=onnx_cache)
    try:
        cm = compress(model, Recipe((spec,)), wl)
    except (SpecError, UserError) as e:
        key = f"quant-{spec.kernel}" if method == "quant" and which not in ("mild", "aggressive") else method
        listed = readme_refusals()
        if (name, key) not in listed and (name, method) not in listed:
            raise  # a refusal the README does not list is a failure
        assert any(_named(str(e), n) for n in FAMILY_NAMES[name]), f"the refusal names the family: {e}"
        return
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"the input model changed: {k}"
    out = cm.predict(batch)
    assert out.shape == ref.shape and np.isfinite(out).all()
    if CATALOGUE[method].lossless:  # the same weights on another runtime
        assert rel(out, ref) < 1e-4, "a lossless setting keeps the outputs"
    elif which == "aggressive":
        assert rel(out, ref) > 1e-3, "an aggressive setting changes the outputs"
    elif CATALOGUE[method].post_training:  # mild examples and the 8-bit kernels
        assert rel(out, ref) < 0.15, "a mild setting keeps the outputs close"
    if cm.session is not None:  # the graph takes exactly inputs the family's tokenizer gives
        names = {i.name for i in cm.session.get_inputs()}
        assert "input_ids" in names and names <= set(tok.model_input_names), (names, tok.model_input_names)
    adapter = family_of(model.config.model_type)
    # ALBERT runs one shared layer at every depth: fewer layers (or a shallower student at full width) keep
    # the same weights and run that layer fewer times, which the config's layer count says and a reload obeys
    fewer_runs = adapter.shared and (method == "layers" or (method == "distill" and not spec.width))
    if fewer_runs:
        assert adapter.num_layers(cm.module) < adapter.num_layers(model), "the shared layer runs fewer times"
    if method in ("heads", "neurons", "layers", "distill") and not fewer_runs:
        after = cm.module.state_dict()
        assert count_params(cm.module)[0] < count_params(model)[0], "structured pruning removes weights"
        if method == "heads":
            assert shrunk(before, after, ATTENTION), "attention projections lose the removed heads"
        elif method == "neurons":
            assert shrunk(before, after, FFN), "feed-forward matrices lose the removed neurons"
        else:
            assert len(after) < len(before) or shrunk(before, after, re.compile(".")), "fewer layers or narrower"
    cm.save(tmp_path / "art")
    loaded = load(tmp_path / "art")
    if fewer_runs:
        assert adapter.num_layers(loaded.module) == adapter.num_layers(cm.module), "the reload runs as many layers"
    again = loaded.predict(batch)
    assert np.allclose(again, out, rtol=1e-3, atol=1e-3), \
        f"the saved artifact reloads to other numbers (max difference {np.abs(again - out).max():.2g})"


# ---------------------------------------------------------------- end to end, through the CLI

# Every family end to end: about 50 s for all twelve on 2 cores once the matrix has built the models, so all
# run by default. One setting per method, plus ONNX Runtime int8: the engine's path to the baseline's cached
# ONNX export and the measurement's feeds, which the matrix reaches only through compress().
@pytest.mark.parametrize("name", [pytest.param(f, id=f"e2e-{f}") for f in FAMILIES])
def test_e2e_prepare_and_sweep_one_setting_per_method(name, tmp_path, family_dir):
    from compression import api, resolve
    from compression.cli import main
    from compression.store import Store

    path = family_dir / name if (family_dir / name / "config.json").exists() else build(name, family_dir / name)
    ws = tmp_path / "ws"
    args = baseline_args(path, make_csv(tmp_path / "reviews.csv", n=200), steps=8) + ["--force-train",
                                                                                       "--workspace", str(ws)]
    assert main(["prepare", *args]) == 0
    recipes = [Recipe((e.examples[0],)).name for e in CATALOGUE.values()] + ["quant(bits=8,kernel=ort)"]
    rc = main(["sweep", *sum((["--recipe", r] for r in recipes), []), *args])
    store = Store(resolve(ws).store_url)
    failed = {j["id"]: f"{j['state']}: {(j['error'] or '')[:300]}" for j in store.jobs() if j["state"] != "done"}
    assert not failed, f"jobs that did not land: {failed}"
    assert rc == 0
    measured = set(api.results_frame(store)["method"])
    assert set(CATALOGUE) <= measured, f"methods without a measured setting: {set(CATALOGUE) - measured}"
