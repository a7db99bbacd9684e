"""The details panel's download: a compressed model's saved files, the baseline's tokenizer and a README.

The saved folder holds only what the size column counts (weights, manifest, config); a zip of it alone
could not be run, since the tokenizer lives with the baseline. The zip adds it and says how to load it.

Example::

    >>> data = build("ws/artifacts/7", "ws/baselines/ab12/model", "quant(bits=8)", "quant", 64, ["neg", "pos"])
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

# files a Hugging Face tokenizer is saved as (sentencepiece models end in .model)
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "chat_template.jinja"}
PLAIN_TENSOR_METHODS = {"baseline", "cast"}  # saved as the original architecture's tensors, nothing packed


def tokenizer_files(tokenizer_dir: str | Path) -> list[Path]:
    """The tokenizer's files in a Hugging Face model folder (no weights)."""
    d = Path(tokenizer_dir)
    if not d.is_dir():
        return []
    return sorted(f for f in d.iterdir() if f.is_file() and (f.name in TOKENIZER_FILES or f.suffix == ".model"))


def readme(folder: str, recipe: str, method: str, kind: str, seq_len: int, labels: list[str]) -> str:
    """How to load the unzipped folder and classify a sentence, with the project's loader (every kind) or
    ``from_pretrained`` (the kinds saved as plain tensors)."""
    names = ", ".join(f"{i} = {n}" for i, n in enumerate(labels)) or "see config.json"
    text = f"""# {recipe}

A model compressed by this dashboard ({kind} form), with the original model's tokenizer.
Inputs were measured at {seq_len} tokens. Label ids: {names}.

## Load it with the project's loader (every kind)

```python
from pathlib import Path
from compression.artifacts import load
from compression.models import load_tokenizer

folder = Path("{folder}")
model, tok = load(folder), load_tokenizer(folder)
batch = dict(tok(["A warm, clever film."], padding=True, truncation=True, max_length={seq_len}, return_tensors="pt"))
print(model.predict(batch).argmax(1))
```
"""
    if kind == "dense" and method in PLAIN_TENSOR_METHODS:
        text += f"""
## Or with transformers alone

```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer

model = AutoModelForSequenceClassification.from_pretrained("{folder}").eval()
tok = AutoTokenizer.from_pretrained("{folder}")
print(model(**tok(["A warm, clever film."], return_tensors="pt")).logits.argmax(-1))
```
"""
    else:
        text += "\nIts weights are stored in this project's own form, so `from_pretrained` cannot read them.\n"
    return text


def build(artifact: str | Path, tokenizer_dir: str | Path, recipe: str, method: str, seq_len: int,
          labels: list[str], folder: str = "model") -> bytes:
    """A zip with one top folder: the saved model, the tokenizer files, a config.json and README.md."""
    art, tokdir = Path(artifact), Path(tokenizer_dir)
    kind = json.loads((art / "manifest.json").read_text()).get("kind", "?") if (art / "manifest.json").exists() else "?"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        own = {f.name for f in art.iterdir() if f.is_file()}
        for f in sorted(art.rglob("*")):
            if f.is_file():
                z.write(f, f"{folder}/{f.relative_to(art)}")
        extra = [f for f in tokenizer_files(tokdir) if f.name not in own]
        if "config.json" not in own and (tokdir / "config.json").exists():  # an ONNX model saves no config
            extra.append(tokdir / "config.json")
        for f in extra:
            z.write(f, f"{folder}/{f.name}")
        z.writestr(f"{folder}/README.md", readme(folder, recipe, method, kind, seq_len, labels))
    return buf.getvalue()
