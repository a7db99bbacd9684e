"""The accuracy-aware search against a fixed uniform grid, on the embedded default (issue 14's Done-when).

    python benchmarks/search.py [--max-drop 1.0] [--trials 20] [--remeasure]

It runs the uniform grid itself (every layer at the same bit-width or sparsity, the word embeddings in fp32, 8 or
4 bits, the embedding rows of tokens the train split never uses as stored, in 2 bits or dropped: the same options
the size search chooses among, applied uniformly), then
``search --objective size`` and ``search --objective latency`` within ``--max-drop`` validation points, and
compares what each search chose, measured on the test split by the full protocol:
- size: at least 10% smaller than the smallest uniform setting whose test drop is no larger than the found
  recipe's;
- latency: at least 5% faster at batch 1 than the fastest uniform setting whose test drop is no larger (or the
  numbers that say why not).
Every comparison prints its numbers, the uniform settings it compared against, and the seconds each part took.
When the found recipe stores those unseen rows in 2 bits or drops them, the same recipe with the rows stored like
the others is measured too, and the part of the saving that comes from the unseen rows is printed
(``unseen_rows_share``).
A smoke run on another baseline: ``--model DIR --dataset CSV --text-col review --label-col sentiment``.
"""
from __future__ import annotations

import dataclasses
import time

from _common import baseline_row, frame, load_note, parser, run_recipes, write

from compression import api
from compression.cli import _progress_printer
from compression.recipes import Recipe
from compression.specs import QuantSpec

# the size search's own options applied uniformly: every layer at one RTN bit-width, the word embeddings in fp32, 8 or
# 4 bits, the rows of tokens the train split never uses stored like the others, in 2 bits or dropped (the search
# picks each layer's width, the embeddings' and the unseen rows' from the same sets)
UNIFORM = [*(f"quant(bits={b},kernel=rtn{emb}{unseen})" for b in (2, 3, 4, 5, 6, 8)
             for emb in ("", ",embeddings=8", ",embeddings=4") for unseen in ("", ",unseen=2", ",unseen=drop")),
           "quant(bits=8,kernel=torch)", "quant(bits=8,kernel=torch,embeddings=8)",
           *(f"prune(sparsity={s / 10:.1f})" for s in range(3, 10))]


def _baseline(args):
    paths, store = api.open_workspace(args.workspace, args.store)
    req = api.baseline_request(args.model, args.dataset, args.text_col, args.label_col,
                               **({"train_steps": args.train_steps} if args.train_steps is not None else {}))
    fp, prep, _ = api.prepare_baseline(store, req)
    api.run_jobs(paths, store, prep, _progress_printer())
    return paths, store, fp


def _search(paths, store, fp, objective: str, args) -> tuple[dict, float]:
    t = time.perf_counter()
    seed = args.search_seed if objective == "size" else 0  # the latency search has no unit that depends on it
    jid = api.enqueue_search(store, fp, args.max_drop, objective, trials=args.trials, seed=seed)
    api.run_jobs(paths, store, [jid], _progress_printer())
    out = api.analysis_outcome(store, jid) or {}
    if out.get("job_id"):
        api.run_jobs(paths, store, [out["job_id"]], _progress_printer())
    return out, time.perf_counter() - t


def _compare(df, uniform_ids: list[int], found, col: str, gain: float) -> dict:
    """The found recipe against the best uniform setting whose test drop is no larger than its own."""
    f = df[df["job_id"] == found["job_id"]].iloc[0]
    drop = float(-100 * f["accuracy_delta"])
    uni = df[df["job_id"].isin(uniform_ids)]
    ok = uni[-100 * uni["accuracy_delta"] <= drop + 1e-9]
    if ok.empty:
        return {"met": False, "why": f"no uniform setting has a test drop <= the found recipe's {drop:.2f} points",
                "found": f["recipe"], "found_value": float(f[col]), "found_test_drop_pts": drop}
    best = ok.loc[ok[col].idxmin()]
    ratio = float(f[col] / best[col])
    return {"met": bool(ratio <= 1 - gain), "ratio": ratio, "goal": f"<= {1 - gain:.2f}", "found": f["recipe"],
            "found_value": float(f[col]), "found_test_drop_pts": drop, "found_label": f.get("latency_label"),
            "best_uniform": best["recipe"], "best_uniform_value": float(best[col]),
            "best_uniform_test_drop_pts": float(-100 * best["accuracy_delta"]),
            "uniform_compared": sorted(ok["recipe"])}


