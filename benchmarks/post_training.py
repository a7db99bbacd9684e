"""Post-training methods on the embedded default: quantization bit-widths and kernels, ONNX Runtime as a
runtime of its own, unstructured pruning, low-rank factorization. Ratios are to the baseline timed in the
same worker session.

    python benchmarks/post_training.py [--remeasure] [--peer-only | --accuracy-goals] [--workspace DIR]

Then, in one session with the same protocol (blocks, the baseline also timed alone), the peer side by side
(issue 13): plain ONNX Runtime dynamic int8 (the dynamo export + quantize_dynamic with default options and a
default session, nothing else), torch dynamic int8, and our int8 single settings; the best of ours is the
fastest at batch 1 whose accuracy drop is at most 0.5 points. Each row shows the baseline's solo and
interleaved medians; a row whose baseline was disturbed is labelled contended.

Goals checked (reported as met or MISSED, with the numbers):
- int8 on a real kernel: accuracy drop <= 0.5 points, >= 1.5x faster at batch 1, size <= 0.3x with embeddings quantized;
- our torch int8 path side by side with the ONNX Runtime int8 artifact: which is faster at equal accuracy;
- 50% encoder magnitude pruning without fine-tuning keeps >= 99% of baseline accuracy;
- each post-training setting lands (copy -> measured row with accuracy and batch-1 latency) in <= 5 s of compute;
- our best int8 path >= 1.3x the plain ONNX Runtime int8 peer at batch 1, drop <= 0.5 pt, size <= 0.26x;
- the best post-training batch-32 setting with a drop <= 1 pt, casts excluded: >= 1.8x the baseline;
- issue 13's accuracy goals (``--accuracy-goals`` runs only these settings): 50% Wanda or SparseGPT without
  fine-tuning keeps >= 99% (2:4 and 70% reported beside magnitude's 70%); 4-bit weights in groups of 128 on
  MatMulNBits (GPTQ, chosen on validation by nbits_scan.py; RTN reported beside it) drop <= 0.5 pt with
  latency measured, not simulated; 3-bit drop <= 2 pts. A goal is met only when
  the point estimate meets it and the paired 95% interval's lower bound of the change is >= -1.0 pt; each setting
  is reported on its own (none is picked on the test split).
"""
from __future__ import annotations

import pandas as pd
from _common import baseline_row, default_baseline, frame, load_note, parser, run_recipes, write
from _peer import OURS, cpu_note, has_openvino, side_by_side

from compression.recipes import Recipe

SETTINGS = [
    "quant(bits=8,kernel=torch)", "quant(bits=8,kernel=torch,embeddings=8)", "quant(bits=8,kernel=ort)",
    "quant(bits=8,kernel=ort,embeddings=8)", *OURS[1:], "runtime(engine=ort)", "runtime(engine=ort-fused)",
    "quant(bits=8,kernel=quanto)", "quant(bits=8,kernel=rtn)", "quant(bits=4,kernel=rtn)",
    "quant(bits=4,kernel=rtn,group_size=64)", "quant(bits=3,kernel=rtn,group_size=64)",
    "quant(bits=2,kernel=rtn,group_size=32)", "quant(bits=4,kernel=rtn,embeddings=4)",
    "cast(dtype=bf16)", "cast(dtype=fp16)",
    *[f"prune(sparsity={s / 10:.1f})" for s in range(3, 10)], "prune(sparsity=0.5,scope=layer)",
    "lowrank(rank_fraction=0.25)", "lowrank(rank_fraction=0.5)", "lowrank(energy=0.9)",
]
# Issue 13's accuracy goals: (setting, goal, its test on the row). The 3-bit and SparseGPT knobs were chosen
# on the validation split (README); refit=on beside refit=off, so both are on record.
ACCURACY_GOALS = [
    ("prune(sparsity=0.5,criterion=wanda)", "50% unstructured keeps >= 99%", "retained99"),
    ("prune(sparsity=0.5,criterion=sparsegpt)", "50% unstructured keeps >= 99%", "retained99"),
    ("prune(sparsity=0.5,criterion=sparsegpt,refit=on)", "50% unstructured keeps >= 99%", "retained99"),
    # OBC (2026-12-07): on validation 45 changed answers on both Zen 4 fine-tunes, against 62 and 55 with the refit
    ("prune(sparsity=0.5,criterion=obc)", "50% unstructured keeps >= 99%", "retained99"),
    # each block's sparsity priced on train text (2026-12-08): on validation 36 and 46 changed answers on two Zen 3
    # fine-tunes, against 53 and 59 with the refit alone
    ("prune(sparsity=0.5,criterion=sparsegpt,refit=on,allocation=measured)", "50% unstructured keeps >= 99%",
     "retained99"),
    ("prune(sparsity=0.5,pattern=2:4,criterion=sparsegpt)", "2:4: report", None),
    ("prune(sparsity=0.5,pattern=2:4,criterion=sparsegpt,refit=on)", "2:4: report", None),
    ("prune(sparsity=0.7)", "70% magnitude: report", None),
    ("prune(sparsity=0.7,criterion=sparsegpt)", "70%: report next to magnitude", None),
    ("prune(sparsity=0.7,criterion=sparsegpt,refit=on)", "70%: report next to magnitude", None),
    ("prune(sparsity=0.7,criterion=obc)", "70%: report next to magnitude", None),
    # 4-bit: GPTQ was chosen on validation (benchmarks/nbits_scan.py: the closest outputs on two fine-tunes);
    # plain RTN, the earlier goal setting, stays on record beside it.
    ("quant(bits=4,kernel=nbits,group_size=128,algorithm=gptq)", "4-bit g128 on MatMulNBits: drop <= 0.5 pt, measured",
     "drop05"),
    ("quant(bits=4,kernel=nbits,group_size=128)", "4-bit g128 RTN (the earlier setting): report", None),
    ("quant(bits=3,kernel=rtn,group_size=32,scheme=asym,algorithm=gptq,act_order=on,clip=mse)",
     "3-bit: drop <= 2 pts", "drop2"),
]


