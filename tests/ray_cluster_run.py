"""Run inside a private network namespace (unshare -n): a real two-node Ray cluster on loopback runs
tiny-model sweeps against a workspace; one worker node is killed mid-sweep. Prints a JSON report.

Usage: python tests/ray_cluster_run.py WORKSPACE
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(ws: str) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=False)
    from ray.cluster_utils import Cluster

    from compression import Recipe, hardware_id, resolve
    from compression.executors.ray import RayExecutor
    from compression.specs import QuantSpec
    from compression.store import Store

    args = {"num_cpus": 1, "object_store_memory": 80 * 2**20, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=args)
    worker = cluster.add_node(**args)
    cluster.wait_for_nodes()
    paths = resolve(ws)
    store = Store(paths.store_url)
    fp = store.baselines()[0]["fingerprint"]
    ex = RayExecutor(cluster.address)

    def keys(groups, bits=8):
        return [Recipe((QuantSpec(bits=bits, kernel="rtn", group_size=g),)).key for g in groups]

    first = store.enqueue(fp, keys((2, 4, 8, 16)), hardware_id())
    ex.run(paths, store, first)
    nodes_first = sorted({j["node"] for j in store.jobs(ids=first)})

    second = store.enqueue(fp, keys((2, 4, 8, 16, 32), bits=4) + keys((2, 4, 8), bits=3), hardware_id())
    killed = {}

    def kill_when_started():
        while not any(j["state"] == "done" for j in store.jobs(ids=second)):
            time.sleep(0.05)
        running = [j for j in store.jobs(ids=second) if j["state"] == "running"]
        cluster.remove_node(worker)
        killed["at"] = time.time()
        killed["running_then"] = len(running)

    t = threading.Thread(target=kill_when_started, daemon=True)
    t.start()
    ex.run(paths, store, second)
    t.join(timeout=30)
    listen = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout.split("\n")
    report = {
        "first_states": [j["state"] for j in store.jobs(ids=first)], "nodes_first": nodes_first,
        "second_states": [j["state"] for j in store.jobs(ids=second)],
        "results_per_job": [store.result_count(j) for j in first + second], "killed": killed,
        "listen_addrs": sorted({line.split()[3].rpartition(":")[0] for line in listen if line.strip()}),
    }
    import ray

    ray.shutdown()
    cluster.shutdown()
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
