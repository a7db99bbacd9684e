"""Throughput of 40 post-training settings on the embedded default, three ways:
a local process; a local Ray cluster of 2 worker nodes (SQLite store); the same cluster with PostgreSQL.

    RAY_AUTH_MODE=disabled unshare -n python benchmarks/scale_out.py     # loopback only, private namespace

Reports settings/hour, per-task overhead (task wall minus in-task compute) and the speedup, plus a
projection on paper of settings/hour against node count from those per-task figures. On 2 cores two
workers cannot beat one; the measured speedup says so.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
from _common import default_baseline, load_note, parser, write

from compression import config
from compression.executors import LocalExecutor
from compression.recipes import Recipe
from compression.store import Store

SETTINGS = ([f"prune(sparsity={s / 100:.2f})" for s in range(20, 92, 4)]
            + [f"quant(bits={b},kernel=rtn,group_size={g})" for b in (2, 3, 4, 8) for g in (32, 64, 128)]
            + [f"lowrank(rank_fraction={f / 100:.2f})" for f in (10, 15, 20, 30, 40, 60)]
            + ["cast(dtype=bf16)", "cast(dtype=fp16)", "quant(bits=8,kernel=torch)", "quant(bits=8,kernel=ort)"])[:40]


def _postgres() -> tuple[str, callable]:
    bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    shutil.chown(root, "postgres")
    run = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run, str(bindir / "initdb"), "-D", str(root / "d"), "--auth=trust", "-U", "postgres"],
                   check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*run, str(bindir / "pg_ctl"), "-D", str(root / "d"), "-l", str(root / "log"), "-w", "start", "-o",
                    f"-c listen_addresses=127.0.0.1 -p {port} -k {root}"], check=True, capture_output=True)

    def stop():
        subprocess.run([*run, str(bindir / "pg_ctl"), "-D", str(root / "d"), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", stop


def _copy_baseline(src: Store, dst: Store, fp: str) -> None:
    b = src.baseline(fp)
    dst.add_baseline(fp, b["name"], b["model_source"], b["dataset_source"], b["settings"])
    dst.mark_prepared(fp, b["path"], b["info"])


def _run(label, paths, store, fp, executor) -> dict:
    ids = store.enqueue(fp, [Recipe.parse(s).key for s in SETTINGS], config.hardware_id())
    t = time.perf_counter()
    executor.run(paths, store, ids)
    wall = time.perf_counter() - t
    jobs = store.jobs(ids=ids)
    data = {r["job_id"]: r["data"] for r in store.results(baseline=fp) if r["job_id"] in ids}
    inside = [data[j["id"]]["seconds"]["total_with_b32"] for j in jobs if j["id"] in data]
    task = [j["finished_at"] - j["started_at"] for j in jobs if j["state"] == "done"]
    overhead = [max(0.0, a - b) for a, b in zip(task, inside)]
    return {"setup": label, "done": sum(j["state"] == "done" for j in jobs), "wall_s": wall,
            "settings_per_hour": 3600 * len(ids) / wall, "median_compute_s": float(pd.Series(inside).median()),
            "median_task_overhead_s": float(pd.Series(overhead).median()),
            "nodes": sorted({j["node"] for j in jobs if j["node"]})}


def _landed(rows: list[dict]) -> None:
    """Print and save each setup's row as it finishes, so a stopped run keeps what it measured."""
    r = rows[-1]
    print(f"{r['setup']}: {r['done']} done in {r['wall_s']:.0f} s = {r['settings_per_hour']:.1f} settings/hour, "
          f"median compute {r['median_compute_s']:.1f} s, median task overhead {r['median_task_overhead_s']:.2f} s, "
          f"nodes {r['nodes']}", flush=True)
    write("scale_out_partial", pd.DataFrame(rows), {"rows": rows, "load": load_note()})


def main() -> None:
    ap = parser(__doc__)
    args = ap.parse_args()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=False)
    paths, store, fp = default_baseline(args)
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    # each setup gets its own fresh store, so all 40 settings really run every time
    local = Store(f"sqlite:///{tmp / 'local.sqlite'}")
    _copy_baseline(store, local, fp)
    lp = config.Paths(tmp / "ws-local", local.url)
    rows.append(_run("local process", lp, local, fp, LocalExecutor()))
    _landed(rows)

    import ray
    from ray.cluster_utils import Cluster

    from compression.executors.ray import RayExecutor

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": 400 * 2**20,
                                                            "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1, object_store_memory=400 * 2**20)
    cluster.wait_for_nodes()
    try:
        rs = Store(f"sqlite:///{tmp / 'ray.sqlite'}")
        _copy_baseline(store, rs, fp)
        rows.append(_run("ray, 2 workers, SQLite", config.Paths(tmp / "ws-ray", rs.url), rs, fp,
                         RayExecutor(cluster.address)))
        _landed(rows)
        url, stop = _postgres()
        try:
            pg = Store(url)
            _copy_baseline(store, pg, fp)
            rows.append(_run("ray, 2 workers, PostgreSQL", config.Paths(tmp / "ws-pg", url), pg, fp,
                             RayExecutor(cluster.address)))
            _landed(rows)
        finally:
            stop()
    finally:
        ray.shutdown()
        cluster.shutdown()
    df = pd.DataFrame(rows)
    df["speedup"] = df["settings_per_hour"] / df["settings_per_hour"].iloc[0]
    print(df.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    # projection on paper: each node runs one task at a time (all its CPUs); the driver adds overhead per task
    c, o = df["median_compute_s"].iloc[0], df["median_task_overhead_s"].iloc[-1]
    proj = {n: round(float(3600 * n / (c + o)), 1) for n in (1, 2, 4, 8, 16, 32)}
    print(f"\nprojection (settings/hour vs nodes, from {c:.1f} s compute + {o:.2f} s overhead per task, "
          f"assuming nodes like this one and a driver that keeps up): {proj}")
    print(load_note())
    write("scale_out", df, {"rows": rows, "projection": proj, "load": load_note()})
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
