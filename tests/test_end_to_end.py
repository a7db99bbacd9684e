"""prepare -> sweep -> results through the CLI, on a tiny random model and a small CSV."""
from __future__ import annotations

import io
from contextlib import redirect_stdout

import pandas as pd

from compression import resolve
from compression.cli import main
from compression.report import CSV_COLUMNS
from compression.store import Store


def run_cli(*argv) -> tuple[int, str]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(list(argv))
    return rc, buf.getvalue()


def test_results_show_baseline_and_int8_rows_with_labels(prepared):
    ws, args = prepared
    rc, out = run_cli("results", "--workspace", str(ws))
    assert rc == 0
    assert str(ws) in out  # the CLI says which workspace and store it reads
    lines = out.splitlines()
    base = next(line for line in lines if " baseline " in f" {line} ")
    int8 = next(line for line in lines if "quant(" in line)
    for line in (base, int8):
        assert "measured" in line  # every number carries its label
    assert "majority" in out and "TF-IDF" in out


def test_csv_has_the_documented_columns_and_int8_is_smaller(prepared, tmp_path):
    ws, _ = prepared
    out = tmp_path / "r.csv"
    assert run_cli("results", "--workspace", str(ws), "--csv", str(out))[0] == 0
    df = pd.read_csv(out)
    assert list(df.columns) == CSV_COLUMNS
    base = df[df["method"] == "baseline"].iloc[0]
    q = df[df["method"] == "quant"].iloc[0]
    assert q["size_bytes"] < 0.7 * base["size_bytes"]  # int8 Linear weights: real bytes on disk
    assert q["runtime"] == "torch" and "int8" in q["kernel"]
    assert 0.0 <= q["agreement"] <= 1.0
    assert base["accuracy_lo"] <= base["accuracy"] <= base["accuracy_hi"]
    assert base["torch"] and base["seed"] == 0 and base["threads_intra"] >= 1
    for col in ("lat_b1_p50_ms", "lat_b1_p90_ms", "lat_b32_p50_ms", "lat_b32_p90_ms", "peak_rss_mib"):
        assert q[col] > 0
    assert q["lat_b1_p90_ms"] >= q["lat_b1_p50_ms"]


def test_tiny_baseline_learned_something(prepared):
    ws, _ = prepared
    store = Store(resolve(ws).store_url)
    (b,) = store.baselines()
    info = b["info"]
    df = pd.DataFrame([r["data"] for r in store.results()])
    acc = df[df["method"] == "baseline"]["accuracy"].iloc[0]
    assert info["trained_head"] is True
    assert acc > info["majority_accuracy"] + 0.1  # fine-tuning really ran


def test_sweep_again_runs_nothing_new(prepared):
    ws, args = prepared
    store = Store(resolve(ws).store_url)
    before = {j["id"]: (j["state"], j["finished_at"]) for j in store.jobs()}
    n_results = len(store.results(latest=False))
    rc, _ = run_cli("sweep", "--method", "quant", "--bits", "8", *args)
    assert rc == 0
    after = {j["id"]: (j["state"], j["finished_at"]) for j in store.jobs()}
    assert after == before
    assert len(store.results(latest=False)) == n_results


def test_prepare_again_does_nothing(prepared, capsys):
    ws, args = prepared
    assert main(["prepare", *args]) == 0
    assert "already prepared" in capsys.readouterr().out
