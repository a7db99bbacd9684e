"""How much of a job's wall time is engine overhead, and what int8 buys on the embedded default.

    python benchmarks/engine_overhead.py

Runs four int8 settings in one worker session (measured again if stored) and reports:
- the share of each job's wall time (claim to finish, from the store) spent outside compress and
  measure (goal <= 10%); loading the baseline happens once per worker session and is shown apart;
- the baseline -> int8 ratios: size, latency at batch 1 and 32 (same-session, interleaved), accuracy change.
"""
from __future__ import annotations

import pandas as pd
from _common import baseline_row, default_baseline, frame, load_note, parser, run_recipes, write

from compression.recipes import Recipe

INT8 = ["quant(bits=8,kernel=torch)", "quant(bits=8,kernel=torch,embeddings=8)", "quant(bits=8,kernel=ort)",
        "quant(bits=8,kernel=ort,embeddings=8)"]


def main() -> None:
    args = parser(__doc__).parse_args()
    paths, store, fp = default_baseline(args)
    ids = run_recipes(paths, store, fp, [Recipe.parse(r) for r in INT8], remeasure=True, name="engine-overhead")
    df = frame(store, fp, ids)
    base = baseline_row(store, fp)
    rows = []
    for jid in ids:
        job = store.job(jid)
        data = [r for r in store.results(baseline=fp) if r["job_id"] == jid][0]["data"]
        s = data["seconds"]
        wall = job["finished_at"] - job["started_at"]
        inside = s["compress"] + s["save"] + s["measure"] + s["measure_b32"]
        d = df[df["job_id"] == jid].iloc[0]
        rows.append({"recipe": d["recipe"], "wall_s": wall, "load_s": s["load"], "compress_s": s["compress"],
                     "save_s": s["save"], "measure_s": s["measure"] + s["measure_b32"],
                     "first_landing_s": s["total"] - s["load"],
                     "overhead_share": (wall - inside - s["load"]) / (wall - s["load"]),
                     "size_ratio": d["size_mib"] / base["size_mib"], "speedup_b1": d["speedup_b1"],
                     "speedup_b32": d["speedup_b32"], "acc_delta_pts": d["accuracy_delta"] * 100,
                     "delta_ci_pts": f"[{d['delta_lo'] * 100:+.2f}, {d['delta_hi'] * 100:+.2f}]",
                     "latency_label": d["latency_label"]})
    out = pd.DataFrame(rows)
    print(out.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    worst = float(out["overhead_share"].max())
    summary = {"overhead_share_max": worst, "goal": 0.10, "met": worst <= 0.10,
               "baseline_load_once_s": float(out["load_s"].max()), "baseline_accuracy": float(base["accuracy"]),
               "rows": rows, "load": load_note()}
    print(f"\nper-job overhead outside compress+measure: max {worst:.1%} of wall time "
          f"({'met' if worst <= 0.10 else 'MISSED'}; goal <= 10%); baseline load once per worker session: "
          f"{summary['baseline_load_once_s']:.1f} s; baseline accuracy {base['accuracy']:.2%}; {load_note()}")
    write("engine_overhead", out, summary)


if __name__ == "__main__":
    main()
