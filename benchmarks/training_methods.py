"""Training-based methods on the embedded default: distillation, structured pruning, recovery, chains.

    python benchmarks/training_methods.py [--remeasure]

Ratios are to the baseline timed in the same worker session. Goals (reported met or MISSED):
- 3-layer student: >= 97% of baseline accuracy and >= 1.8x faster at batch 1;
- 40% of heads removed: >= 97% retained, with a measured speedup;
- 80% unstructured pruning with recovery: >= 95% retained;
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
    "chain": "distill(student_layers=3,steps=200)>quant(bits=8,kernel=torch,embeddings=8)",
}


def main() -> None:
    args = parser(__doc__).parse_args()
    paths, store, fp = default_baseline(args)
    recipes = {k: Recipe.parse(v) for k, v in SETTINGS.items()}
    ids = run_recipes(paths, store, fp, list(recipes.values()), args.remeasure, "training-methods")
    df = frame(store, fp, ids)
    base = baseline_row(store, fp)
    secs = {r["job_id"]: r["data"]["seconds"] for r in store.results(baseline=fp)}
    df["wall_s"] = [secs[j].get("total_with_b32", secs[j]["total"]) for j in df["job_id"]]
    df["retained"] = df["accuracy"] / base["accuracy"]
    df["size_ratio"] = df["size_mib"] / base["size_mib"]
    pd.set_option("display.width", 250)
    cols = ["recipe", "accuracy", "retained", "size_mib", "size_ratio", "lat_b1_p50_ms", "speedup_b1",
            "lat_b32_p50_ms", "speedup_b32", "latency_label", "wall_s"]
    print(df[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    row = {k: df[df["recipe"] == r.name].iloc[0] for k, r in recipes.items()}
    g = {
        "3-layer student >= 97% and >= 1.8x b1": {
            "met": bool(row["student3"]["retained"] >= 0.97 and row["student3"]["speedup_b1"] >= 1.8),
            "retained": row["student3"]["retained"], "speedup_b1": row["student3"]["speedup_b1"]},
        "40% heads removed >= 97% with a speedup": {
            "met": bool(row["heads40"]["retained"] >= 0.97 and row["heads40"]["speedup_b1_note"].endswith("faster")),
            "retained": row["heads40"]["retained"], "speedup_b1": row["heads40"]["speedup_b1"],
            "note": row["heads40"]["speedup_b1_note"]},
        "80% pruning with recovery >= 95%": {
            "met": bool(row["prune80"]["retained"] >= 0.95), "retained": row["prune80"]["retained"],
            "without_recovery": row["prune80_none"]["retained"]},
        "distill -> int8 vs DistilBERT (97% kept, 40% smaller, 60% faster)": {
            "retained": row["chain"]["retained"], "size_reduction": 1 - row["chain"]["size_ratio"],
            "speedup_b1": row["chain"]["speedup_b1"], "speedup_b32": row["chain"]["speedup_b32"],
            "met": bool(row["chain"]["retained"] >= 0.97 and row["chain"]["size_ratio"] <= 0.6
                        and row["chain"]["speedup_b1"] >= 1.6)},
    }
    print("\ngoals:")
    for k, v in g.items():
        print(f"  {k}: {v}")
    print(f"baseline accuracy {base['accuracy']:.2%}; {load_note()}")
    write("training_methods", df, {"goals": g, "baseline_accuracy": base["accuracy"], "load": load_note()})


if __name__ == "__main__":
    main()
