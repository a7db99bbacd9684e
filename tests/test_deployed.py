"""Runtimes timed as deployed: the block protocol's baseline check (with injected timings, never timed here),
its label, the ONNX Runtime settings of their own (fp32, fused graph, static int8) and their sessions' defaults."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from compression.measure import latency_label
from compression.measurement import Measurement, Timing
from compression.recipes import Recipe
from compression.specs import QuantSpec, RuntimeSpec, SpecError
from compression.timing import _blocks, _timing, baseline_check

STEADY = [10.0, 10.1, 9.9, 10.2, 9.8, 10.0, 10.1, 9.9, 10.0, 10.0]


def test_a_baseline_as_fast_beside_the_candidate_as_alone_is_clean():
    clean, drift, noise = baseline_check(STEADY, [x * 1.01 for x in STEADY])
    assert clean and abs(drift - 0.01) < 1e-9 and noise >= 0.03


def test_a_baseline_slowed_beside_the_candidate_is_not_comparable():
    t = _timing("cpu", 1, c=[4.0] * 10, b=[x * 1.25 for x in STEADY], other=0.0, solo=STEADY)
    assert t.base_clean is False and t.base_solo_p50_ms == pytest.approx(10.0)
    assert t.base_p50_ms == pytest.approx(12.5) and "25% slower beside it than alone" in t.note
    m = Measurement(timings=(t,))
    assert latency_label(m, "measured") == "contended" and latency_label(m, "simulated") == "contended"


def test_a_noisy_solo_baseline_widens_what_counts_as_noise():
    noisy = [8.0, 12.0, 9.0, 11.0, 10.0, 10.0, 8.5, 11.5, 9.5, 10.5]
    assert baseline_check(noisy, [x * 1.1 for x in noisy])[0]  # 10% drift inside a +-17% spread
    assert not baseline_check(STEADY, [x * 1.1 for x in STEADY])[0]  # the same drift outside a steady one


def test_a_clean_timing_keeps_its_label_and_reports_both_medians():
    t = _timing("cpu", 32, c=[5.0] * 10, b=STEADY, other=0.0, solo=STEADY)
    assert t.base_clean is True and t.note == "2.00x faster"
    m = Measurement(timings=(t,))
    assert latency_label(m, "measured") == "measured"
    row = m.csv_row()
    assert row["base_solo_lat_b32_p50_ms"] == pytest.approx(10.0) and row["base_lat_b32_p50_ms"] == pytest.approx(10.0)
    assert row["base_clean_b32"] is True
    again = Measurement.from_row(m.to_row()).timing("cpu", 32)
    assert again.base_clean is True and again.base_solo_p50_ms == pytest.approx(10.0)


def test_other_work_on_the_cpu_is_contended_even_with_a_clean_baseline():
    t = _timing("cpu", 1, c=[5.0] * 10, b=STEADY, other=0.9, solo=STEADY)
    assert latency_label(Measurement(timings=(t,)), "measured") == "contended"


def test_a_row_stored_before_the_solo_baseline_still_reads():
    m = Measurement.from_row({"lat_b1_p50_ms": 4.0, "base_lat_b1_p50_ms": 8.0, "speedup_b1": 2.0})
    t = m.timing("cpu", 1)
    assert t.base_solo_p50_ms is None and t.base_clean is None and not m.baseline_disturbed
    assert m.csv_row()["base_solo_lat_b1_p50_ms"] is None


def test_blocks_alternate_runtimes_in_blocks_and_time_the_baseline_alone_on_both_sides(monkeypatch):
    import compression.timing as timing

    monkeypatch.setattr(timing, "settle", lambda: 0.0)
    calls: list[str] = []
    c, b, solo, _ = _blocks(lambda x: calls.append("c") or 1.0, lambda x: calls.append("b") or 2.0,
                            [{}], warm=2, reps=6, block=3, stop=None, tag="t")
    assert len(c) == len(b) == len(solo) == 6
    timed = "".join(calls)[4:]  # after two warm-up runs of each
    assert timed == "bbb" + "ccc" "bbb" "ccc" "bbb" + "bbb", timed


def test_new_settings_parse_and_refuse_what_they_cannot_run():
    assert Recipe.parse("runtime(engine=ort-fused)").steps[0] == RuntimeSpec(engine="ort-fused")
    assert QuantSpec(bits=8, kernel="ort-static").terminal and RuntimeSpec().terminal
    with pytest.raises(SpecError, match="runs only 8-bit"):
        QuantSpec(bits=4, kernel="ort-static")
    with pytest.raises(SpecError, match="terminal|last"):
        Recipe.parse("runtime(engine=ort)>quant(bits=8)")


def _workload(tmp_path, tok, df):
    from compression.workload import Workload

    return Workload(tok, df, df, ["neg", "pos"], scratch=tmp_path, onnx_cache=tmp_path / "onnx" / "fp32.onnx")


@pytest.mark.parametrize("recipe", ["runtime(engine=ort)", "runtime(engine=ort-fused)", "quant(bits=8,kernel=ort-fused)",
                                    "quant(bits=8,kernel=ort-static,embeddings=8)"])
def test_ort_settings_run_on_a_session_with_onnx_runtimes_default_spinning(recipe, tmp_path):
    from family_models import build, check

    from compression.engine import compress

    model, tok, _ = check(build("bert", tmp_path / "bert"))
    texts = ["a good film", "a bad film, really", "fine", "awful and long"] * 8
    import pandas as pd

    df = pd.DataFrame({"text": texts, "label": [1, 0, 1, 0] * 8})
    batch = dict(tok(texts[:4], padding=True, return_tensors="pt"))
    with torch.no_grad():
        ref = model(**batch).logits.numpy()
    cm = compress(model, Recipe.parse(recipe), _workload(tmp_path, tok, df))
    out = cm.predict(batch)
    rel = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
    assert cm.runtime == "onnxruntime" and rel < (1e-4 if recipe.startswith("runtime") else 0.15), rel
    cfg = cm.session.get_session_options().get_session_config_entry
    with pytest.raises(Exception):  # nothing turned ONNX Runtime's spinning off: its default stands
        cfg("session.intra_op.allow_spinning")
    if "fused" in recipe:
        assert cm.info["fused_ops"].get("Attention"), cm.notes  # the eager export lets Attention fuse


def test_the_fused_graph_keeps_add_and_layer_norm_apart_when_a_session_loads_it(tmp_path, monkeypatch):
    """ORT's CPU SkipLayerNormalization is slower than Add + LayerNormalization: the fused settings leave it
    out and their saved graph tells its session not to fuse it again."""
    import onnx
    import onnxruntime as ort
    from family_models import build, check

    from compression.engine import compress
    from compression.runtimes import DISABLED_OPTIMIZERS_KEY, onnx_session

    model, tok, _ = check(build("bert", tmp_path / "bert"))
    import pandas as pd

    df = pd.DataFrame({"text": ["a good film", "a bad film"] * 8, "label": [1, 0] * 8})
    cm = compress(model, Recipe.parse("quant(bits=8,kernel=ort-fused)"), _workload(tmp_path, tok, df))
    saved = cm.save(tmp_path / "art")[0]
    graph = onnx.load(str(saved), load_external_data=False)
    ops = {n.op_type for n in graph.graph.node}
    assert "SkipLayerNormalization" not in ops and "LayerNormalization" in ops, ops
    assert {p.key: p.value for p in graph.metadata_props}[DISABLED_OPTIMIZERS_KEY] == "SkipLayerNormFusion"
    seen = {}
    real = ort.InferenceSession
    monkeypatch.setattr(ort, "InferenceSession", lambda *a, **k: seen.update(k) or real(*a, **k))
    onnx_session(saved)
    assert seen.get("disabled_optimizers") == ["SkipLayerNormFusion"]
