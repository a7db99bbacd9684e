"""What users bring: messy CSVs, TSV, JSON lines, Parquet, other encodings, odd label columns. Each
prepares without loss, its split reloads to exactly the rows written, and bad data gets one clear line."""
from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from compression import api
from compression import baseline as baselines
from compression.cli import main
from compression.config import UserError
from compression.training import CancelToken
from conftest import FILLER, NEG, POS


def sentences(n: int, classes: list[str], seed: int = 0, marker: str = "") -> list[tuple[str, str]]:
    """(text, label) rows; every text distinct, each class's words its own (so a tiny model could learn)."""
    rng = random.Random(seed)
    words = {c: (POS, NEG)[i % 2] for i, c in enumerate(classes)}
    return [(" ".join(rng.choice(FILLER) for _ in range(rng.randint(3, 8))) + f" {rng.choice(words[c])} "
             f"{marker}{i}", c) for i, c in ((i, classes[i % len(classes)]) for i in range(n))]


def prepare(model_dir, ws, dataset, text_col="text", label_col="label", **kw):
    """Register and prepare a baseline here (no worker, no measurement): (store, fingerprint, Prepared)."""
    paths, store = api.open_workspace(str(ws))
    fp = api.add_baseline(store, api.baseline_request(str(model_dir), str(dataset), text_col, label_col,
                                                      train_steps=0, **kw))
    baselines.prepare(store, paths, fp, lambda f, m: None, CancelToken())
    return store, fp, baselines.load_prepared(paths.baselines / fp[:16])


def split_rows_as_written(p) -> set[tuple[str, str]]:
    names = p.info["label_names"]
    return {(t, names[y]) for df in (p.train, p.val, p.test) for t, y in zip(df["text"], df["label"])}


MESSY = [("a \r carriage return inside", "1"), ("a new\nline inside", "0"), ('"quoted", with a comma', "1"),
         ("windows\r\nline end inside", "0"), ("  padded with spaces  ", "1")]


def test_messy_csv_prepares_without_loss_and_reports_what_was_dropped(tiny_model, tmp_path, capsys):
    rows = sentences(60, ["0", "1"]) + MESSY
    body = "".join(f'"{t.replace(chr(34), chr(34) * 2)}",{y}\r\n' for t, y in rows)
    extra = '"",1\r\n"   ",0\r\n"no label here",\r\n' + f'"{rows[0][0]}",{rows[0][1]}\r\n'  # blank x2, missing, dup
    f = tmp_path / "messy.csv"
    f.write_bytes(b"\xef\xbb\xbf" + ("text,label\r\n" + body + extra).encode())
    ws = tmp_path / "ws"
    rc = main(["prepare", "--model", str(tiny_model), "--dataset", str(f), "--train-steps", "0",
               "--workspace", str(ws)])
    out = capsys.readouterr().out
    assert rc == 0
    paths, store = api.open_workspace(str(ws))
    b = store.baselines()[0]
    p = baselines.load_prepared(paths.baselines / b["fingerprint"][:16])
    assert p.info["label_names"] == ["0", "1"]
    assert split_rows_as_written(p) == {(t.strip(), y) for t, y in rows}
    c = p.info["cleaning"]
    assert (c["blank_texts"], c["missing_labels"], c["duplicates"], c["rows_kept"]) == (2, 1, 1, len(rows))
    assert "2 blank texts, 1 missing labels, 1 duplicate texts" in out
    # the baseline's own measurement ran at the baseline's sequence length, chosen from the data
    assert p.seq_len == p.info["seq_len"] < 64
    assert set(api.results_frame(store, baseline=b["fingerprint"])["seq_len"]) == {p.seq_len}


@pytest.mark.parametrize("kind", ["tsv", "jsonl", "parquet"])
def test_tsv_json_lines_and_parquet_reload_exactly(kind, tiny_model, tmp_path):
    rows = sentences(40, ["neg", "pos"]) + [(t, ["neg", "pos"][int(y)]) for t, y in MESSY]
    df = pd.DataFrame(rows, columns=["body", "y"])
    f = tmp_path / f"d.{kind}"
    if kind == "tsv":
        df.to_csv(f, sep="\t", index=False)
    elif kind == "jsonl":
        f.write_text("".join(json.dumps({"body": t, "y": y}) + "\n" for t, y in rows))
    else:
        df.to_parquet(f)
    _, _, p = prepare(tiny_model, tmp_path / "ws", f, "body", "y")
    assert split_rows_as_written(p) == {(t.strip(), y) for t, y in rows}


