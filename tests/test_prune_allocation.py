"""SparseGPT calibrated layer by layer inside each block (true-sequential), and OWL's layer sparsities."""
from __future__ import annotations

import copy

import pytest
import torch

from compression.engine import compress
from compression.families import family
from compression.layerwise import owl_levels
from compression.methods.hessian import forward_stages
from compression.methods.prune import input_norms
from compression.methods.sparsegpt import sparsegpt_prune
from compression.recipes import Recipe
from compression.specs import PruneSpec, SpecError
from compression.workload import Workload
from conftest import tiny_bert_split


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("alloc")
    model, tok, df = tiny_bert_split(d)
    return model, Workload(tok, df, df, ["negative", "positive"], scratch=d, teacher=model)


def test_a_blocks_layers_come_in_forward_order_with_q_k_v_together(tiny):
    model, w = tiny
    block = [(n, m) for n, m in family(model).linears(model) if ".layer.1." in n]
    names = [[n.split(".layer.1.")[1] for n, _ in stage] for stage in forward_stages(model, block[::-1], w)]
    assert names == [["attention.self.query", "attention.self.key", "attention.self.value"],
                     ["attention.output.dense"], ["intermediate.dense"], ["output.dense"]]


def test_sequential_sparsegpt_keeps_the_models_output_closer_to_the_dense_one(tiny):
    model, w = tiny
    batch = w.encode(w.train["text"].tolist()[:128])
    with torch.no_grad():
        dense = model(**batch, output_hidden_states=True).hidden_states[-1]
    errors = {}
    for sequential in (False, True):
        m = copy.deepcopy(model)
        layers = family(m).linears(m)
        sparsegpt_prune(m, layers, w, 0.6, sequential=sequential)
        assert sum(int((x.weight == 0).sum()) for _, x in layers) == pytest.approx(
            0.6 * sum(x.weight.numel() for _, x in layers), rel=0.01)
        with torch.no_grad():
            errors[sequential] = float((m(**batch, output_hidden_states=True).hidden_states[-1] - dense).norm())
    assert errors[True] < 0.99 * errors[False]  # 4.35 against 4.48 here: a small, steady gain


def test_owl_prunes_layers_differently_and_keeps_the_overall_share(tiny):
    model, w = tiny
    m = copy.deepcopy(model)
    with torch.no_grad():  # outliers in layer 2: OWL prunes it least
        m.bert.encoder.layer[2].intermediate.dense.weight[:, :4] *= 30
    layers = family(m).linears(m)
    by_name = owl_levels(m, layers, input_norms(m, layers, w), 0.5, 0.08)
    per_layer = {i: by_name[f"bert.encoder.layer.{i}.output.dense"] for i in range(3)}
    assert per_layer[2] == min(per_layer.values()) < 0.45
    assert max(per_layer.values()) - per_layer[2] == pytest.approx(0.16)  # a band 2 x 0.08 wide
    assert sum(per_layer.values()) / 3 == pytest.approx(0.5)
    for criterion in ("wanda", "sparsegpt"):
        cm = compress(m, Recipe((PruneSpec(sparsity=0.5, criterion=criterion, allocation="owl"),)), w)
        zeros = {i: float((cm.module.bert.encoder.layer[i].output.dense.weight == 0).float().mean())
                 for i in range(3)}
        assert zeros[2] == pytest.approx(per_layer[2], abs=0.01) and max(zeros.values()) > 0.52, criterion
        assert cm.info["sparsity"] == pytest.approx(0.5, abs=0.01)
        assert "OWL" in cm.notes[0]


def test_sequential_calibration_is_named_and_refused_where_nothing_is_updated(tiny):
    model, w = tiny
    cm = compress(model, Recipe((PruneSpec(sparsity=0.5, criterion="sparsegpt", calibration="sequential"),)), w)
    assert "calibrated layer by layer" in cm.notes[0]
    assert cm.info["sparsity"] == pytest.approx(0.5, abs=0.01)
    with pytest.raises(SpecError, match="sparsegpt or obc only"):
        PruneSpec(sparsity=0.5, criterion="wanda", calibration="sequential")
    with pytest.raises(SpecError, match="allocation=owl"):
        PruneSpec(sparsity=0.5, allocation="owl")