def _without_unseen(name: str) -> Recipe | None:
    """The found recipe with the unseen tokens' rows stored like the other rows (None when it already is)."""
    r = Recipe.parse(name)
    if not any(isinstance(s, QuantSpec) and s.unseen != "same" for s in r.steps):
        return None
    return Recipe(tuple(dataclasses.replace(s, unseen="same") if isinstance(s, QuantSpec) else s for s in r.steps))


def _unseen_share(paths, store, fp, df, goal: dict) -> dict:
    """How much of the found recipe's saving against the best uniform setting its unseen-rows unit makes."""
    r = _without_unseen(goal.get("found", ""))
    if r is None or "best_uniform_value" not in goal:
        return {"unseen_rows_share": 0.0, "why": "the found recipe stores the unseen rows like the others"}
    rows = frame(store, fp, run_recipes(paths, store, fp, [r], False, "search: found without unseen rows"))
    row = rows[rows["recipe"] == r.name].iloc[0]
    saving = goal["best_uniform_value"] - goal["found_value"]
    by_unseen = float(row["size_mib"]) - goal["found_value"]
    return {"without_unseen": r.name, "without_unseen_mib": float(row["size_mib"]),
            "without_unseen_test_drop_pts": float(-100 * row["accuracy_delta"]),
            "without_unseen_ratio": float(row["size_mib"]) / goal["best_uniform_value"],
            "unseen_rows_saving_mib": by_unseen, "total_saving_mib": saving,
            "unseen_rows_share": by_unseen / saving if saving > 0 else float("nan")}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--max-drop", type=float, default=1.0, help="validation budget in accuracy points")
    ap.add_argument("--trials", type=int, default=20, help="NSGA-II trials per search after the greedy start")
    ap.add_argument("--search-seed", type=int, default=0,
                    help="the size search's NSGA-II seed (another seed is another search)")
    for flag, default in (("--model", "default"), ("--dataset", "default"), ("--text-col", "text"),
                          ("--label-col", "label")):
        ap.add_argument(flag, default=default)
    ap.add_argument("--train-steps", type=int, help="fine-tuning steps of a smoke baseline")
    args = ap.parse_args()
    paths, store, fp = _baseline(args)
    t = time.perf_counter()
    ids = run_recipes(paths, store, fp, [Recipe.parse(s) for s in UNIFORM], args.remeasure, "uniform grid")
    seconds = {"uniform grid": time.perf_counter() - t}
    found = {}
    for objective in ("size", "latency"):
        found[objective], seconds[f"search {objective}"] = _search(paths, store, fp, objective, args)
    df = frame(store, fp, ids + [o["job_id"] for o in found.values() if o.get("job_id")])
    chosen = {o.get("job_id"): k for k, o in found.items()}
    df["origin"] = [f"search {chosen[j]}" if j in chosen else "uniform" for j in df["job_id"]]  # a search may pick a
    # uniform setting: its row is labelled by the search and still compared as uniform
    base = baseline_row(store, fp)
    goals = {}
    for objective, col, gain in (("size", "size_mib", 0.10), ("latency", "lat_b1_p50_ms", 0.05)):
        o = found[objective]
        goals[objective] = (_compare(df, ids, o, col, gain) if o.get("job_id") else
                            {"met": False, "why": o.get("error", "the search did not finish")})
        goals[objective]["val"] = {k: o.get(k) for k in ("recipe", "val_accuracy", "drop", "objective_value",
                                                         "objective_label", "trials")}
    if goals["size"].get("found"):
        goals["size"]["unseen"] = _unseen_share(paths, store, fp, df, goals["size"])
    df["acc_delta_pts"] = 100 * df["accuracy_delta"]
    cols = ["origin", "recipe", "accuracy", "acc_delta_pts", "size_mib", "lat_b1_p50_ms", "speedup_b1",
            "latency_label", "kernel"]
    print(df[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print("\ngoals (test split, full protocol; the searches chose on validation only):")
    for k, v in goals.items():
        print(f"  {k}: {v}")
    print(f"seconds: { {k: round(v, 1) for k, v in seconds.items()} }")
    print(f"baseline: accuracy {base['accuracy']:.2%}, {base['size_mib']:.1f} MiB, b1 {base['lat_b1_p50_ms']:.1f} ms; "
          f"{load_note()}")
    write("search", df, {"goals": goals, "seconds": seconds, "uniform": UNIFORM, "max_drop": args.max_drop,
                         "trials": args.trials, "search_seed": args.search_seed,
                         "load": load_note()})


if __name__ == "__main__":
    main()
