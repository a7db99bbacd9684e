"""The Sweep page's per-layer knob is a table (layer index -> level), and its rows become the recipe's map."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _app():
    import streamlit as st

    from compression import api
    from ui import widgets

    try:
        values = widgets.knob_values("prune", advanced=True)
        st.markdown("recipes: " + " | ".join(r.name for r in api.expand_recipes("prune", values)))
    except (api.SpecError, api.UserError) as e:
        st.error(str(e))


def _run(rows: list[dict]) -> AppTest:
    at = AppTest.from_function(_app, default_timeout=60)
    at.session_state["knob:prune:per_layer"] = {"edited_rows": {}, "added_rows": rows, "deleted_rows": []}
    return at.run()


def test_the_per_layer_knob_is_a_table_whose_rows_make_the_map():
    at = _run([{"layer": 5, "level": 0.5}, {"layer": 4, "level": 0.5}])
    assert not at.exception, [e.message for e in at.exception]
    assert [e.key for e in at.data_editor] == ["knob:prune:per_layer"]  # a table, not a text box
    assert not [t for t in at.text_input if t.key == "knob:prune:per_layer"]
    line = next(m.value for m in at.markdown if m.value.startswith("recipes: "))
    assert "per_layer=4:0.5;5:0.5" in line  # canonical: sorted by layer, one recipe


def test_an_empty_table_leaves_every_layer_at_the_main_setting_and_a_bad_level_is_one_sentence():
    at = _run([])
    line = next(m.value for m in at.markdown if m.value.startswith("recipes: "))
    assert "per_layer" not in line and "prune(" in line
    at = _run([{"layer": 2, "level": 1.5}])
    assert len(at.error) == 1 and "per_layer" in at.error[0].value and "\n" not in at.error[0].value
