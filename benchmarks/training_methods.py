"""Training-based methods on the embedded default: distillation, structured pruning, recovery, chains.

    python benchmarks/training_methods.py [--remeasure] [--workspace DIR] [--only prune80_sparsegpt,prune80_owl,prune80_obc,prune80_measured,prune80_none] [--seed N]

Ratios are to the baseline timed in the same worker session. Goals (reported met or MISSED):
- 3-layer student: >= 97% of baseline accuracy and >= 1.8x faster at batch 1;
- 40% of heads removed: >= 97% retained, with a measured speedup;
- 80% unstructured pruning with recovery: >= 95% retained (labels only, and distillation-aware: the original's
  answers and hidden states, 400 steps), with the paired 95% CI of the change;
- distill -> int8 chain: size, speed, accuracy against the DistilBERT anchor (97% retained, 40% smaller, 60% faster).
"""
from __future__ import annotations

import pandas as pd
from _common import baseline_row, default_baseline, frame, load_note, parser, run_recipes, write

from compression.recipes import Recipe

SETTINGS = {
    "student3": "distill(student_layers=3,steps=200)",
    "heads40": "heads(fraction=0.4,importance=grad,recover_steps=100)",
    "neurons50": "neurons(fraction=0.5,importance=grad,recover_steps=100)",
    "layers50": "layers(fraction=0.5,importance=grad,recover_steps=100)",
    "prune80": "prune(sparsity=0.8,recover_steps=200,schedule=poly,initial_sparsity=0.5)",
    "prune80_none": "prune(sparsity=0.8)",
    # recover_lr 2e-4 (not the default 5e-5): validation kept 100.0% with 106 answers flipped against 98.4% and 129
    "prune80_distill": "prune(sparsity=0.8,criterion=wanda,recover_steps=400,schedule=poly,initial_sparsity=0.5,"
                       "recover_alpha=0.5,recover_hidden=1.0,recover_lr=0.0002)",
    # SparseGPT with the exact refit, once, then the same recovery with the zeros held: on validation (a fresh
    # prepare on an AVX-512 EPYC, 82.59%) 105 answers flipped at -0.08 pts, against 113 at -0.86 for the above
    "prune80_sparsegpt": "prune(sparsity=0.8,criterion=sparsegpt,refit=on,recover_steps=400,recover_alpha=0.5,"
                         "recover_hidden=1.0,recover_lr=0.0002)",
    # the same with OWL's layer-wise sparsity (outlier-rich layers pruned less, the mean still 80%): on validation
    # (ValBench, the Zen 3 fine-tune at 82.20%) +0.78 [-0.63, +2.28] with 98 answers flipped, against +0.08
    # [-1.41, +1.65] and 99 for the above; pure distillation (recover_alpha=0) flipped fewer, 84-85, at -0.71 to -0.94
    # On test it met the goal there (+1.18 [-0.55, +2.83]) but not on the --seed 1 fine-tune (-1.18 [-2.82, +0.47]).
    "prune80_owl": "prune(sparsity=0.8,criterion=sparsegpt,refit=on,allocation=owl,recover_steps=400,"
                   "recover_alpha=0.5,recover_hidden=1.0,recover_lr=0.0002)",
    # OBC's greedy mask (2026-12-07) with the same recovery, fixed before its first run on test (not tuned at 80%)
    "prune80_obc": "prune(sparsity=0.8,criterion=obc,recover_steps=400,recover_alpha=0.5,recover_hidden=1.0,"
                   "recover_lr=0.0002)",
    # each block's sparsity priced on train text first (allocation=measured, 2026-12-08: at 50% without recovery a
    # third fewer changed answers on validation and test), then the same recovery; fixed before its first run on test
    "prune80_measured": "prune(sparsity=0.8,criterion=sparsegpt,refit=on,allocation=measured,recover_steps=400,"
                        "recover_alpha=0.5,recover_hidden=1.0,recover_lr=0.0002)",
    "chain": "distill(student_layers=3,steps=200)>quant(bits=8,kernel=torch,embeddings=8)",
}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--only", help=f"comma-separated settings to run (of {', '.join(SETTINGS)}); their goals only")
    args = ap.parse_args()
    only = args.only.split(",") if args.only else list(SETTINGS)
    unknown = sorted(set(only) - set(SETTINGS))
    if unknown:
        raise SystemExit(f"--only: no setting named {', '.join(unknown)} (choose from {', '.join(SETTINGS)})")
    paths, store, fp = default_baseline(args)
    recipes = {k: Recipe.parse(v) for k, v in SETTINGS.items() if k in only}
    ids = run_recipes(paths, store, fp, list(recipes.values()), args.remeasure, "training-methods")
    df = frame(store, fp, ids)
    base = baseline_row(store, fp)
    secs = {r["job_id"]: r["data"]["seconds"] for r in store.results(baseline=fp)}
    df["wall_s"] = [secs[j].get("total_with_b32", secs[j]["total"]) for j in df["job_id"]]
    df["retained"] = df["accuracy"] / base["accuracy"]
    df["size_ratio"] = df["size_mib"] / base["size_mib"]
    pd.set_option("display.width", 250)
    df["change_pts"] = 100 * df["accuracy_delta"]
    df["ci_lo_pts"], df["ci_hi_pts"] = 100 * df["delta_lo"], 100 * df["delta_hi"]
    cols = ["recipe", "accuracy", "retained", "change_pts", "ci_lo_pts", "ci_hi_pts", "size_mib", "size_ratio", "lat_b1_p50_ms", "speedup_b1",
            "lat_b32_p50_ms", "speedup_b32", "latency_label", "wall_s"]
    print(df[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    row = {k: df[df["recipe"] == r.name].iloc[0] for k, r in recipes.items() if (df["recipe"] == r.name).any()}
    g = {}
    for k in sorted(set(recipes) - set(row)):  # a failed job stores no result: its goal is reported, not skipped
        g[f"{k}: no result"] = {"met": False, "why": "the job failed; see its error in the store (results, Jobs page)"}
    if "student3" in row:
        g["3-layer student >= 97% and >= 1.8x b1"] = {
            "met": bool(row["student3"]["retained"] >= 0.97 and row["student3"]["speedup_b1"] >= 1.8),
            "retained": row["student3"]["retained"], "speedup_b1": row["student3"]["speedup_b1"]}
    if "heads40" in row:
        g["40% heads removed >= 97% with a speedup"] = {
            "met": bool(row["heads40"]["retained"] >= 0.97 and row["heads40"]["speedup_b1_note"].endswith("faster")),
            "retained": row["heads40"]["retained"], "speedup_b1": row["heads40"]["speedup_b1"],
            "note": row["heads40"]["speedup_b1_note"]}
    for key in ("prune80", "prune80_distill", "prune80_sparsegpt", "prune80_owl", "prune80_obc", "prune80_measured"):
        if key in row:  # the rule: the point estimate meets it and the CI's lower bound is >= -1 pt
            r = row[key]
            g[f"80% pruning with recovery >= 95% ({key})"] = {
                "met": bool(r["retained"] >= 0.95 and r["ci_lo_pts"] >= -1.0), "retained": r["retained"],
                "change_pts": r["change_pts"], "ci_pts": (r["ci_lo_pts"], r["ci_hi_pts"]),
                "without_recovery": row["prune80_none"]["retained"] if "prune80_none" in row else None}
    if "chain" in row:
        g["distill -> int8 vs DistilBERT (97% kept, 40% smaller, 60% faster)"] = {
            "retained": row["chain"]["retained"], "size_reduction": 1 - row["chain"]["size_ratio"],
            "speedup_b1": row["chain"]["speedup_b1"], "speedup_b32": row["chain"]["speedup_b32"],
            "met": bool(row["chain"]["retained"] >= 0.97 and row["chain"]["size_ratio"] <= 0.6
                        and row["chain"]["speedup_b1"] >= 1.6)}
    print("\ngoals:")
    for k, v in g.items():
        print(f"  {k}: {v}")
    print(f"baseline accuracy {base['accuracy']:.2%}; {load_note()}")
    write("training_methods", df, {"goals": g, "baseline_accuracy": base["accuracy"], "load": load_note()})


if __name__ == "__main__":
    main()