def accuracy_goal(d, base_acc: float, test: str | None) -> dict:
    """One setting against its goal under the issue's rule (point estimate, then the interval's lower bound)."""
    out = {"accuracy": d["accuracy"], "retained": d["accuracy"] / base_acc, "change_pts": d["acc_delta_pts"],
           "ci_pts": (100 * d["delta_lo"], 100 * d["delta_hi"]),
           "flips": int(round((1 - d["agreement"]) * d["test_rows"])), "size_mib": d["size_mib"],
           "latency_label": d["latency_label"], "speedup_b1": d["speedup_b1"], "speedup_b32": d["speedup_b32"]}
    if test is None:
        return out
    point = {"retained99": out["retained"] >= 0.99, "drop05": out["change_pts"] >= -0.5,
             "drop2": out["change_pts"] >= -2.0}[test]
    if test == "drop05":
        point = point and d["latency_label"] != "simulated"
    out["met"] = bool(point and 100 * d["delta_lo"] >= -1.0)
    out["verdict"] = "met" if out["met"] else ("not demonstrated (interval)" if point else "MISSED")
    return out


def accuracy_goals(df, base_acc: float) -> dict:
    rows = {r: df[df["recipe"] == Recipe.parse(r).name] for r, _, _ in ACCURACY_GOALS}
    return {f"{goal} [{r}]": accuracy_goal(rows[r].iloc[0], base_acc, test) if len(rows[r]) else
            {"met": False, "verdict": "no result: the job failed; see its error in the store (results, Jobs page)"}
            for r, goal, test in ACCURACY_GOALS}


if has_openvino():  # the optional runtime
    SETTINGS += ["runtime(engine=openvino)"]
