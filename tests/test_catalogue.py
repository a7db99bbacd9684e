"""Adding a method is one spec class, one function and one catalogue entry: with nothing else, a toy
method parses, keys, sweeps, gets its CLI flags and widget metadata, and runs through the engine."""
from __future__ import annotations

import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
import torch

from compression import api, registry
from compression.cli import build_parser
from compression.engine import compress
from compression.recipes import Recipe, expand, spec_from_dict
from compression.registry import CATALOGUE, Method, method_for
from compression.specs import Spec, SpecError, knob
from compression.workload import Workload


# 1. one spec class
@dataclass(frozen=True)
class ShrinkSpec(Spec):
    method: ClassVar[str] = "shrink"
    explain: ClassVar[str] = "Scales every weight down a little."

    strength: float = knob(0.5, lo=0.0, hi=0.9, step=0.1, unit="fraction", sweep="0.1:0.3:0.1",
                           help="share taken off every weight")


# 2. one function (it would live in compression/methods/shrink.py)
def shrink(model, spec, workload):
    from compression.artifacts import CompressedModel

    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1 - spec.strength)
    return CompressedModel.fp32(model)


@pytest.fixture
def with_shrink(monkeypatch):
    """3. one catalogue entry (and the methods module it names); monkeypatch removes both afterwards."""
    module = types.ModuleType("compression.methods.shrink")
    module.shrink = shrink
    monkeypatch.setitem(sys.modules, "compression.methods.shrink", module)
    monkeypatch.setitem(CATALOGUE, "shrink", Method(ShrinkSpec, "shrink:shrink", post_training=True,
                                                     live_knob="strength",
                                                     examples=(ShrinkSpec(strength=0.1), ShrinkSpec(strength=0.9))))


def test_a_new_method_needs_only_its_spec_function_and_entry(with_shrink, capsys):
    r = Recipe.parse("shrink(strength=0.2)>quant(bits=8)")
    assert r.steps[0] == ShrinkSpec(strength=0.2)
    assert Recipe.from_key(r.key) == r and spec_from_dict(r.steps[0].to_dict()) == r.steps[0]
    assert [s.steps[0].strength for s in expand(ShrinkSpec, {"strength": [0.1, 0.2, 0.2]})] == [0.1, 0.2]
    assert len(api.expand_recipes("shrink", {"strength": [0.1, 0.3]})) == 2

    args = build_parser().parse_args(["sweep", "--method", "shrink", "--strength", "0.1:0.3:0.1"])
    assert (args.method, args.knob_strength) == ("shrink", "0.1:0.3:0.1")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sweep", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--strength V (shrink) share taken off every weight [0.0..0.9]" in help_text
    assert f"--method METHOD one of: {', '.join(CATALOGUE)}" in help_text

    assert ShrinkSpec in api.methods()
    (k,) = api.knobs("shrink")  # what the Sweep page's widgets are built from
    assert (k["name"], k["type"], k["lo"], k["hi"], k["sweep"]) == ("strength", float, 0.0, 0.9, "0.1:0.3:0.1")
    assert api.live_knob("shrink") == "strength"

    assert method_for(ShrinkSpec()) is shrink
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    before = model[0].weight.detach().clone()
    wl = Workload(None, pd.DataFrame(), pd.DataFrame(), ["a", "b"])
    cm = compress(model, Recipe.parse("shrink(strength=0.5)"), wl)
    assert torch.equal(model[0].weight, before)  # the input is untouched
    torch.testing.assert_close(cm.module[0].weight, before * 0.5)


def test_the_entry_is_gone_after_the_test():
    assert "shrink" not in CATALOGUE
    with pytest.raises(SpecError, match="unknown method 'shrink': choose one of quant, cast"):
        Recipe.parse("shrink(strength=0.2)")


def test_an_unknown_method_lists_the_known_ones():
    with pytest.raises(SpecError) as e:
        registry.entry("pickle")
    assert all(name in str(e.value) for name in CATALOGUE)


def test_a_spec_the_catalogue_does_not_register_is_refused():
    with pytest.raises(SpecError, match="unknown method 'shrink'"):
        method_for(ShrinkSpec())


def test_listing_the_catalogue_imports_no_method_module_and_no_torch():
    """The dashboard lists methods and their knobs without torch; a method's module loads on first use."""
    code = ("import sys; from compression import api, registry; api.methods(); api.knobs('quant'); "
            "api.live_knob('prune'); "
            "assert 'torch' not in sys.modules, 'torch'; "
            "assert not [m for m in sys.modules if m.startswith('compression.methods')], 'methods'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
