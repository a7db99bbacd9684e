"""The peer side by side (issue 13): plain ONNX Runtime dynamic int8, torch dynamic int8 and our int8 single
settings, measured in one session against one baseline with the protocol every stored result uses.

The peer is exactly what a practitioner gets from the documentation: the dynamo export, ``quantize_dynamic``
with its default options, and ``InferenceSession(path)`` with a default session (its own threads, spinning on).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from compression import api, config
from compression.artifacts import CompressedModel, weight_bytes
from compression.recipes import Recipe
from compression.timing import CONTENTION_CORES

TORCH = "quant(bits=8,kernel=torch)"
# smooth=0.8: chosen on the validation split of two fine-tunes (the int8 outputs' KL to fp32 fell from 2.0-2.2e-3
# to 0.68e-3 with smooth.MIN_OUTLIER_RATIO = 6; 0.5 raised it, 0.7 and 0.9 fell less), never on the test split
# this benchmark reads
OURS = ["quant(bits=8,kernel=ort,embeddings=8)", "quant(bits=8,kernel=ort-fused,embeddings=8)",
        "quant(bits=8,kernel=ort-fused,embeddings=8,smooth=0.8)",
        "quant(bits=8,kernel=ort-static,embeddings=8)", "quant(bits=8,kernel=openvino,embeddings=8)"]
PEER = "peer: ORT dynamic int8, defaults"


def cpu_note() -> str:
    """The CPU model, its family and model numbers, ISA class, whether it has VNNI, and the load (every figure
    is read with it)."""
    import os
    import re

    info = config._cpuinfo()

    def field(name: str) -> str:  # the first CPU's value ("model" must not match "model name")
        m = re.search(rf"^{name}\s*:\s*(.*)$", info, re.M)
        return m.group(1).strip() if m else "?"

    # the rule that decides 7-bit weights (quant.seven_bit_weights): an x86 CPU without VNNI
    int8 = (", no VNNI: our ONNX Runtime and OpenVINO int8 weights keep to 7 bits, the peer's do not"
            if config.int8_saturates() else ", VNNI" if config.VNNI & config.cpu_flags() else "")
    la = os.getloadavg()
    return (f"CPU: {config.cpu_model()} (family {field('cpu family')} model {field('model')}, class "
            f"{config.hardware_id()}{int8}); load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on "
            f"{os.cpu_count()} cores")


def timing_clean(t) -> bool:
    """One batch size's timing is clean where no other process used the CPU while it ran and its interleaved
    baseline was checked against the solo one and matched it (the row's label joins both batch sizes)."""
    return bool(t.base_clean is True and (t.other_cores or 0.0) <= CONTENTION_CORES)


def peer_goal(df: pd.DataFrame) -> dict:
    """Adds the ratios to the peer (row 0) to ``df`` and returns the batch-1 goal: our fastest int8 single
    setting within 0.5 pt (and the paired CI's lower bound of its change >= -1.0 pt) is >= 1.3x the peer, read
    both ways (the two medians directly, and each speedup over its own interleaved baseline, which cancels a drift of the machine between rows), at <= 0.26x the size.
    A batch-1 goal is judged on batch-1 timings: both the peer's and ours must be clean there."""
    peer = df.iloc[0]
    for b in (1, 32):
        df[f"vs_peer_b{b}"] = peer[f"b{b}_ms"] / df[f"b{b}_ms"]  # the two medians, same session
        # each speedup to its own interleaved baseline: cancels a drift of the machine, adds the baseline's noise
        df[f"vs_peer_via_base_b{b}"] = df[f"speedup_b{b}"] / peer[f"speedup_b{b}"]
    # the accuracy rule: the point estimate within 0.5 pt and the paired 95% CI's lower bound >= -1.0
    lo = df["delta_lo_pts"] if "delta_lo_pts" in df else pd.Series(0.0, index=df.index)
    ours = df[df["setting"].isin(OURS) & (df["acc_delta_pts"] >= -0.5) & (lo >= -1.0)]
    if not len(ours):
        return {"met": False, "verdict": "MISSED: none of ours keeps the drop within 0.5 pt with the CI's lower "
                                         "bound at -1.0 pt or above"}
    best = ours.loc[ours["speedup_b1"].idxmax()]
    ratio = min(best["vs_peer_b1"], best["vs_peer_via_base_b1"])
    clean = bool(best["clean_b1"] and peer["clean_b1"])
    why = ("" if clean else "not comparable: " + " and ".join(
        w for w, ok in (("the peer's", peer["clean_b1"]), ("ours", best["clean_b1"])) if not ok)
        + " batch-1 timing was contended")
    out = {"met": bool(clean and ratio >= 1.3 and best["size_ratio"] <= 0.26),
           "best": best["setting"], "vs_peer_b1": float(best["vs_peer_b1"]),
           "vs_peer_via_base_b1": float(best["vs_peer_via_base_b1"]), "vs_peer_b32": float(best["vs_peer_b32"]),
           "acc_delta_pts": float(best["acc_delta_pts"]), "delta_lo_pts": float(lo[best.name]),
           "size_ratio": float(best["size_ratio"]), "b1_clean": clean, "latency_label": best["latency_label"]}
    out["verdict"] = ("met" if out["met"] else why if not clean else
                      f"MISSED: {ratio:.2f}x (the lower of the two readings)" if ratio < 1.3 else
                      f"MISSED: size {best['size_ratio']:.3f}x")
    return out


def b32_goal(df: pd.DataFrame) -> dict:
    """The batch-32 goal on the side-by-side rows (all int8, no casts): the fastest of torch int8 and ours
    within 1 pt of the baseline is >= 1.8x its own interleaved baseline, judged on clean batch-32 timings only."""
    ok = df[df["setting"].isin([TORCH, *OURS]) & (df["acc_delta_pts"] >= -1.0)]
    if not len(ok):
        return {"met": False, "verdict": "MISSED: no setting keeps the drop within 1 pt"}
    clean = ok[ok["clean_b32"].astype(bool)]
    if not len(clean):
        best = ok.loc[ok["speedup_b32"].idxmax()]
        return {"met": False, "best": best["setting"], "speedup_b32": float(best["speedup_b32"]),
                "verdict": "not comparable: no batch-32 timing within 1 pt was clean"}
    best = clean.loc[clean["speedup_b32"].idxmax()]
    met = bool(best["speedup_b32"] >= 1.8)
    return {"met": met, "best": best["setting"], "speedup_b32": float(best["speedup_b32"]),
            "acc_delta_pts": float(best["acc_delta_pts"]),
            "verdict": "met" if met else f"MISSED: {best['speedup_b32']:.2f}x"}


def has_openvino() -> bool:
    """OpenVINO is an optional runtime: its rows are skipped where it is not installed."""
    return not api.optional_missing("openvino")


def _peer(fp32: Path, out: Path) -> CompressedModel:
    import onnxruntime as ort
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(fp32), str(out))  # default options, nothing else
    cm = CompressedModel("onnx", "onnxruntime", "ORT dynamic int8, default options and session",
                         session=ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]))
    cm.onnx_path = out
    return cm


