"""Dashboard speed in a real browser (Debian's Chromium + playwright). Not a timed test.

1. Time to the first chart with 500 stored results: a synthetic-but-stored workspace (a baseline row,
   a saved test split, 500 result rows with predictions) is served as `make run` serves it
   (`python -m ui.serve`); the clock starts once the server answers its health check (goal: 2 s).
   Cold = the server's first session and the browser's first visit, warm = a second page load, server
   restarted = a new server's first session for a browser that has visited before.
2. Slider to highlight: from releasing the max-size constraint slider (a key press) to the updated
   "Best feasible" line (goal: 300 ms); median over several moves.
3. Live knob on the default baseline, when it is prepared in the workspace (--live-workspace, else
   $COMPRESSION_WORKSPACE, else the user cache): turning the knob on warms the worker (timed); then from
   pressing "measure this setting" for int8, and for 50% pruning as soon as int8's point lands, to each
   job's point landing (goal: 5 s). A setting already stored is reused unless --remeasure, and the
   output says so; --fresh uses a scratch store holding only the baseline, so each point is new on screen.

    python benchmarks/dashboard.py                 # writes benchmarks/out/dashboard.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "out"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

from sqlalchemy import select as sa_select  # noqa: E402

from compression import api  # noqa: E402
from compression.measurement import Labels, Measurement, Seconds, Timing  # noqa: E402
from compression.recipes import Recipe, spec_type  # noqa: E402


def synthetic_workspace(ws: Path, n: int = 500, test_rows: int = 1280, seed: int = 0) -> str:
    """A store holding one prepared baseline and ``n`` results shaped like real ones (not measured)."""
    import pandas as pd

    rng = random.Random(seed)
    paths, store = api.open_workspace(str(ws))
    fp = "f" * 64
    base_dir = paths.baselines / "synthetic"
    (base_dir / "data").mkdir(parents=True, exist_ok=True)
    y = [rng.randint(0, 1) for _ in range(test_rows)]
    pd.DataFrame({"text": [f"sentence {i}" for i in range(test_rows)], "label": y}).to_csv(
        base_dir / "data" / "test.csv", index=False)
    store.add_baseline(fp, "synthetic (500 stored results)", {"kind": "synthetic"}, {"kind": "synthetic"}, {})
    store.mark_prepared(fp, str(base_dir), {"label_names": ["rotten", "fresh"], "majority_accuracy": 0.58,
                                            "tfidf_accuracy": 0.79, "val_accuracy": 0.82, "rows": {"test": test_rows}})
    recipes = [Recipe(())]
    for m in api.methods():
        k = next((k for k in api.knobs(m.method) if k.get("sweep")), None)
        if k is None or k.get("choices"):
            continue
        lo, hi, step = k["lo"] or 0, k["hi"], k.get("step") or 1
        vals = sorted({round(lo + step * i, 6) for i in range(int((hi - lo) / step) + 1)})
        for v in vals:
            try:
                recipes.append(Recipe((spec_type(m.method)(**{k["name"]: k["type"](v)}),)))
            except api.SpecError:
                pass
    singles = [r for r in recipes if r.steps and r.method in ("prune", "lowrank", "quant")]
    for a in singles:  # past the single-step grid: two-step chains, as a long search would store
        if len(recipes) > n:
            break
        recipes += [api.Recipe(a.steps + b.steps) for b in singles if b.method != a.method][: n + 1 - len(recipes)]
    recipes = recipes[: n + 1]
    if n > 2000:
        return _bulk(store, fp, recipes, y, rng)
    ids = store.enqueue(fp, [r.key for r in recipes], api.hardware_id())
    for jid, r in zip(ids, recipes):
        acc = 0.82 - (0 if not r.steps else rng.random() * 0.2)
        size = 86.7 * (1 if not r.steps else rng.uniform(0.1, 1.0))
        lat = 13.0 * (1 if not r.steps else rng.uniform(0.3, 1.4))
        pred = [t if rng.random() < acc else 1 - t for t in y]
        lab = rng.choice(["measured", "measured", "simulated", "contended"])
        store.finish(jid, {
            "accuracy": acc, "accuracy_lo": acc - 0.02, "accuracy_hi": acc + 0.02, "macro_f1": acc,
            "agreement": 0.95, "accuracy_delta": acc - 0.82, "delta_lo": acc - 0.84, "delta_hi": acc - 0.80,
            "test_rows": test_rows, "size_mib": size, "size_bytes": int(size * 2**20), "params": 22_700_000,
            "nonzero_params": 22_700_000, "bits_per_weight": 32 * size / 86.7, "lat_b1_p50_ms": lat,
            "lat_b1_p90_ms": lat * 1.1, "lat_b32_p50_ms": lat * 15, "lat_b32_p90_ms": lat * 16,
            "base_lat_b1_p50_ms": 13.0, "base_lat_b32_p50_ms": 195.0, "speedup_b1": 13.0 / lat,
            "speedup_b32": 13.0 / lat, "speedup_b1_note": f"{13.0 / lat:.2f}x", "speedup_b32_note": "",
            "other_cores_during_timing": 0.0, "labels": {"accuracy": "measured", "size": "measured", "latency": lab},
            "runtime": "torch", "kernel": "synthetic", "notes": [], "predictions": pred, "context": {},
            "recipe_name": r.name, "method": r.method, "description": r.describe(), "artifact": "",
            "seconds": {"total": 3.0}})
    return fp


def _bulk(store, fp: str, recipes: list, y: list[int], rng) -> str:
    """The same rows written in a few transactions (10,000s of results in seconds, not minutes)."""
    from compression.schema import jobs, results

    hw, t = api.hardware_id(), time.time()
    with store.engine.begin() as c:
        c.execute(jobs.insert(), [dict(baseline=fp, recipe=r.key, hardware=hw, state="done", priority=1, attempts=1,
                                       created_at=t, finished_at=t, progress=1.0, cancel_requested=False,
                                       remeasure=False) for r in recipes])
        ids = dict(c.execute(sa_select(jobs.c.recipe, jobs.c.id).where(jobs.c.baseline == fp)).all())
        rows = []
        for r in recipes:
            acc = 0.82 - (0 if not r.steps else rng.random() * 0.2)
            size = 86.7 * (1 if not r.steps else rng.uniform(0.1, 1.0))
            lat = 13.0 * (1 if not r.steps else rng.uniform(0.3, 1.4))
            m = Measurement(recipe_name=r.name, method=r.method, description=r.describe(), runtime="torch",
                            kernel="synthetic", accuracy=acc, accuracy_lo=acc - 0.02, accuracy_hi=acc + 0.02,
                            macro_f1=acc, agreement=0.95, accuracy_delta=acc - 0.82, delta_lo=acc - 0.84,
                            delta_hi=acc - 0.80, test_rows=len(y), size_mib=size, size_bytes=int(size * 2**20),
                            params=22_700_000, nonzero_params=22_700_000, bits_per_weight=32 * size / 86.7,
                            labels=Labels(latency=rng.choice(["measured", "measured", "simulated", "contended"])),
                            timings=(Timing("cpu", 1, lat, lat * 1.1, 13.0, speedup=13.0 / lat, note=""),
                                     Timing("cpu", 32, lat * 15, lat * 16, 195.0, speedup=13.0 / lat, note="")),
                            seconds=Seconds(total=3.0))
            pred = [v if rng.random() < acc else 1 - v for v in y]
            rows.append(dict(job_id=ids[r.key], created_at=t, data=m.to_row(), predictions=pred))
        c.execute(results.insert(), rows)
    return fp


def start_server(ws: Path, port: int, log: Path, autostart: bool = False) -> subprocess.Popen:
    """``python -m ui.serve`` on ``ws``; with ``autostart`` the first visit registers and prepares the default
    as a new user's does (benchmarks/first_visit.py)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COMPRESSION_STORE_URL", "COMPRESSION_NO_WORKER_SPAWN",
                                                            "COMPRESSION_NO_AUTOSTART")}
    env.update(COMPRESSION_WORKSPACE=str(ws), HF_HUB_OFFLINE="1")
    if not autostart:
        env["COMPRESSION_NO_AUTOSTART"] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "ui.serve", "--server.headless", "true",
                             "--server.address", "127.0.0.1", "--server.port", str(port),
                             "--server.fileWatcherType", "none"], cwd=ROOT, env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    while True:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                return proc
        except OSError:
            time.sleep(0.05)
        if proc.poll() is not None:
            raise SystemExit(f"streamlit did not start; see {log}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_chart(page, url: str) -> float:
    t = time.perf_counter()
    page.goto(url)
    page.locator(".js-plotly-plot .scatterlayer .point").first.wait_for(timeout=120_000)
    return time.perf_counter() - t


def best_text(page) -> str:
    """The whole "Best feasible: ... wins: of the settings meeting <constraints> ..." line."""
    return page.locator("p", has=page.locator("strong", has_text="Best feasible:")).first.inner_text()


def slider_moves(page, n: int = 8) -> list[float]:
    """Release the max-size slider one page down at a time; time until the best line shows the new constraint."""
    thumb = page.get_by_role("slider", name="max size (MiB)")
    out = []
    for _ in range(n):
        before = best_text(page)
        thumb.focus()
        t = time.perf_counter()
        thumb.press("PageDown")
        try:
            page.wait_for_function("b => { const e = [...document.querySelectorAll('strong')].find("
                                   "x => x.innerText.startsWith('Best feasible:')); return e && e.parentElement.innerText !== b; }",
                                   arg=before, timeout=10_000, polling="raf")
            out.append(time.perf_counter() - t)
        except Exception:
            pass  # the page did not update within 10 s: not a sample
    return out


LIVE_POINTS = """n => { const gd = document.querySelector('.js-plotly-plot');
    const ti = gd && gd.data ? gd.data.findIndex(t => t.name === 'live knob') : -1;
    const tr = ti < 0 ? null : gd.querySelectorAll('.scatterlayer .trace')[ti];
    return tr && tr.querySelectorAll('.point').length >= n; }"""


def live_knob(page, url: str, store, fp: str, remeasure: bool = False) -> dict:
    """Turn the live knob on and wait for the worker to say it is ready (the baseline loaded once, while the
    user reads the page); then press "measure this setting" for int8 and, as soon as its point lands, for
    50% pruning. Times each release to its point (to its new result row with --remeasure) and to "done"."""
    page.goto(f"{url}/?baseline={fp[:12]}")
    t = time.perf_counter()
    page.get_by_text("Live knob: measure one setting on release").click()
    page.get_by_role("button", name="measure this setting").first.wait_for()
    page.get_by_text("Worker ready").first.wait_for(timeout=300_000)
    res: dict = {"toggle_to_worker_ready_s": round(time.perf_counter() - t, 2)}
    live = [t.method for t in api.methods() if api.live_knob(t.method)]
    started = []
    for n, (method, label, knob) in enumerate((("quant", "int8", {"bits": 8}), ("prune", "prune 50%", {"sparsity": 0.5}))):
        if method not in live:
            continue
        key = api.recipe_for(method, knob).key
        done = [j["id"] for j in store.jobs(baseline=fp) if j["recipe"] == key and j["state"] == "done"]
        if remeasure and done:  # the old point stays on the chart; time the new result row instead
            store.requeue(done, states=("done",), remeasure=True)
        before = {j: store.result_count(j) for j in done}
        t = time.perf_counter()
        page.get_by_role("button", name="measure this setting").nth(live.index(method)).click()
        page.wait_for_function(LIVE_POINTS, arg=n + 1, timeout=300_000, polling=100)
        point = time.perf_counter() - t
        while remeasure and done and all(store.result_count(j) <= c for j, c in before.items()):
            time.sleep(0.05)  # a partial row (accuracy and batch-1 latency) counts: the point has landed
        res[label] = {"to_point_s": round(point, 2), "to_new_result_s": round(time.perf_counter() - t, 2),
                      "reused_stored_result": bool(done) and not remeasure, "remeasured": bool(done) and remeasure,
                      "worker_warm_at_release": True, "released_before_previous_batch32_done": n > 0}
        started.append((method, label, t))
    for method, label, t in started:
        page.get_by_text(re.compile(rf"{method}: job \d+ done")).first.wait_for(timeout=300_000)
        res[label]["to_done_s"] = round(time.perf_counter() - t, 2)
    return res


def _stage(store, jid: int, before: dict | None) -> str | None:
    """'preview' or 'full' for the job's newest stored record once it differs from ``before``, else None."""
    r = store.latest_result(jid)
    if r is None or r == before:
        return None
    return "preview" if Measurement.from_row(r).preview else "full"


def live_repeats(page, store, fp: str, n: int = 5) -> dict:
    """Median of ``n`` releases per setting on the warm worker, after live_knob(): the first releases were new
    values; each further release measures the same setting again from scratch (the store's remeasure), which
    is the same work as a new value: compress, then the preview, then the full pass. Times release -> preview
    row, release -> full row (accuracy on the whole test split and batch-1 latency) and release -> done.
    Then one release on a value the worker prefetched while idle (a stored neighbour) -> its point on screen."""
    live = [t.method for t in api.methods() if api.live_knob(t.method)]
    out: dict = {}
    for method, label, knob in (("quant", "int8", {"bits": 8}), ("prune", "prune 50%", {"sparsity": 0.5})):
        if method not in live:
            continue
        key = api.recipe_for(method, knob).key
        (jid,) = [j["id"] for j in store.jobs(baseline=fp) if j["recipe"] == key]
        runs = []
        for _ in range(n - 1):
            while store.jobs(ids=[jid])[0]["state"] != "done":
                time.sleep(0.1)  # the previous release done; a prefetch the worker runs meanwhile yields to it
            before = store.latest_result(jid)
            store.requeue([jid], states=("done",), remeasure=True)
            t0 = time.perf_counter()
            page.get_by_role("button", name="measure this setting").nth(live.index(method)).click()
            got: dict = {}
            while "done" not in got:
                st = _stage(store, jid, before)
                if st and st not in got:
                    got[st] = round(time.perf_counter() - t0, 2)
                if st == "full" and store.jobs(ids=[jid])[0]["state"] == "done":
                    got["done"] = round(time.perf_counter() - t0, 2)
                time.sleep(0.02)
            runs.append(got)
        med = {k: round(statistics.median([r[k] for r in runs if k in r]), 2)
               for k in ("preview", "full", "done") if any(k in r for r in runs)}
        out[label] = {"remeasured_releases": runs, "median": med}
    if "prune" in live:  # release on a neighbour the worker prefetched while idle
        grid = [0.49, 0.51]  # the slider's neighbours (its step is 0.01)
        t_end = time.perf_counter() + 180
        stored = []
        while not stored and time.perf_counter() < t_end:
            states = api.job_states(store, fp)
            stored = [v for v in grid if states.get(api.recipe_for("prune", {"sparsity": v}).key) == "done"]
            time.sleep(0.5)
        if not stored:
            out["prefetched_release"] = "skipped: no neighbour of 50% pruning was prefetched within 180 s"
        else:
            v = stored[0]
            slider = page.locator('[data-testid="stSlider"]').filter(has_text="prune: sparsity").get_by_role("slider")
            slider.focus()
            t0 = time.perf_counter()
            slider.press("ArrowRight" if v > 0.5 else "ArrowLeft")
            jid = next(j["id"] for j in store.jobs(baseline=fp)
                       if j["recipe"] == api.recipe_for("prune", {"sparsity": v}).key)
            page.get_by_text(re.compile(rf"prune: job {jid} done")).first.wait_for(timeout=60_000)
            out["prefetched_release"] = {"value": v, "to_point_s": round(time.perf_counter() - t0, 2)}
    return out


def fresh_workspace(src_store, fp: str, ws: Path):
    """A scratch workspace whose store holds only the prepared baseline (its files are used in place) and its
    own result row, so the live knob's settings are new there and their points appear on screen fresh.
    The source store is only read."""
    paths, store = api.open_workspace(str(ws))
    b = src_store.baseline(fp)
    store.add_baseline(fp, b["name"], b["model_source"], b["dataset_source"], b["settings"])
    store.mark_prepared(fp, b["path"], b["info"])
    base = next(r for r in src_store.results(baseline=fp) if r["recipe"] == api.BASELINE_RECIPE)
    (jid,) = store.enqueue(fp, [api.BASELINE_RECIPE], base["hardware"])
    store.claim(base["hardware"], "benchmark:0")
    store.finish(jid, base["data"])
    return paths, store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=int, default=500)
    ap.add_argument("--live-workspace", help="workspace holding the prepared default baseline")
    ap.add_argument("--no-live", action="store_true", help="skip the live-knob measurement")
    ap.add_argument("--only-live", action="store_true", help="skip the 500-result measurements")
    ap.add_argument("--remeasure", action="store_true", help="live knob: measure stored settings again")
    ap.add_argument("--fresh", action="store_true",
                    help="live knob on a scratch store holding only the baseline: each point is new on screen")
    ap.add_argument("--repeats", type=int, default=5,
                    help="live knob: releases per setting for the medians (1 skips the repeats)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    out: dict = {"goal_first_chart_s": 2.0, "goal_slider_ms": 300, "goal_live_knob_s": 5.0}
    tmp = Path(tempfile.mkdtemp(prefix="dash-bench-"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1800})
        if not args.only_live:
            t = time.perf_counter()
            synthetic_workspace(tmp / "ws", args.results)
            out["build_synthetic_store_s"] = round(time.perf_counter() - t, 2)
            port = free_port()
            proc = start_server(tmp / "ws", port, tmp / "server.log")
            try:
                url = f"http://127.0.0.1:{port}"
                out["first_chart_cold_s"] = round(first_chart(page, url), 2)
                out["first_chart_warm_s"] = round(first_chart(page, url), 2)
                moves = slider_moves(page)
                out["slider_to_highlight_ms"] = {"median": round(1e3 * statistics.median(moves)) if moves else None,
                                                 "max": round(1e3 * max(moves)) if moves else None,
                                                 "samples": len(moves)}
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
            # a returning visitor: the server restarted (same address), the browser has the page cached
            proc = start_server(tmp / "ws", port, tmp / "server-restarted.log")
            try:
                out["first_chart_server_restarted_s"] = round(first_chart(page, url), 2)
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
        if not args.no_live:
            paths, store = api.open_workspace(args.live_workspace)
            b = api.default_baseline(store)
            if b is None or not b["prepared"]:
                out["live_knob"] = f"skipped: the default baseline is not prepared in {paths.workspace}"
            else:
                if args.fresh:
                    paths, store = fresh_workspace(store, b["fingerprint"], tmp / "ws-live")
                out["live_knob_store"] = "fresh: only the baseline stored" if args.fresh else str(paths.store_url)
                port = free_port()
                proc = start_server(paths.workspace, port, tmp / "server-live.log")
                try:
                    out["live_knob"] = live_knob(page, f"http://127.0.0.1:{port}", store, b["fingerprint"],
                                                args.remeasure)
                    if args.repeats > 1:
                        try:  # a failure here keeps the figures above
                            out["live_knob_repeats"] = live_repeats(page, store, b["fingerprint"], args.repeats)
                        except Exception as e:  # noqa: BLE001 - reported in the output, not raised
                            out["live_knob_repeats"] = f"failed: {type(e).__name__}: {e}"
                finally:
                    os.killpg(proc.pid, signal.SIGTERM)
                    lock = paths.worker_lock  # the worker the app started for the live knob
                    pid = lock.read_text().strip() if lock.exists() else ""
                    if pid.isdigit():
                        try:
                            os.kill(int(pid), signal.SIGTERM)
                        except ProcessLookupError:
                            pass
        browser.close()
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "dashboard.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
