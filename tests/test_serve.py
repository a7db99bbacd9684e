"""`make run` listens on loopback only; COMPRESSION_LISTEN opts into other interfaces.

Both servers are the real ``python -m ui.serve``, started side by side (each takes a few seconds to
import), and their listening sockets are read from the kernel with psutil.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from conftest import _free_port

ROOT = Path(__file__).resolve().parents[1]


def _start(tmp_path: Path, name: str, port: int, **env) -> subprocess.Popen:
    e = {k: v for k, v in os.environ.items() if k not in ("COMPRESSION_STORE_URL", "COMPRESSION_LISTEN")}
    e.update(COMPRESSION_WORKSPACE=str(tmp_path / name), COMPRESSION_NO_AUTOSTART="1", HF_HUB_OFFLINE="1", **env)
    return subprocess.Popen([sys.executable, "-m", "ui.serve", "--server.port", str(port)], cwd=ROOT, env=e,
                            stdout=open(tmp_path / f"{name}.log", "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _listening(proc: subprocess.Popen, port: int, deadline: float) -> set[str]:
    """The addresses the server listens on at ``port``, once it listens (empty if it never did)."""
    while time.monotonic() < deadline and proc.poll() is None:
        addrs = {c.laddr.ip for c in psutil.Process(proc.pid).net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
        if addrs:
            return addrs
        time.sleep(0.2)
    return set()


def test_loopback_unless_asked(tmp_path):
    ports = _free_port(), _free_port()
    local = _start(tmp_path, "local", ports[0])
    wide = _start(tmp_path, "wide", ports[1], COMPRESSION_LISTEN="0.0.0.0")
    try:
        deadline = time.monotonic() + 60
        got_local, got_wide = _listening(local, ports[0], deadline), _listening(wide, ports[1], deadline)
    finally:
        for p in (local, wide):
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=20)
    assert got_local == {"127.0.0.1"}, (tmp_path / "local.log").read_text()[-2000:]
    assert got_wide == {"0.0.0.0"}, (tmp_path / "wide.log").read_text()[-2000:]
