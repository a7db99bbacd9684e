"""The guarded recommendation and the plain names, on small hand-made tables whose answer you can see."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import pandas as pd

from compression.plain import plain_name, step_name
from compression.report import recommend, recommendation_text, engineering_text
from compression.specs import Spec, knob


def row(recipe, method, acc, delta, lo, hi, ms, mib, speedup=None, lat_label="measured", acc_label="measured",
        agreement=None):
    return dict(recipe=recipe, method=method, accuracy=acc, accuracy_lo=acc - 0.02, accuracy_hi=acc + 0.02,
                accuracy_delta=delta, delta_lo=lo, delta_hi=hi, lat_b1_p50_ms=ms, size_mib=mib,
                speedup_b1=speedup, latency_label=lat_label, accuracy_label=acc_label, size_label="measured",
                agreement=agreement, test_rows=1275)


def table(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows), index=range(10, 10 + len(rows)))


BASE = row("baseline", "baseline", 0.816, None, None, None, 20.0, 86.7)
FAST_BAD = row("lowrank(rank_fraction=0.25)", "lowrank", 0.7224, -0.0933, -0.117, -0.069, 6.0, 40.0, 3.3)
GUARDED = row("quant(kernel=ort)", "quant", 0.813, -0.003, -0.009, 0.002, 9.5, 22.8, 2.1, agreement=1 - 27 / 1275)


def test_the_default_pick_is_the_fastest_setting_within_the_originals_noise_not_the_fastest():
    df = table(BASE, FAST_BAD, GUARDED)
    pick = recommend(df)
    assert df.loc[pick.index, "recipe"] == "quant(kernel=ort)" and pick.guard == "noise"
    assert df.loc[recommend(df, guard=False).index, "recipe"] == "lowrank(rank_fraction=0.25)"
    assert df.loc[recommend(df, budget_pts=10).index, "recipe"] == "lowrank(rank_fraction=0.25)"  # loses 9.3 pts
    assert df.loc[recommend(df, budget_pts=1).index, "recipe"] == "quant(kernel=ort)"
    head, why = recommendation_text(df, pick, flips=(27, 1275), noun="test reviews")
    assert head == ("**8-bit weights on ONNX Runtime**: 3.8× smaller, 2.1× faster on this computer, "
                    "81.3% vs 81.6% accurate; 27 of 1,275 test reviews get a different answer.")
    assert "fastest of 2 stored settings" in why and "measurement noise" in why
    assert "[-0.9, +0.2]" in engineering_text(df, pick)


def test_previews_and_contended_timings_are_not_picked_while_a_clean_one_qualifies():
    preview = {**GUARDED, "recipe": "quant(bits=4)", "lat_b1_p50_ms": 1.0, "accuracy_label": "preview"}
    busy = {**GUARDED, "recipe": "prune(sparsity=0.3)", "lat_b1_p50_ms": 2.0, "latency_label": "contended"}
    df = table(BASE, preview, busy, GUARDED)
    assert df.loc[recommend(df).index, "recipe"] == "quant(kernel=ort)"
    alone = recommend(table(BASE, busy), max_size=50)  # the original fails the limit: only a contended one is left
    head, why = recommendation_text(table(BASE, busy), alone)
    assert alone.contended and "busy" in why
    assert "speed not comparable on this computer (timed while the computer was busy)" in head  # not 2.1×
    assert "faster" not in head


def test_a_pick_slower_than_the_original_says_slower():
    bf16 = row("cast(dtype=bf16)", "cast", 0.815, -0.001, -0.004, 0.003, 69.0, 43.4, 0.29)
    df = table(BASE, bf16, FAST_BAD)
    pick = recommend(df, max_size=50)  # the original is too big; the fast one loses too much
    head, _ = recommendation_text(df, pick, limits="at most 50 MiB")
    assert "16-bit numbers (bf16)" in head and "3.4× slower on this computer" in head and "faster" not in head


def test_a_ratio_inside_the_timing_noise_reads_no_measurable_change_as_in_the_details():
    """The headline and the details table say the same: a 1.3x ratio the timing itself called noise is not
    "1.3x slower" in the headline."""
    noisy = {**row("quant(bits=8)", "quant", 0.815, 0.0, -0.004, 0.004, 26.0, 22.0, 0.77),
             "speedup_b1_note": "no measurable change"}
    df = table(BASE, noisy)
    head, _ = recommendation_text(df, recommend(df, objective="size"), objective="size")
    assert "no measurable change in speed on this computer" in head and "slower" not in head
    noisy["speedup_b1_note"] = "1.30x slower"
    df = table(BASE, noisy)
    head, _ = recommendation_text(df, recommend(df, objective="size"), objective="size")
    assert "1.3× slower on this computer" in head


def test_when_nothing_beats_the_original_within_noise_it_says_keep_the_original():
    df = table(BASE, FAST_BAD)
    head, _ = recommendation_text(df, recommend(df))
    assert head.startswith("**Keep the original model**")
    head, _ = recommendation_text(df, recommend(df, max_size=1))
    assert head.startswith("No stored setting meets these constraints")


def test_plain_names_of_a_few_recipes():
    assert plain_name("quant(kernel=ort)") == "8-bit weights on ONNX Runtime"
    assert plain_name("prune(sparsity=0.5,criterion=wanda)") == "half of the weights zeroed (Wanda)"
    assert plain_name("cast(dtype=bf16)") == "16-bit numbers (bf16)"
    assert plain_name("prune(sparsity=0.5)>quant(bits=8)") == "a chain: half of the weights zeroed, then 8-bit weights"
    assert plain_name("baseline") == "the original model"
    assert (plain_name("prune(sparsity=0.7,recover_steps=200)")
            == "70% of the weights zeroed, then 200 steps of retraining")
    assert (plain_name("prune(criterion=sparsegpt,refit=on)")
            == "half of the weights zeroed (SparseGPT), then the kept ones solved exactly")
    assert plain_name("runtime(engine=ort-fused)") == "the same weights run by ONNX Runtime with fused layers"
    assert (plain_name("quant(bits=3,kernel=rtn,algorithm=gptq,clip=mse)")
            == "3-bit weights (stored small, run at full size) (rounding errors corrected, GPTQ) with outliers clipped")


def test_a_method_or_knob_with_no_words_is_named_from_its_metadata():
    @dataclasses.dataclass(frozen=True)
    class Shrink(Spec):
        method: ClassVar[str] = "shrink"
        label: ClassVar[str] = "Shrink ray"
        share: float = knob(0.4, lo=0.0, hi=1.0, step=0.1, unit="fraction", help="how much to shrink")
        passes: int = knob(1, lo=1, hi=9, step=1, unit="passes", help="how often")

    assert step_name(Shrink(share=0.3, passes=2)) == "shrink ray (share 30%) 2 passes"
