"""Where things live: one resolver for the workspace folder and the store URL.

The CLI, the worker and the app all call :func:`resolve`, so they visibly share one store.

Example::

    >>> resolve(workspace="/tmp/ws").store_url
    'sqlite:////tmp/ws/store.sqlite'
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "compression-explorer"


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


def resolve(workspace: str | os.PathLike | None = None, store: str | None = None) -> Paths:
    """workspace = flag, else $COMPRESSION_WORKSPACE, else the user cache dir; store likewise."""
    ws = workspace or os.environ.get("COMPRESSION_WORKSPACE") or platformdirs.user_cache_dir(APP_NAME)
    ws_path = Path(ws).expanduser().resolve()
    url = store or os.environ.get("COMPRESSION_STORE_URL") or f"sqlite:///{ws_path / 'store.sqlite'}"
    return Paths(ws_path, url)


def threads() -> int:
    """Intra-op threads used for every measurement (the protocol fixes 2)."""
    return int(os.environ.get("COMPRESSION_THREADS", "2"))


def hardware_id() -> str:
    """The target class a job is keyed by, e.g. ``cpu-x86_64-2t``."""
    return f"cpu-{platform.machine()}-{threads()}t"
