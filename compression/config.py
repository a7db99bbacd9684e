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

    @property
    def worker_keepalive(self) -> Path:
        """Names the baseline the app wants warm; while it is fresh the worker stays up with it loaded."""
        return self.workspace / "worker.keepalive"

    @property
    def worker_ready(self) -> Path:
        """Written by the worker once the kept-warm baseline is loaded; holds its fingerprint."""
        return self.workspace / "worker.ready"


KEEPALIVE_SECONDS = 60.0  # a keepalive touched this recently keeps the worker up, its baseline loaded


def wanted_warm(paths: Paths, max_age: float = KEEPALIVE_SECONDS) -> str | None:
    """The baseline fingerprint the app asked to keep warm, or None when no fresh keepalive names one."""
    try:
        st = paths.worker_keepalive.stat()
        if time.time() - st.st_mtime > max_age:
            return None
        return paths.worker_keepalive.read_text().strip() or None
    except OSError:
        return None


def keep_warm(paths: Paths, fingerprint: str) -> None:
    """Ask this workspace's worker to stay up with ``fingerprint`` loaded (call again within KEEPALIVE_SECONDS)."""
    paths.workspace.mkdir(parents=True, exist_ok=True)
    tmp = paths.worker_keepalive.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(fingerprint + "\n")
    os.replace(tmp, paths.worker_keepalive)


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
