"""Where things live: one resolver for the workspace folder and the store URL.

The CLI, the worker and the app all call :func:`resolve`, so they visibly share one store.

Example::

    >>> resolve(workspace="/tmp/ws").store_url
    'sqlite:////tmp/ws/store.sqlite'
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "compression-explorer"

# The measured baseline recipe (ARCHITECTURE.md, Fingerprints and splits): TrainSettings' defaults, the CLI's
# flags and the Baseline page's pickers all read these. They live here, not in training.py, because the
# app's pages and the CLI's argument parser must not import torch.
TRAIN_STEPS = 240
TRAIN_LR = 8e-5
TRAIN_SEED = 0


class UserError(Exception):
    """Bad input from a person: shown as one clear line (CLI exit code 2, st.error in the app)."""


@dataclass(frozen=True)
class Paths:
    workspace: Path
    store_url: str

    @property
    def baselines(self) -> Path:
        return self.workspace / "baselines"

    @property
    def artifacts(self) -> Path:
        return self.workspace / "artifacts"

    @property
    def logs(self) -> Path:
        return self.workspace / "logs"

    @property
    def worker_lock(self) -> Path:
        return self.workspace / "worker.lock"

    def keepalive(self, fingerprint: str) -> Path:
        """Touched by the app while the live knob is on for this baseline; while fresh the worker stays up."""
        return self.workspace / "keepalive" / fingerprint

    @property
    def worker_ready(self) -> Path:
        """Written by the worker when a baseline is loaded: "<fingerprint> <pid>" (the pid tells a live note)."""
        return self.workspace / "worker.ready"


KEEPALIVE_SECONDS = 60.0  # a keepalive touched this recently keeps the worker up, its baseline loaded


def wanted_warm(paths: Paths, max_age: float = KEEPALIVE_SECONDS) -> list[str]:
    """The baselines the app (one or more open pages) asks to keep warm, most recently asked first."""
    fresh = []
    try:
        for f in (paths.workspace / "keepalive").iterdir():
            try:
                age = time.time() - f.stat().st_mtime
            except OSError:
                continue
            if age <= max_age:
                fresh.append((age, f.name))
    except OSError:
        return []
    return [fp for _, fp in sorted(fresh)]


def keep_warm(paths: Paths, fingerprint: str) -> None:
    """Ask this workspace's worker to stay up with ``fingerprint`` loaded (call again within KEEPALIVE_SECONDS)."""
    f = paths.keepalive(fingerprint)
    f.parent.mkdir(parents=True, exist_ok=True)
    f.touch()


def resolve(workspace: str | os.PathLike | None = None, store: str | None = None) -> Paths:
    """workspace = flag, else $COMPRESSION_WORKSPACE, else the user cache dir; store likewise."""
    ws = workspace or os.environ.get("COMPRESSION_WORKSPACE") or platformdirs.user_cache_dir(APP_NAME)
    ws_path = Path(ws).expanduser().resolve()
    url = store or os.environ.get("COMPRESSION_STORE_URL") or f"sqlite:///{ws_path / 'store.sqlite'}"
    return Paths(ws_path, url)


def threads() -> int:
    """Intra-op threads used for every measurement (the protocol fixes 2)."""
    return int(os.environ.get("COMPRESSION_THREADS", "2"))


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (recorded with every result)."""
    for line in _cpuinfo().splitlines():
        if line.startswith(("model name", "Model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def isa_class(flags: set[str]) -> str:
    """The instruction-set class that decides which kernels are fast: amx, avx512, avx2, or the
    architecture's baseline. bf16 is several times slower than fp32 without AMX, so a timing of one
    class says nothing about another.

    Example: ``isa_class({"avx2", "fma"})`` -> ``"avx2"``.
    """
    if {"amx_tile", "amx_bf16"} & flags:
        return "amx"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    if "sve" in flags:
        return "sve"
    return "base"


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags() -> set[str]:
    for line in _cpuinfo().splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


VNNI = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def int8_saturates(flags: set[str] | None = None) -> bool:
    """Whether this CPU's uint8 x int8 kernels can overflow: an x86 CPU without VNNI (AVX2 only, or AVX-512
    before Cascade Lake) multiplies with VPMADDUBSW, which adds each pair of products into 16 bits and clamps
    there (255 x 127 x 2 > 32767). ONNX Runtime's and OpenVINO's int8 kernels then need 7-bit weights
    (ONNX Runtime's ``reduce_range``, NNCF's ``overflow_fix``), or a model's answers can change wholesale.

    Example: ``int8_saturates({"sse2", "avx2", "fma"})`` -> True; with ``"avx512_vnni"`` added, False.
    """
    flags = cpu_flags() if flags is None else flags
    return "sse2" in flags and not VNNI & flags


def hardware_id() -> str:
    """The target class a job is keyed by: architecture, ISA class and threads, e.g. ``cpu-x86_64-avx2-2t``.

    An Intel with AMX and an AMD with AVX2 only are different targets: a row of one is never reused,
    prefetched or drawn as the other. The CPU model that ran a job is recorded in its result.
    """
    return f"cpu-{platform.machine()}-{isa_class(cpu_flags())}-{threads()}t"
