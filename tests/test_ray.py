"""A real two-node Ray cluster on loopback, inside a private network namespace (`unshare -n`, only `lo`
exists there), runs tiny-model sweeps; one worker node is killed mid-sweep."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, require


def listeners() -> set[str]:
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
    return {line.split()[3] for line in out.splitlines() if line.strip()}


def off_loopback(addrs: set[str]) -> set[str]:
    return {a for a in addrs if not a.rpartition(":")[0].strip("[]").startswith(("127.", "::1"))}


def test_two_node_cluster_runs_sweep_survives_node_death_and_stays_on_loopback(prepared):
    require("ray", lambda: __import__("ray"))
    require("unshare", lambda: shutil.which("unshare") or (_ for _ in ()).throw(ImportError("unshare")))
    ws, _ = prepared
    before = listeners()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen(["unshare", "-n", sys.executable, str(ROOT / "tests" / "ray_cluster_run.py"), str(ws)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = set()
    try:
        while proc.poll() is None:
            seen |= listeners()
            try:
                proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
        out = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    new_off_loopback = off_loopback(seen - before)
    assert not new_off_loopback, f"something listened off loopback: {new_off_loopback}"
    line = [l for l in out.splitlines() if l.startswith("REPORT ")]
    assert line, out[-3000:]
    r = json.loads(line[-1][7:])
    assert r["first_states"] == ["done"] * 4 and len(r["nodes_first"]) == 2  # jobs ran on both nodes
    assert r["killed"], "the worker node was never killed"
    assert r["second_states"] == ["done"] * 8  # the sweep completed after the node died
    assert r["results_per_job"] == [1] * 12  # no duplicate and no missing row
    inside = r["listen_addrs"]
    assert all(a.startswith(("127.", "[::1]", "0.0.0.0", "[::]", "*", "[::ffff:127.")) for a in inside), inside


def test_ray_executor_refuses_to_start_without_an_explicit_auth_mode(prepared, monkeypatch, capsys):
    from compression.cli import main

    require("ray", lambda: __import__("ray"))
    ws, args = prepared
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    rc = main(["sweep", "--method", "quant", "--bits", "8", "--executor", "ray", "--address", "127.0.0.1:1", *args])
    assert rc == 2 and "RAY_AUTH_MODE" in capsys.readouterr().err