def side_by_side(store, fp: str) -> dict:
    """Measure the peer, torch int8 and ours in this process; print the table and the issue's goal."""
    from compression.engine import JobRunner, compress
    from compression.workload import Workload

    runner = JobRunner(None, lambda f: Path(store.baseline(f)["path"]))
    prepared, ms = runner.session(fp)
    base_mib = weight_bytes(sorted((prepared.path / "model").glob("*.safetensors"))) / 2**20
    scratch = Path(tempfile.mkdtemp(prefix="peer-"))
    rows = []
    for name in [PEER, TORCH, *OURS]:
        if "openvino" in name and not has_openvino():
            print(f"  {name}: skipped, OpenVINO is not installed (pip install -r requirements-openvino.txt)")
            continue
        work = scratch / str(len(rows))
        work.mkdir()
        if name == PEER:
            fp32 = prepared.path / "onnx" / "fp32.onnx"
            if not fp32.exists():  # the baseline's dynamo export, as every ONNX setting starts from
                from compression.methods.quant import export_onnx

                export_onnx(prepared.model, fp32, seq_len=prepared.seq_len, tokenizer=prepared.tokenizer)
            cm = _peer(fp32, work / "peer.int8.onnx")
            files = [cm.onnx_path]
        else:
            wl = Workload(prepared.tokenizer, prepared.train, prepared.val, prepared.info["label_names"],
                          seq_len=prepared.seq_len, seed=ms.seed, teacher=prepared.model, scratch=work,
                          onnx_cache=prepared.path / "onnx" / "fp32.onnx")
            cm = compress(prepared.model, Recipe.parse(name), wl)
            files = cm.save(work / "art")
        print(f"  measuring {name} ...", flush=True)
        m = ms.measure(cm, files, batch32=True, recipe_name=name)
        row = {"setting": name, "accuracy": m.accuracy, "acc_delta_pts": 100 * m.accuracy_delta,
               "delta_lo_pts": 100 * m.delta_lo, "size_mib": m.size_mib, "size_ratio": m.size_mib / base_mib,
               "latency_label": m.labels.latency, "kernel": m.kernel}
        for b in (1, 32):
            t = m.timing("cpu", b)
            row.update({f"b{b}_ms": t.p50_ms, f"speedup_b{b}": t.speedup, f"base_b{b}_ms": t.base_p50_ms,
                        f"base_solo_b{b}_ms": t.base_solo_p50_ms, f"base_clean_b{b}": t.base_clean,
                        f"note_b{b}": t.note, f"other_cores_b{b}": t.other_cores,
                        f"clean_b{b}": timing_clean(t)})
        rows.append(row)
        del cm
    df = pd.DataFrame(rows)
    goal, goal32 = peer_goal(df), b32_goal(df)
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        print("\nthe peer side by side (one session; ratios to the interleaved torch fp32 baseline):")
        print(df.drop(columns=["note_b1", "note_b32", "kernel"]).to_string(
            index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"baseline {base_mib:.1f} MiB; {cpu_note()}")
    print(f"our best int8 >= 1.3x the peer at batch 1, drop <= 0.5 pt, size <= 0.26x: {goal}")
    print(f"the best int8 at batch 32 within 1 pt >= 1.8x the baseline (clean timings only): {goal32}")
    return {"table": df, "goals": {"best int8 >= 1.3x the ORT peer at b1": goal,
                                   "best int8 at b32 >= 1.8x (side by side)": goal32}, "cpu": cpu_note()}