def test_numeric_labels_stay_a_label_set_and_many_classes_prepare(tiny_model, tmp_path):
    rows = sentences(1200, [str(i) for i in range(120)])
    f = tmp_path / "many.jsonl"
    f.write_text("".join(json.dumps({"text": t, "label": int(y)}) + "\n" for t, y in rows))
    _, _, p = prepare(tiny_model, tmp_path / "ws", f)
    assert p.info["label_names"] == [str(i) for i in range(120)]  # strings, in numeric order
    assert split_rows_as_written(p) == set(rows)


def test_declared_encoding_reads_and_undeclared_is_one_clear_error(tiny_model, tmp_path, capsys):
    rows = sentences(30, ["neg", "pos"], marker="café ")
    f = tmp_path / "latin.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(f, index=False, encoding="latin-1")
    args = ["prepare", "--model", str(tiny_model), "--dataset", str(f), "--workspace", str(tmp_path / "ws")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not valid utf-8: byte 0xe9 at offset" in err and "(line 2)" in err
    _, _, p = prepare(tiny_model, tmp_path / "ws2", f, encoding="latin-1")
    assert split_rows_as_written(p) == set(rows)


@pytest.mark.parametrize("case, expected", [
    ("one class left", "every row has the label 'pos' after dropping 1 classes with fewer than 10 rows"),
    ("an id column as labels", "1,000 distinct values in 1,000 rows; it looks like a text or id column"),
])
def test_bad_label_columns_are_one_clear_error(case, expected, tiny_model, tmp_path, capsys):
    if case == "one class left":
        rows = sentences(40, ["pos"]) + sentences(4, ["neg"], seed=1, marker="n")
    else:
        rows = [(t, f"id{i}") for i, (t, _) in enumerate(sentences(1000, ["x"]))]
    f = tmp_path / "d.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(f, index=False)
    rc = main(["prepare", "--model", str(tiny_model), "--dataset", str(f), "--workspace", str(tmp_path / "ws")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and expected in err


def test_rare_class_is_dropped_and_counted(tiny_model, tmp_path):
    rows = sentences(60, ["neg", "pos"]) + sentences(3, ["meh"], seed=2, marker="m")
    f = tmp_path / "d.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(f, index=False)
    store, fp, p = prepare(tiny_model, tmp_path / "ws", f)
    assert p.info["label_names"] == ["neg", "pos"]
    assert p.info["cleaning"]["rare_classes"] == {"meh": 3}
    assert "3 rows of 1 classes with fewer than 10 rows ('meh': 3)" in api.data_summary(store, fp)


def test_seq_len_is_a_setting_in_the_fingerprint_and_long_texts_are_counted(tiny_model, tmp_path):
    rows = sentences(40, ["neg", "pos"]) + [("good " * 40 + "long", "pos")]
    f = tmp_path / "d.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(f, index=False)
    store, fp, p = prepare(tiny_model, tmp_path / "ws", f, seq_len=12)
    assert p.seq_len == 12 and p.info["cleaning"]["truncated"] >= 1
    _, fp2, p2 = prepare(tiny_model, tmp_path / "ws", f)
    assert fp2 != fp and p2.seq_len > 12
    with pytest.raises(UserError, match="longer than tiny-bert takes \\(128 tokens\\)"):
        prepare(tiny_model, tmp_path / "ws", f, seq_len=4096)


def test_tampered_split_is_refused_and_an_old_csv_baseline_still_loads(tiny_model, tmp_path):
    rows = sentences(40, ["neg", "pos"])
    f = tmp_path / "d.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(f, index=False)
    store, fp, p = prepare(tiny_model, tmp_path / "ws", f)
    data = p.path / "data"
    test = pd.read_parquet(data / "test.parquet")
    test.loc[0, "label"] = 1 - test.loc[0, "label"]
    test.to_parquet(data / "test.parquet", index=False)
    for load in (lambda: baselines.load_prepared(p.path), lambda: api.saved_test_split(store, fp)):
        with pytest.raises(UserError, match="test split .* is not what was prepared: its content hash differs"):
            load()
    # a baseline prepared before the manifest: CSV splits, read as they always were
    for name in ("train", "val", "test"):
        getattr(p, name).to_csv(data / f"{name}.csv", index=False)
        (data / f"{name}.parquet").unlink()
    (data / "splits.json").unlink()
    old = baselines.load_prepared(p.path)
    assert old.test.equals(p.test) and old.train.equals(p.train)
