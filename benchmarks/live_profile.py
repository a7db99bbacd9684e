"""Where a live-knob setting's seconds go (issue 12, item 3): per stage, per method, on the prepared default.

Runs each setting as the worker runs a live release (JobRunner.run with the preview, then the full pass, then
batch 32) in one warm session, against a scratch store that holds only the baseline, and prints load,
compress, save, preview, full and batch-32 seconds, plus the top functions of compress+save+preview by
cumulative time (cProfile). Not a timed test; label the figures with the CPU model and load it prints.

    python benchmarks/live_profile.py --workspace /path/to/workspace/with/the/default/prepared
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compression import api, config  # noqa: E402
from compression.engine import JobRunner  # noqa: E402
from compression.recipes import Recipe  # noqa: E402
from compression.training import CancelToken  # noqa: E402

SETTINGS = {"int8": "quant(bits=8)", "RTN 4-bit": "quant(bits=4)", "prune 50%": "prune(sparsity=0.5)",
            "prune 50% Wanda": "prune(sparsity=0.5,criterion=wanda)", "low-rank 50%": "lowrank(rank_fraction=0.5)"}


def _top(prof: cProfile.Profile, n: int = 8) -> list[str]:
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(40)
    rows = [ln for ln in s.getvalue().splitlines() if ROOT.name in ln or "compression/" in ln]
    return [" ".join(ln.split()) for ln in rows[:n]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", help="workspace holding the prepared default baseline")
    ap.add_argument("--only", nargs="*", choices=list(SETTINGS), help="a subset of the settings")
    args = ap.parse_args()
    paths, store = api.open_workspace(args.workspace)
    b = api.default_baseline(store)
    if b is None or not b["prepared"]:
        sys.exit(f"the default baseline is not prepared in {paths.workspace}")
    scratch, _ = api.open_workspace(tempfile.mkdtemp(prefix="live-profile-"))
    runner = JobRunner(scratch, lambda fp: Path(b["path"]))
    t = time.perf_counter()
    runner.warm(b["fingerprint"])
    out: dict = {"cpu": config.cpu_model(),
                 "hardware": config.hardware_id(), "warm_s": round(time.perf_counter() - t, 2), "settings": {}}
    for i, (label, key) in enumerate(SETTINGS.items()):
        if args.only and label not in args.only:
            continue
        job = {"id": 10_000 + i, "recipe": Recipe.parse(key).key,
               "baseline": b["fingerprint"]}
        prof = cProfile.Profile()
        prof.enable()
        landed = runner.run(job, lambda f, m: None, CancelToken(), preview=True)
        prof.disable()
        pre = landed.measurement.seconds
        t = time.perf_counter()
        landed.complete()
        full = landed.measurement.seconds
        out["settings"][label] = {
            "load_s": round(pre.load, 2), "compress_s": round(pre.compress, 2), "save_s": round(pre.save, 2),
            "preview_measure_s": round(pre.measure, 2), "release_to_preview_s": round(pre.total, 2),
            "full_measure_s": round(full.measure or 0, 2), "batch32_s": round(full.measure_b32 or 0, 2),
            "complete_s": round(time.perf_counter() - t, 2), "top_functions_to_preview": _top(prof)}
        print(label, json.dumps(out["settings"][label], indent=1), flush=True)
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    dest = ROOT / "benchmarks" / "out" / "live_profile.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "settings"}))


if __name__ == "__main__":
    main()
