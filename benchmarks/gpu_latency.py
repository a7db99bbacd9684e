"""CPU and GPU latency side by side for the post-training settings, on a machine with CUDA.

    python benchmarks/gpu_latency.py [--model default] [--dataset default] [--workspace WS] [--remeasure]

It goes through the CLI as a user would (``prepare``, then ``sweep --recipe ...``), so every row is an
ordinary stored result: the CPU numbers under the protocol (2 intra-op threads), and beside them the
``gpu_*`` numbers that the measurement adds wherever CUDA is present. Settings whose runtime has no CUDA
kernel (ONNX Runtime's CPU provider, torch's fbgemm int8) show the reason instead of a GPU number.
On a CPU-only machine it says so and stops: there is nothing to compare.
"""
from __future__ import annotations

import pandas as pd
from _common import OUT, load_note, write  # noqa: F401  (OUT: where the CSV lands)

from compression import api
from compression.cli import main as cli
from compression.timing import cuda_device  # no API call says whether CUDA is here

SETTINGS = [
    "cast(dtype=bf16)", "cast(dtype=fp16)", "quant(bits=8,kernel=torch)", "quant(bits=8,kernel=ort,embeddings=8)",
    "quant(bits=8,kernel=quanto)", "quant(bits=4,kernel=rtn,group_size=64)", "prune(sparsity=0.5)",
    "lowrank(rank_fraction=0.5)", "layers(fraction=0.5)", "heads(fraction=0.5)", "neurons(fraction=0.5)",
]


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace")
    ap.add_argument("--model", default="default")
    ap.add_argument("--dataset", default="default")
    ap.add_argument("--text-col")
    ap.add_argument("--label-col")
    ap.add_argument("--remeasure", action="store_true")
    args = ap.parse_args()
    gpu = cuda_device()
    if gpu is None:
        print("No CUDA device here (or COMPRESSION_NO_CUDA=1): there is no GPU latency to measure.")
        return 0
    base = ["--model", args.model, "--dataset", args.dataset]
    base += ["--text-col", args.text_col] if args.text_col else []
    base += ["--label-col", args.label_col] if args.label_col else []
    base += ["--workspace", args.workspace] if args.workspace else []
    if cli(["prepare", *base]) != 0:
        return 1
    recipes = [a for s in SETTINGS for a in ("--recipe", s)]
    # a failed setting is reported by the sweep and left out of the table; the others still count
    cli(["sweep", *base, *recipes, "--name", "gpu-latency", *(["--remeasure"] if args.remeasure else [])])
    _, store = api.open_workspace(args.workspace)
    fp = api.add_baseline(store, api.baseline_request(args.model, args.dataset, args.text_col or "text",
                                                      args.label_col or "label"))  # registered: its fingerprint
    df = api.results_frame(store, baseline=fp, hardware=api.hardware_id())
    names = {"baseline"} | {api.Recipe.parse(s).name for s in SETTINGS}
    df = df[df["recipe"].isin(names)].reset_index(drop=True)
    if df.empty:
        print("No results were stored; see the sweep's messages above.")
        return 1
    cols = ["recipe", "accuracy", "size_mib", "lat_b1_p50_ms", "speedup_b1", "lat_b32_p50_ms", "latency_label",
            "gpu_lat_b1_p50_ms", "gpu_speedup_b1", "gpu_lat_b32_p50_ms", "gpu_speedup_b32", "gpu_latency_label",
            "gpu_note"]
    pd.set_option("display.width", 250)
    pd.set_option("display.max_colwidth", 70)
    print(f"\nGPU: {gpu}; CPU: {df['cpu'].iloc[0]} at {df['threads_intra'].iloc[0]} threads; {load_note()}")
    print(df[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    write("gpu_latency", df, {"gpu": gpu, "settings": SETTINGS, "load": load_note()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
