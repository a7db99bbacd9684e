"""Fixtures: a tiny random BERT saved as a local Hugging Face folder, a small labelled CSV, and a
workspace prepared from them. No hub, no network, never the user's cache."""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["COMPRESSION_NO_AUTOSTART"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

def require(what: str, check) -> None:
    """Skip when an optional tool is missing, except under CI=true, where missing is a failure."""
    try:
        check()
    except Exception as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} is required under CI=true: {e}")
        pytest.skip(f"{what} not available: {e}")


POS = ["good", "great", "superb", "love", "fine", "moving", "clever", "fun", "warm", "smart"]
NEG = ["bad", "awful", "dull", "hate", "poor", "boring", "weak", "messy", "flat", "cold"]
FILLER = ["the", "film", "movie", "plot", "was", "is", "a", "very", "and", "story", "cast", "it", "of", "this"]


def make_tiny_model(path: Path, layers: int = 2, hidden: int = 32, heads: int = 4, intermediate: int = 64,
                    head: bool = False) -> Path:
    """A randomly initialised BERT (no classifier head unless asked) plus a word-level tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

    torch.manual_seed(0)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(POS + NEG + FILLER))
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=128)
    model = BertForSequenceClassification(cfg) if head else BertModel(cfg)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tok.save_pretrained(path)
    return path


def huge_model(path: Path) -> Path:
    """A model folder whose safetensors header declares 2**38 fp32 weights (1 TiB, a sparse file on disk)."""
    import json
    import shutil
    import struct

    shutil.copytree(make_tiny_model(path.parent / "tiny-for-huge"), path)
    n = 2**38
    header = json.dumps({"bert.embeddings.word_embeddings.weight": {
        "dtype": "F32", "shape": [n // 64, 64], "data_offsets": [0, 4 * n]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + 4 * n)
    return path


def make_csv(path: Path, n: int = 400, seed: int = 0, sep: str = ",") -> Path:
    """Sentences whose label follows from their sentiment words (so a tiny model can learn them)."""
    import pandas as pd

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        pos = rng.random() < 0.55
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 12))]
        for _ in range(rng.randint(1, 2)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(POS if pos else NEG))
        rows.append({"review": " ".join(words) + f" {i % 7}", "sentiment": "positive" if pos else "negative"})
    pd.DataFrame(rows).to_csv(path, index=False, sep=sep)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory) -> Path:
    return make_csv(tmp_path_factory.mktemp("data") / "reviews.csv")


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """A fresh workspace and store for one test; the user's cache is never read."""
    ws = tmp_path / "ws"
    monkeypatch.setenv("COMPRESSION_WORKSPACE", str(ws))
    monkeypatch.delenv("COMPRESSION_STORE_URL", raising=False)
    return ws


def baseline_args(model: Path, csv: Path, steps: int = 60) -> list[str]:
    return ["--model", str(model), "--dataset", str(csv), "--text-col", "review", "--label-col", "sentiment",
            "--train-steps", str(steps), "--lr", "3e-3"]


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, tiny_model, tiny_csv):
    """A workspace where the tiny baseline is prepared and an int8 sweep has run: (workspace, args)."""
    from compression.cli import main

    ws = tmp_path_factory.mktemp("prepared") / "ws"
    args = baseline_args(tiny_model, tiny_csv) + ["--workspace", str(ws)]
    assert main(["prepare", *args]) == 0
    assert main(["sweep", "--method", "quant", "--bits", "8", *args]) == 0
    return ws, args


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """A real PostgreSQL (Debian's package) in a temporary folder, on 127.0.0.1 only, on a free port."""
    import glob
    import shutil
    import subprocess

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    require("PostgreSQL server (apt-get install postgresql)", lambda: bins or (_ for _ in ()).throw(
        FileNotFoundError("no /usr/lib/postgresql/*/bin/initdb")))
    require("psycopg", lambda: __import__("psycopg"))
    bindir = Path(bins[-1]).parent
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="compression-pg-"))  # pytest's tmp folders are closed to other users
    data = root / "data"
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_pg:
        shutil.chown(root, "postgres")
    subprocess.run([*as_pg, str(bindir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres"],
                   check=True, capture_output=True)
    port = _free_port()
    subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "start", "-o",
                    f"-c listen_addresses=127.0.0.1 -p {port} -k {root}"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def tiny_bert_split(d: Path):
    """A 3-layer random BERT with its classifier head, its tokenizer and a 200-row two-class frame (text, label)
    built under ``d``: the small model the calibration tests (SparseGPT, allocation) prune."""
    import pandas as pd
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = make_tiny_model(d / "bert", layers=3, head=True, hidden=64, intermediate=128)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    df = pd.read_csv(make_csv(d / "d.csv", n=200))
    return model, tok, pd.DataFrame({"text": df["review"], "label": (df["sentiment"] == "positive").astype(int)})
