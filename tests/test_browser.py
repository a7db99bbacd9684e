"""The real app in a real browser: Debian's Chromium driven by playwright.

It starts the dashboard as ``make run`` does (``python -m ui.serve``: ``streamlit run app.py`` with its
imports done first) on a free port with a fresh workspace, prepares the tiny fixture model through the
Baseline page, runs a small sweep from the Sweep page, waits for the points on the Trade-offs chart,
moves the max-size constraint slider, checks that the highlighted best setting changes to the one the
engine's own guarded rule picks, then turns explain mode on and saves a screenshot of every page:
docs/screenshot.png (Trade-offs, the recommendation in plain words up top) and docs/explain-*.png.

Under CI a missing Chromium fails this test; elsewhere it is skipped.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _need_browser():
    missing = None
    if not os.path.exists(CHROMIUM):
        missing = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "python playwright is not installed"
    if missing:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"browser test cannot run under CI: {missing}")
        pytest.skip(missing)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """A streamlit server on a fresh workspace; yields (url, workspace); stops it and its worker after."""
    _need_browser()
    ws, port = tmp_path / "ws", _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("COMPRESSION_STORE_URL", "COMPRESSION_NO_WORKER_SPAWN")}
    env.update(COMPRESSION_WORKSPACE=str(ws), COMPRESSION_NO_AUTOSTART="1", HF_HUB_OFFLINE="1")
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "ui.serve", "--server.headless", "true",
                             "--server.address", "127.0.0.1", "--server.port", str(port),
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start; its log:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield url, ws
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        lock = ws / "worker.lock"  # the worker the app started for this test
        pid = lock.read_text().strip() if lock.exists() else ""
        if pid.isdigit():
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass
        log.close()


def _enter(page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")


def _nav(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNavLink"]', has_text=title).first.click()


def _slide(thumb, target: float, step: float) -> None:
    """Move a slider to ``target`` with the keyboard, as a person would, and check where it landed.

    A rerun that lands while keys are pressed (the page noticing the sweep's last row, say) can drop a
    press, so read the thumb's value back and finish the move until it sits on the target."""
    for _ in range(6):
        n = round((float(thumb.input_value()) - target) / step)
        if n == 0:
            return
        thumb.focus()
        for _ in range(abs(n) // 20):  # a page key moves a tenth of the 200 steps
            thumb.press("PageDown" if n > 0 else "PageUp")
        for _ in range(abs(n) % 20):
            thumb.press("ArrowLeft" if n > 0 else "ArrowRight")
        time.sleep(1.5)
    raise AssertionError(f"the slider sits at {thumb.input_value()}, not {target}")


def _best(page) -> str:
    return page.locator("strong", has_text="Best feasible:").first.inner_text()


def _target(ws: Path) -> tuple[str, float, float, str, str]:
    """An objective, a max-size slider value (MiB) that changes the best setting under it, the slider's
    step, and the two names, by the engine's own guarded rule (report.recommend). Fastest first; most
    accurate when the fastest is also the smallest (timings of a tiny model are noise, sizes and
    accuracies are not); else a limit under which nothing qualifies ("none")."""
    from compression import api
    from compression.report import recommend
    from ui import charts
    from ui.panels import nice_ceil

    paths, store = api.open_workspace(str(ws))
    fp = store.baselines()[0]["fingerprint"]
    df = charts.prepare(api.results_frame(store, baseline=fp, hardware=api.hardware_id()))
    hi = nice_ceil(df["size_mib"].max())
    step = hi / 200

    def name(**kw) -> str:
        i = recommend(df, **kw).index
        return "none" if i is None else df.loc[i, "recipe"]

    limits = [k * step for k in range(199, 0, -1)
              if not any(abs(k * step - s) < 1.5 * step for s in df["size_mib"])]  # clear of every boundary
    for objective, settle in (("latency", False), ("accuracy", False), ("latency", True)):
        first = name(objective=objective)
        for v in limits:
            then = name(max_size=v, objective=objective)
            if then != first and (settle or then != "none"):
                return objective, v, step, first, then
    raise AssertionError("no size limit changes the recommendation")


def _plain_pick(ws: Path, objective: str) -> str:
    """The plain name of what the page recommends with no limits (or "Keep the original model")."""
    from compression import api
    from compression.plain import plain_name
    from compression.report import recommend
    from ui import charts

    store = api.open_workspace(str(ws))[1]
    df = charts.prepare(api.results_frame(store, baseline=store.baselines()[0]["fingerprint"],
                                          hardware=api.hardware_id()))
    r = df.loc[recommend(df, objective=objective).index]
    return "Keep the original model" if r["method"] == "baseline" else plain_name(r["recipe"])


def test_browser_prepare_sweep_frontier_constraint_screenshot(server, tiny_model, tiny_csv):
    from playwright.sync_api import expect, sync_playwright

    url, ws = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 2300})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)
        try:
            # 1. pick the tiny model and dataset on the Baseline page and prepare them
            page.goto(f"{url}/baseline")
            page.get_by_text("local folder", exact=True).click()
            _enter(page, "model folder", str(tiny_model))
            page.get_by_text("CSV path", exact=True).click()
            _enter(page, "CSV or TSV path", str(tiny_csv))
            expect(page.get_by_text("label column")).to_be_visible()
            page.get_by_text("training settings").click()
            _enter(page, "fine-tuning steps", "60")
            _enter(page, "learning rate", "0.003")
            page.get_by_role("button", name="Prepare this baseline").click()
            expect(page.get_by_role("heading", name=re.compile(r"tiny-bert on reviews\.csv"))).to_be_visible()

            # 2. a small sweep from the Sweep page (quantization, its default bit-widths 2, 4, 8)
            _nav(page, "Sweep")
            expect(page.get_by_text("settings in all")).to_be_visible()
            page.get_by_role("button", name="Queue this sweep").click()
            expect(page.get_by_text("Queued 1 sweep(s)")).to_be_visible()

            # 3. the points land on the Trade-offs chart (baseline + three settings)
            _nav(page, "Trade-offs")
            points = page.locator(".js-plotly-plot").first.locator(".scatterlayer .trace .point")
            deadline = time.monotonic() + 300
            while points.count() < 4:  # baseline + 3 settings; the star and rings add more
                assert time.monotonic() < deadline, f"only {points.count()} points after 300 s"
                time.sleep(1)
            from compression import api

            store = api.open_workspace(str(ws))[1]
            while any(j["state"] in ("queued", "running") for j in store.jobs()):
                assert time.monotonic() < deadline, "jobs still running after 300 s"
                time.sleep(1)
            assert not [j for j in store.jobs() if j["state"] == "failed"], "a sweep job failed"
            expect(page.get_by_text("queued or running")).to_have_count(0)  # the page saw the last row land
            objective, target, step, first, then = _target(ws)
            if objective != "latency":
                page.get_by_text("most accurate", exact=True).click()
            expect(page.locator("strong", has_text=f"Best feasible: {first}")).to_be_visible(timeout=30_000)

            # 4. move the max-size slider; the highlighted best setting changes to the expected one
            _slide(page.get_by_role("slider", name="max size (MiB)"), target, step)
            expect(page.locator("strong", has_text=f"Best feasible: {then}")).to_be_visible(timeout=30_000)
            assert _best(page) != f"Best feasible: {first}"
            time.sleep(1.0)  # let plotly finish drawing the star
            page.screenshot(path=str(ROOT / "docs" / "screenshot.png"))

            # 5. clicking a point opens its details panel (AppTest cannot drive plotly selections). On the
            #    size axis the baseline (the biggest) stands alone, and after step 4 it is not the star.
            if then != "none":
                expect(page.get_by_role("heading", name=f"Details: {then}")).to_be_visible()  # the best, by default
            page.get_by_text("size vs accuracy", exact=True).click()
            page.locator(".js-plotly-plot .scatterlayer .trace .point").first.wait_for()
            time.sleep(1.0)
            box = page.evaluate("""() => {
                const gd = document.querySelector('.js-plotly-plot');
                const ti = gd.data.findIndex(t => t.name === 'baseline');
                const pt = gd.querySelectorAll('.scatterlayer .trace')[ti].querySelector('.point');
                const r = pt.getBoundingClientRect();
                return {x: r.x + r.width / 2, y: r.y + r.height / 2};
            }""")
            page.mouse.click(box["x"], box["y"])
            expect(page.get_by_role("heading", name="Details: baseline")).to_be_visible()

            # 6. explain mode, as a product manager would see it: the recommendation in plain words up
            #    top, no recipe keys; a screenshot of every page (the Trade-offs one is the README's). It
            #    asks for the smallest setting: a tiny model's timings are noise, so "fastest" would often
            #    keep the original, and the picture should show a compressed pick with its costs.
            page.goto(f"{url}/?explain=1&objective=size")
            expect(page.get_by_text("Explain mode: plain words for a demo")).to_be_visible()
            plain = _plain_pick(ws, objective="size")
            expect(page.locator("strong", has_text=plain).first).to_be_visible(timeout=30_000)
            expect(page.locator("strong", has_text="Best feasible:")).to_have_count(0)
            page.locator(".js-plotly-plot .scatterlayer .trace .point").first.wait_for()
            time.sleep(1.5)  # let plotly finish drawing the star
            page.screenshot(path=str(ROOT / "docs" / "screenshot.png"))
            for title, check in (("Sweep", re.compile(r"settings in all|already stored")), ("Compare", None), ("Playground", None),
                                 ("Baseline", None)):
                _nav(page, title)
                expect(page.get_by_role("heading", name=title).first).to_be_visible()
                if check:
                    expect(page.get_by_text(check).first).to_be_visible()
                # the page writes its URL state as its script runs, after the heading can show: wait for it
                expect(page, f"explain mode left the URL on the {title} page").to_have_url(re.compile(r"explain=1"))
                time.sleep(1.5)
                page.screenshot(path=str(ROOT / "docs" / f"explain-{title.lower()}.png"))
        except BaseException:
            page.screenshot(path=str(ws.parent / "failure.png"))
            print(f"failure screenshot: {ws.parent / 'failure.png'}; server log: {ws.parent / 'server.log'}")
            raise
        finally:
            browser.close()
