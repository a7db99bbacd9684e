"""Which 4-bit setting on ONNX Runtime's MatMulNBits kernel to put forward, chosen on the validation split only.

    python benchmarks/nbits_scan.py [--workspace DIR] [--seed N] [--group-size 128]

Every variant is compressed from the prepared default and scored on the validation rows (the test split is
never loaded: the scan goes through ``ValBench``, which reads train and validation only). Each line gives the
change in accuracy against the baseline on validation with its paired 95% interval, the answers that flip,
and the mean KL divergence of the variant's output distribution from the baseline's (a finer measure of
closeness than accuracy on ~1,300 rows). The setting chosen here is then measured once on test by
``python benchmarks/post_training.py --accuracy-goals``.

One variant is not a recipe a user can pick: "accuracy level 0" runs the same RTN weights with fp32
activations in the kernel instead of int8 blocks, to tell whether the kernel's activation rounding is what
costs accuracy. The scan sets it for that variant only.
"""
from __future__ import annotations

import contextlib
import time

import numpy as np
from _common import default_baseline, load_note, parser, write
from _peer import cpu_note

from compression.engine import compress
from compression.measure import quality
from compression.methods import nbits as nbits_module
from compression.recipes import Recipe
from compression.sensitivity import ValBench


def variants(group_size: int = 128) -> list[tuple[str, str, int | None]]:
    """(label, recipe, the kernel's accuracy level where the scan overrides it)."""
    q = f"quant(bits=4,kernel=nbits,group_size={group_size}"
    return [
        ("RTN, symmetric", q + ")", None),
        ("RTN, symmetric, fp32 activations (accuracy level 0)", q + ")", 0),
        ("RTN, asymmetric", q + ",scheme=asym)", None),
        ("RTN, symmetric, MSE clipping", q + ",clip=mse)", None),
        ("HQQ, asymmetric", q + ",scheme=asym,algorithm=hqq)", None),
        ("GPTQ, symmetric", q + ",algorithm=gptq)", None),
        ("GPTQ, asymmetric, act-order, MSE clipping", q + ",scheme=asym,algorithm=gptq,act_order=on,clip=mse)", None),
    ]


def kl_from(base_logits: np.ndarray, logits: np.ndarray) -> float:
    """Mean KL(baseline || variant) over rows, in nats, from raw logits."""
    def log_softmax(z):
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))
    lp, lq = log_softmax(np.asarray(base_logits, np.float64)), log_softmax(np.asarray(logits, np.float64))
    return float((np.exp(lp) * (lp - lq)).sum(1).mean())


@contextlib.contextmanager
def accuracy_level(level: int | None):
    old = nbits_module.ACCURACY_LEVEL
    if level is not None:
        nbits_module.ACCURACY_LEVEL = level
    try:
        yield
    finally:
        nbits_module.ACCURACY_LEVEL = old


def scan(bench: ValBench, chosen: list[tuple[str, str, int | None]], log=print) -> list[dict]:
    """Score each variant on the validation split against the baseline's own validation outputs."""
    base = bench.val.logits(compress(bench.model, Recipe(()), bench.workload))
    base_pred, y = base.argmax(1), bench.val.y
    rows = []
    for label, text, level in chosen:
        t = time.perf_counter()
        with accuracy_level(level):
            cm = compress(bench.model, Recipe.parse(text), bench.workload)
            logits = bench.val.logits(cm)
        pred = logits.argmax(1)
        q = quality(pred, y, base_pred, bench.workload.seed)
        row = {"variant": label, "recipe": text, "accuracy_level": level, "val_accuracy": q["accuracy"],
               "change_pts": 100 * q["accuracy_delta"], "ci_lo_pts": 100 * q["delta_lo"],
               "ci_hi_pts": 100 * q["delta_hi"], "flips": int((pred != base_pred).sum()),
               "kl_e3": 1e3 * kl_from(base, logits), "rows": int(len(y)), "seconds": time.perf_counter() - t}
        rows.append(row)
        log(f"  {label}: {row['change_pts']:+.2f} pts [{row['ci_lo_pts']:+.2f}, {row['ci_hi_pts']:+.2f}], "
            f"{row['flips']} flips, KL {row['kl_e3']:.2f}e-3 ({row['seconds']:.0f} s)")
    return rows


def main() -> None:
    import pandas as pd

    ap = parser(__doc__)
    ap.add_argument("--group-size", type=int, default=128, help="weights per scale group (32..128)")
    args = ap.parse_args()
    print(cpu_note())
    _, store, fp = default_baseline(args)
    bench = ValBench(store, fp)
    try:
        base_acc = float((bench.val.logits(compress(bench.model, Recipe(()), bench.workload)).argmax(1)
                          == bench.val.y).mean())
        print(f"baseline on validation: {base_acc:.2%} over {len(bench.val.y)} rows; 4-bit g{args.group_size} "
              "on MatMulNBits (validation only, the test split is not read):")
        rows = scan(bench, variants(args.group_size))
    finally:
        bench.close()
    print(f"{load_note()}\n{cpu_note()}")
    write(f"nbits_scan_g{args.group_size}", pd.DataFrame(rows),
          {"baseline_val_accuracy": base_acc, "rows": rows, "load": load_note(), "cpu": cpu_note(),
           "seed": args.seed})


if __name__ == "__main__":
    main()
