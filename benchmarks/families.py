"""Every method on every family: per family (the tests' tiny random configs) and for the embedded default,
which methods ran, the ratios they reached (size, batch-1 speedup, accuracy change) and the seconds each
setting took to land. One setting per method (the catalogue's mild example, so a new method joins by being
registered) and ONNX Runtime int8.

    python benchmarks/families.py [--families bert,gpt2] [--steps 30] [--workspace WS] [--no-default]

The tiny families are prepared in a fresh workspace of their own (--family-workspace, else a temporary
folder). The default is measured only if it is already prepared in the CLI's workspace (--workspace):
this script never fine-tunes it.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from _common import ROOT, frame, load_note, parser, write

sys.path.insert(0, str(ROOT / "tests"))

from compression import api  # noqa: E402
from compression.recipes import Recipe  # noqa: E402
from compression.registry import CATALOGUE  # noqa: E402

COLS = ["family", "method", "recipe", "state", "size_ratio", "speedup_b1", "acc_delta_pts", "landing_s", "total_s",
        "error"]


def settings() -> list[Recipe]:
    return [Recipe((e.examples[0],)) for e in CATALOGUE.values()] + [Recipe.parse("quant(bits=8,kernel=ort)")]


def measure(paths, store, fp: str, family: str, remeasure: bool) -> pd.DataFrame:
    """One setting per method on a prepared baseline: a row per setting, landed or failed."""
    recipes = settings()
    _, ids = api.enqueue_recipes(store, fp, recipes, f"families-{family}", retry_failed=True, remeasure=remeasure)
    api.run_jobs(paths, store, ids + api.baseline_jobs(store, fp), None)
    df = frame(store, fp, ids)
    base = frame(store, fp, api.baseline_jobs(store, fp)).iloc[0]
    secs = {r["job_id"]: r["data"].get("seconds", {}) for r in store.results(baseline=fp)}
    rows = []
    for j in store.jobs(ids=ids):
        name = Recipe.from_key(j["recipe"]).name
        row = {"family": family, "method": name.split("(")[0], "recipe": name, "state": j["state"],
               "error": (j["error"] or "").splitlines()[0][:160] if j["error"] else ""}
        got = df[df["job_id"] == j["id"]]
        if j["state"] == "done" and not got.empty:
            r, s = got.iloc[0], secs.get(j["id"], {})
            row.update(size_ratio=r["size_mib"] / base["size_mib"], speedup_b1=r["speedup_b1"],
                       acc_delta_pts=r["accuracy_delta"] * 100,
                       landing_s=(s.get("total", float("nan")) - s.get("load", 0.0)) if s else float("nan"),
                       total_s=s.get("total_with_b32", s.get("total", float("nan"))))
        rows.append(row)
    return pd.DataFrame(rows, columns=COLS)


def tiny_family(name: str, root: Path, steps: int, remeasure: bool) -> pd.DataFrame:
    from conftest import make_csv
    from family_models import build

    model = build(name, root / "models" / name) if not (root / "models" / name / "config.json").exists() \
        else root / "models" / name
    csv = make_csv(root / "reviews.csv", n=400)
    paths, store = api.open_workspace(str(root / "ws"))
    t = time.perf_counter()
    try:
        req = api.baseline_request(str(model), str(csv), text_col="review", label_col="sentiment", train_steps=steps,
                                   lr=3e-3, force_train=True)
        fp, prep, _ = api.prepare_baseline(store, req)
        api.run_jobs(paths, store, prep, None)
        bad = [j for j in store.jobs(ids=prep) if j["state"] != "done"]
        if bad:
            raise RuntimeError((bad[0]["error"] or bad[0]["state"]).splitlines()[0][:160])
    except Exception as e:  # a family whose baseline cannot be prepared still gets its line in the table
        return pd.DataFrame([{"family": name, "method": "prepare", "recipe": "baseline", "state": "failed",
                              "error": f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"}],
                            columns=COLS)
    print(f"{name}: prepared in {time.perf_counter() - t:.0f} s")
    return measure(paths, store, fp, name, remeasure)


def default_family(args) -> pd.DataFrame | None:
    """The embedded default, only where it is already prepared in the CLI's workspace."""
    paths, store = api.open_workspace(args.workspace, args.store)
    prepared = [b for b in store.baselines() if b["prepared"] and b["model_source"].get("kind") == "default"
                and b["dataset_source"].get("kind") == "default"]
    if not prepared:
        print(f"default: not prepared in {paths.workspace}; skipped (python -m compression prepare does it once)")
        return None
    return measure(paths, store, prepared[-1]["fingerprint"], "default", args.remeasure)


def main() -> None:
    from family_models import FAMILIES

    ap = parser(__doc__)
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated tiny families")
    ap.add_argument("--family-workspace", help="where the tiny families are prepared (default: a temporary folder)")
    ap.add_argument("--steps", type=int, default=30, help="fine-tuning steps of each tiny baseline")
    ap.add_argument("--no-default", action="store_true", help="skip the embedded default")
    args = ap.parse_args()
    root = Path(args.family_workspace or tempfile.mkdtemp(prefix="families-"))
    frames = []
    for name in filter(None, args.families.split(",")):
        if name not in FAMILIES:
            raise SystemExit(f"unknown family {name!r}: choose from {', '.join(FAMILIES)}")
        frames.append(tiny_family(name, root, args.steps, args.remeasure))
    if not args.no_default and (d := default_family(args)) is not None:
        frames.append(d)
    df = pd.concat(frames, ignore_index=True)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_colwidth", 70)
    print(df.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    summary = {}
    for fam, g in df.groupby("family", sort=False):
        ok = g[g["state"] == "done"]
        summary[fam] = {"ran": list(ok["recipe"]), "failed": dict(zip(g.loc[g["state"] != "done", "recipe"],
                                                                         g.loc[g["state"] != "done", "error"])),
                        "median_landing_s": float(ok["landing_s"].median()) if len(ok) else None}
    print("\nper family:")
    for fam, s in summary.items():
        print(f"  {fam}: ran {len(s['ran'])}/{len(settings())} settings; "
              f"median {s['median_landing_s'] or float('nan'):.2f} s per setting to land; failed: {list(s['failed']) or 'none'}")
    print(load_note())
    write("families", df, {"families": summary, "load": load_note(), "workspace": str(root)})


if __name__ == "__main__":
    main()
