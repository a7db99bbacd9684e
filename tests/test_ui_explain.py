"""The Trade-offs page's plain-words recommendation, the explain mode, the sidebar's baseline name and the
newcomer's note, by AppTest on copies of the prepared store with hand-made results added."""
from __future__ import annotations

import pytest

from compression import api
from ui.words import hardware_words
from test_ui_pages import _env, run, stored, texts, ws, ws_copy  # noqa: F401 (fixtures)


def add_result(store, fp: str, recipe: str, template: dict, **fields) -> int:
    """Store a finished job for ``recipe`` whose numbers are ``template``'s with ``fields`` changed."""
    (jid,) = store.enqueue(fp, [api.Recipe.parse(recipe).key], api.hardware_id())
    method = api.Recipe.parse(recipe).method
    store.finish(jid, {**template, "recipe_name": recipe, "method": method, **fields})
    return jid


@pytest.fixture
def shop(ws_copy):
    """The prepared store plus a fast setting that loses 9 points and a guarded one that flips 3 answers."""
    store, df = stored(ws_copy)
    fp = store.baselines()[0]["fingerprint"]
    base_id = int(df[df["method"] == "baseline"]["job_id"].iloc[0])
    clean = {"latency": "measured"}  # timings on a busy test machine may be contended: fix the labels
    ms = store.latest_result(base_id)["lat_b1_p50_ms"]
    for r in store.results(baseline=fp):  # the original, and the fixture's int8 as fast as the original
        d = {**store.latest_result(r["job_id"]), "labels": {**r["data"]["labels"], **clean}}
        if r["job_id"] != base_id:
            d.update(lat_b1_p50_ms=ms, speedup_b1=1.0)
        store.finish(r["job_id"], d)
    base = store.latest_result(base_id)
    acc = base["accuracy"]
    n = len(base["predictions"])
    preds = list(base["predictions"])
    preds[:3] = [1 - p for p in preds[:3]]
    add_result(store, fp, "lowrank(rank_fraction=0.25)", base, lat_b1_p50_ms=ms / 5, speedup_b1=5.0,
               speedup_b1_note="5.00x faster", size_mib=base["size_mib"] / 2, accuracy=acc - 0.09,
               accuracy_delta=-0.09, delta_lo=-0.12, delta_hi=-0.06, agreement=0.8)
    add_result(store, fp, "quant(kernel=ort)", base, lat_b1_p50_ms=ms / 2, speedup_b1=2.0,
               speedup_b1_note="2.00x faster", size_mib=base["size_mib"] / 4, accuracy_delta=-0.002,
               delta_lo=-0.01, delta_hi=0.004, agreement=1 - 3 / n, predictions=preds)
    return store, base, n


def test_the_recommendation_names_the_guarded_setting_in_plain_words_not_the_fast_inaccurate_one(shop):
    store, base, n = shop
    at = run()
    head = at.main.markdown[0].value
    assert head.startswith("**8-bit weights on ONNX Runtime**: 4.0× smaller, 2.0× faster on this computer"), head
    assert f"3 of {n:,} test reviews get a different answer" in head  # from the stored predictions
    assert "measurement noise" in texts(at)
    at.selectbox(key="budget").set_value("any").run()  # no guard: the fast one that loses 9 points wins
    assert at.main.markdown[0].value.startswith("**weight matrices split into thin pairs (25% of full rank)**")
    assert at.query_params["budget"] in ("any", ["any"])


def test_a_pick_slower_than_the_original_says_slower(shop):
    store, base, n = shop
    fp = store.baselines()[0]["fingerprint"]
    add_result(store, fp, "cast(dtype=bf16)", base, lat_b1_p50_ms=base["lat_b1_p50_ms"] * 3.5, speedup_b1=1 / 3.5,
               speedup_b1_note="3.50x slower",
               size_mib=base["size_mib"] / 2, accuracy_delta=0.0, delta_lo=-0.004, delta_hi=0.004, agreement=1.0)
    at = run(methods="baseline,cast", max_mib=str(round(base["size_mib"] * 0.75, 3)))  # the original is too big
    head = at.main.markdown[0].value
    assert head.startswith("**16-bit numbers (bf16)**: 2.0× smaller, 3.5× slower on this computer"), head
    assert "faster" not in head


def test_explain_mode_hides_engineering_wording_and_columns_and_stays_in_the_url(shop):
    at = run(explain="1")
    page = texts(at)
    assert at.toggle(key="explain").value
    assert not [m for m in at.markdown if m.value.startswith("**Best feasible:")]  # no recipe key up top
    assert f"Measured on {hardware_words(api.hardware_id())}" in page  # "... an x86-64 processor with AVX2 ..."
    table = at.dataframe[-1].value
    assert list(table.columns)[0] == "setting" and "runtime" not in table.columns
    assert "8-bit weights on ONNX Runtime" in set(table["setting"])
    captions = " ".join(c.value for c in at.main.caption)
    assert "Glyphs:" not in captions and "Each dot is one way of shrinking the model" in captions
    at.switch_page("pages/compare.py").run()
    assert at.query_params["explain"] in ("1", ["1"]) and at.toggle(key="explain").value
    at.switch_page("pages/tradeoffs.py").run()
    at.toggle(key="explain").set_value(False).run()
    assert "explain" not in at.query_params
    assert [m for m in at.markdown if m.value.startswith("**Best feasible: quant(kernel=ort)**")]
    assert "runtime" in at.dataframe[-1].value.columns


def test_the_sidebar_shows_the_baselines_whole_name(ws):
    store, _ = stored(ws)
    name = store.baselines()[0]["name"]
    at = run()
    assert any(m.value.startswith(f"**{name}**") for m in at.sidebar.markdown)


def test_a_newcomer_is_told_what_will_appear_while_the_baseline_is_prepared(tmp_path, monkeypatch, tiny_model,
                                                                             tiny_csv):
    _env(monkeypatch, tmp_path / "fresh")
    store = api.open_workspace(str(tmp_path / "fresh"))[1]
    fp = api.register_baseline(store, model=str(tiny_model), dataset=str(tiny_csv), text_col="review",
                               label_col="sentiment")
    api.enqueue_sweep(store, fp, "quant", {"bits": [8, 4]})
    page = texts(run())
    assert "What will appear here" in page and "being fine-tuned" in page
    assert "2 settings already queued" in page and "Why:" in page
