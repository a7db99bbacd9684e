"""Everything a method may need, so that methods never load data themselves."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .training import CancelToken, Progress


def _quiet(fraction: float, message: str) -> None:
    pass


@dataclass
class Workload:
    tokenizer: object
    train: pd.DataFrame  # columns: text, label (class id)
    val: pd.DataFrame
    label_names: list[str]
    seq_len: int = 64  # the baseline's (Prepared.seq_len); 64 is the embedded default's
    seed: int = 0
    progress: Progress = _quiet
    cancel: CancelToken = field(default_factory=CancelToken)
    teacher: object = None  # the prepared baseline module, for distillation
    scratch: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="compress-")))
    onnx_cache: Path | None = None  # the baseline's fp32 ONNX, when the step's input is the untouched baseline

    def encode(self, texts, pad_to_max: bool = False):
        return dict(self.tokenizer(list(texts), padding="max_length" if pad_to_max else True, truncation=True,
                                   max_length=self.seq_len, return_tensors="pt"))
