import dataclasses

import pytest

from compression.recipes import Recipe, expand, parse_values, spec_from_dict
from compression.registry import CATALOGUE
from compression.specs import QuantSpec, SpecError


@pytest.mark.parametrize("kw, words", [
    ({"bits": 0}, ["quant.bits=0", "[2, 8]"]),
    ({"bits": 16}, ["quant.bits=16", "[2, 8]"]),
    ({"bits": 1}, ["quant.bits=1"]),
    ({"kernel": "magic"}, ["quant.kernel='magic'", "auto"]),
    ({"group_size": 48}, ["group_size=48", "power of two"]),
    ({"bits": 4, "kernel": "ort"}, ["kernel=ort", "8-bit"]),
])
def test_bad_knobs_name_the_field_and_range(kw, words):
    with pytest.raises(SpecError) as e:
        QuantSpec(**kw)
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("name", CATALOGUE)
def test_every_spec_round_trips_and_documents_its_knobs(name):
    t = CATALOGUE[name].spec
    assert t.method == name and t.label and t.explain
    for s in CATALOGUE[name].examples:
        assert type(s) is t
        assert spec_from_dict(s.to_dict()) == s
        assert Recipe.parse(Recipe((s,)).name) == Recipe((s,))
    for f in dataclasses.fields(t):
        assert f.metadata.get("help"), f"{t.method}.{f.name} has no help text"


def test_from_dict_rejects_unknown_types_and_knobs():
    with pytest.raises(SpecError, match="unknown method 'pickle'"):
        spec_from_dict({"method": "pickle"})
    with pytest.raises(SpecError, match="no knob 'bitz'"):
        spec_from_dict({"method": "quant", "bitz": 4})


def test_recipe_key_is_canonical():
    a = Recipe.parse("quant(bits=8)")
    b = Recipe((QuantSpec(bits=8.0),))
    assert a.key == b.key
    assert Recipe.from_key(a.key) == a
    assert Recipe.parse("baseline").key == "[]"


def test_terminal_step_only_last():
    ort = QuantSpec(bits=8, kernel="ort")
    Recipe((ort,))  # fine as the last step
    with pytest.raises(SpecError, match="can only be the last step"):
        Recipe((ort, QuantSpec(bits=8)))


def test_parse_values_ranges_and_lists():
    assert parse_values("0.3:0.9:0.1", float) == [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert parse_values("2,4,8", int) == [2, 4, 8]
    assert parse_values("auto,rtn", str) == ["auto", "rtn"]
    with pytest.raises(SpecError, match="empty"):
        parse_values("0.9:0.3:0.1", float)


def test_expand_is_a_grid_without_duplicates():
    rs = expand(QuantSpec, {"bits": [4, 8, 8], "kernel": ["auto"]})
    assert [r.steps[0].bits for r in rs] == [4, 8]
