"""Each bad input gives one clear error line, exit code 2, and leaves the store as it was."""
from __future__ import annotations

import pytest

from compression import resolve
from compression.cli import main
from compression.store import Store
from conftest import huge_model, make_csv


def snapshot(ws):
    store = Store(resolve(ws).store_url)
    return ([(j["id"], j["state"]) for j in store.jobs()], len(store.results(latest=False)),
            [b["fingerprint"] for b in store.baselines()])


@pytest.fixture
def csv_variants(tmp_path):
    no_text = tmp_path / "no_text.csv"
    no_text.write_text("body,sentiment\nnice film,positive\n")
    single = tmp_path / "single.csv"
    make_csv(single, n=50)
    single.write_text(single.read_text().replace("negative", "positive"))
    empty_dir = tmp_path / "not_a_model"
    empty_dir.mkdir()
    return {"no_text": no_text, "single": single, "empty_dir": empty_dir, "huge": huge_model(tmp_path / "huge")}


CASES = {
    "missing model path": (lambda v, m, c: ["prepare", "--model", "/nonexistent/model", "--dataset", str(c)],
                           "does not exist"),
    "folder without config.json": (lambda v, m, c: ["prepare", "--model", str(v["empty_dir"]), "--dataset", str(c)],
                                   "config.json"),
    "csv without the text column": (lambda v, m, c: ["prepare", "--model", str(m), "--dataset", str(v["no_text"]),
                                                     "--text-col", "review", "--label-col", "sentiment"],
                                    "no text column 'review'"),
    "single-class csv": (lambda v, m, c: ["prepare", "--model", str(m), "--dataset", str(v["single"]),
                                          "--text-col", "review", "--label-col", "sentiment"],
                         "at least two classes"),
    "model too big for memory": (lambda v, m, c: ["prepare", "--model", str(v["huge"]), "--dataset", str(c),
                                                  "--text-col", "review", "--label-col", "sentiment"],
                                 "huge has 274,878M parameters: fine-tuning and compressing it needs about 5,121.0 GiB"),
    "bits=0": (lambda v, m, c: ["sweep", "--method", "quant", "--bits", "0"], "quant.bits=0 is out of range"),
    "unknown method": (lambda v, m, c: ["sweep", "--method", "squash"], "unknown method 'squash'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_line_and_store_intact(case, prepared, csv_variants, tiny_model, tiny_csv, capsys):
    ws, _ = prepared
    build, expected = CASES[case]
    before = snapshot(ws)
    capsys.readouterr()
    rc = main([*build(csv_variants, tiny_model, tiny_csv), "--workspace", str(ws)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert expected in err
    assert snapshot(ws) == before
