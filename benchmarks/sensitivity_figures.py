"""The README's sensitivity heatmaps (issue 14): per-layer sensitivity of the embedded default, measured on the
validation split, for pruning (30-90% sparsity) and for round-to-nearest weights (2, 3, 4 and 8 bits, 4-bit
among them), drawn by the Search page's own figure and written to docs/sensitivity-{prune,quant}.png.

    python benchmarks/sensitivity_figures.py [--workspace WS]

Runs (or resumes: scored cells are stored) ``python -m compression sensitivity`` for each method, then prints
each table and its plain sentence.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import default_baseline, parser  # noqa: E402

from compression import api, config  # noqa: E402
from compression.cli import main as cli  # noqa: E402
from ui.search import heatmap  # noqa: E402

RUNS = {"prune": [0.3, 0.5, 0.7, 0.9], "quant": [2, 3, 4, 8]}


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    paths, store, fp = default_baseline(args)
    print(f"CPU: {config.cpu_model()} ({config.hardware_id()}), load {os.getloadavg()[0]:.1f}")
    import kaleido

    kaleido.start_sync_server()
    for method, levels in RUNS.items():
        t = time.perf_counter()
        ws = ["--workspace", str(paths.workspace)] + (["--store", args.store] if args.store else [])
        rc = cli(["sensitivity", *ws, "--method", method, "--levels", ",".join(map(str, levels))])
        df, base = api.sensitivity_frame(store, fp, method, levels)
        print(f"\n{method}: {time.perf_counter() - t:.0f} s (exit {rc})")
        print(df[["unit", "level", "accuracy", "drop", "drop_lo", "drop_hi"]].to_string(index=False))
        print(api.sensitivity_sentence(df))
        fig = heatmap(df, base, method)
        fig.update_layout(template="plotly_white", width=900)
        out = ROOT / "docs" / f"sensitivity-{method}.png"
        fig.write_image(str(out), width=900, height=fig.layout.height or 400, scale=1)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