else:
    SETTINGS = [s for s in SETTINGS if "openvino" not in s]


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--peer-only", action="store_true", help="only the peer side by side (no stored sweep)")
    ap.add_argument("--accuracy-goals", action="store_true",
                    help="only issue 13's accuracy settings (pruning, 4- and 3-bit) and their goals")
    args = ap.parse_args()
    print(cpu_note())
    paths, store, fp = default_baseline(args)
    if args.accuracy_goals:
        ids = run_recipes(paths, store, fp, [Recipe.parse(r) for r, _, _ in ACCURACY_GOALS], args.remeasure,
                          "accuracy goals")
        df, base = frame(store, fp, ids), baseline_row(store, fp)
        df["acc_delta_pts"] = df["accuracy_delta"] * 100
        goals = accuracy_goals(df, base["accuracy"])
        print("\ngoals (issue 13's rule: the point estimate and the paired interval's lower bound >= -1.0 pt):")
        for k, v in goals.items():
            print(f"  {k}: {v}")
        print(f"baseline: accuracy {base['accuracy']:.2%}; {load_note()}")
        print(cpu_note())
        write("post_training_accuracy", df, {"goals": goals, "baseline_accuracy": base["accuracy"],
                                             "load": load_note(), "cpu": cpu_note()})
        return
    peer = side_by_side(store, fp)
    if args.peer_only:
        write("post_training_peer", peer["table"], {k: v for k, v in peer.items() if k != "table"})
        return
    settings = SETTINGS + [r for r, _, _ in ACCURACY_GOALS if r not in SETTINGS]
    ids = run_recipes(paths, store, fp, [Recipe.parse(s) for s in settings], args.remeasure, "post-training")
    df = frame(store, fp, ids)
    base = baseline_row(store, fp)
    secs = {r["job_id"]: r["data"]["seconds"] for r in store.results(baseline=fp)}
    df["landing_s"] = [secs[j]["total"] - secs[j]["load"] for j in df["job_id"]]
    df["size_ratio"] = df["size_mib"] / base["size_mib"]
    df["acc_delta_pts"] = df["accuracy_delta"] * 100
    cols = ["recipe", "accuracy", "acc_delta_pts", "agreement", "size_mib", "size_ratio", "lat_b1_p50_ms",
            "speedup_b1", "lat_b32_p50_ms", "speedup_b32", "base_lat_b1_p50_ms", "base_solo_lat_b1_p50_ms",
            "base_lat_b32_p50_ms", "base_solo_lat_b32_p50_ms", "latency_label", "speedup_b1_note", "landing_s", "kernel"]
    pd.set_option("display.width", 250)
    print(df[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))

    def row(recipe):
        return df[df["recipe"] == Recipe.parse(recipe).name].iloc[0]

    goals = {}
    for r in ("quant(bits=8,kernel=torch,embeddings=8)", "quant(bits=8,kernel=ort,embeddings=8)"):
        d = row(r)
        ok = d["acc_delta_pts"] >= -0.5 and d["speedup_b1"] >= 1.5 and d["size_ratio"] <= 0.3
        goals[f"int8 {r}"] = {"met": bool(ok), "acc_delta_pts": d["acc_delta_pts"], "speedup_b1": d["speedup_b1"],
                              "size_ratio": d["size_ratio"], "latency_label": d["latency_label"]}
    t, o = row("quant(bits=8,kernel=torch)"), row("quant(bits=8,kernel=ort)")
    goals["torch vs ort int8"] = {"torch_b1_ms": t["lat_b1_p50_ms"], "ort_b1_ms": o["lat_b1_p50_ms"],
                                  "torch_b32_ms": t["lat_b32_p50_ms"], "ort_b32_ms": o["lat_b32_p50_ms"],
                                  "torch_acc": t["accuracy"], "ort_acc": o["accuracy"],
                                  "faster_b1": "torch" if t["lat_b1_p50_ms"] < o["lat_b1_p50_ms"] else "ort",
                                  "faster_b32": "torch" if t["lat_b32_p50_ms"] < o["lat_b32_p50_ms"] else "ort"}
    p = row("prune(sparsity=0.5)")
    goals["prune 50% keeps >= 99%"] = {"met": bool(p["accuracy"] >= 0.99 * base["accuracy"]),
                                       "retained": p["accuracy"] / base["accuracy"]}
    ok = df[(df["acc_delta_pts"] >= -1.0) & (df["method"] != "cast") & (df["latency_label"] == "measured")]
    best = ok.loc[ok["speedup_b32"].idxmax()] if ok["speedup_b32"].notna().any() else None
    goals["best batch-32 >= 1.8x (drop <= 1 pt, no casts)"] = (
        {"met": False, "why": "no measured setting with a drop <= 1 pt"} if best is None else
        {"met": bool(best["speedup_b32"] >= 1.8), "recipe": best["recipe"], "speedup_b32": best["speedup_b32"],
         "acc_delta_pts": best["acc_delta_pts"], "cpu": cpu_note()})
    goals.update(peer["goals"])
    goals.update(accuracy_goals(df, base["accuracy"]))
    slow = df[df["landing_s"] > 5]
    goals["<= 5 s per setting"] = {"met": slow.empty, "max_s": float(df["landing_s"].max()),
                                   "median_s": float(df["landing_s"].median()),
                                   "over": dict(zip(slow["recipe"], slow["landing_s"].round(2)))}
    print("\ngoals:")
    for k, v in goals.items():
        print(f"  {k}: {v}")
    print(f"baseline: accuracy {base['accuracy']:.2%}, {base['size_mib']:.1f} MiB, b1 {base['lat_b1_p50_ms']:.1f} ms; "
          f"{load_note()}")
    print(cpu_note())
    write("post_training", df, {"goals": goals, "baseline_accuracy": base["accuracy"], "load": load_note(),
                                "cpu": cpu_note(), "peer": peer["table"].to_dict("records")})


if __name__ == "__main__":
    main()
