"""Shared plumbing for the benchmark scripts: the default baseline, running recipes, writing outputs.

Benchmarks use the real embedded default and the same workspace/store resolver as the CLI
(--workspace, else $COMPRESSION_WORKSPACE, else the user cache), so a prepared baseline is reused.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "out"

from compression import api  # noqa: E402
from compression.cli import _progress_printer  # noqa: E402


def parser(desc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=desc)
    ap.add_argument("--workspace", help="workspace (default: as the CLI resolves it)")
    ap.add_argument("--store", help="store URL (default: as the CLI resolves it)")
    ap.add_argument("--remeasure", action="store_true", help="measure settings again even if stored")
    ap.add_argument("--seed", type=int, default=api.TRAIN_SEED,
                    help="seed of the default's split and fine-tune (default: the embedded default's own): "
                         "another seed is a replication on another test split and another fine-tune")
    return ap


def default_baseline(args) -> tuple[api.Paths, api.Store, str]:
    """Open the workspace and make sure the embedded default is prepared (fine-tunes once, ~4-7 min)."""
    paths, store = api.open_workspace(args.workspace, args.store)
    fp, prep, _ = api.prepare_baseline(store, api.baseline_request(seed=getattr(args, "seed", api.TRAIN_SEED)))
    api.run_jobs(paths, store, prep, _progress_printer())
    return paths, store, fp


def run_recipes(paths, store, fp: str, recipes: list[api.Recipe], remeasure: bool = False,
                name: str = "benchmark") -> list[int]:
    """Queue the recipes (and the baseline row) and run them in this process, one at a time."""
    _, ids = api.enqueue_recipes(store, fp, recipes, name, retry_failed=remeasure, remeasure=remeasure)
    api.run_jobs(paths, store, ids, _progress_printer())
    return ids


def frame(store, fp, ids):
    df = api.results_frame(store, baseline=fp)
    return df[df["job_id"].isin(ids)].reset_index(drop=True)


def baseline_row(store, fp):
    """The baseline's own result row (its empty recipe), as results_frame shows it."""
    return frame(store, fp, api.baseline_jobs(store, fp)).iloc[0]  # its preparation job stores no result


def load_note() -> str:
    la = os.getloadavg()
    return f"load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on {os.cpu_count()} cores"


def write(name: str, df, summary: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    df.to_csv(OUT / f"{name}-{stamp}.csv", index=False)
    (OUT / f"{name}-{stamp}.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"\nwrote {OUT / f'{name}-{stamp}.csv'} and .json")
