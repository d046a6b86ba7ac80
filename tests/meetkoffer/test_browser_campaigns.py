"""The firm's campaign dashboard and report served by the API, in headless Debian Chromium.

Builds the demo with the Meetkoffer step, serves it with uvicorn on 127.0.0.1, logs in as the
demo firm and follows the dashboard's link to the campaign report: its charts have data and
the page reaches nothing outside 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from energy.demo import build_demo
from energy.settings import Settings
from meetkoffer.demo import demo_step
from tests.conftest import need, need_executable

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-gpu",
]


def test_firm_dashboard_and_report_in_chromium(tmp_path: Path) -> None:
    need(
        Path("/usr/bin/chromium").exists(), "Debian chromium is not installed at /usr/bin/chromium"
    )
    import uvicorn
    from playwright.sync_api import sync_playwright

    from energy.api import create_app

    ctx = build_demo(
        tmp_path / "demo",
        Settings(mode="local"),
        extra_steps=[("meetkoffer", demo_step)],
        now=dt.datetime(2026, 3, 12, 10, 0, tzinfo=dt.UTC),
        sample_period_s=300,
    )
    app = create_app(ctx.settings, ctx.engine)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    outside: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=need_executable("chromium"), headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page()

                def guard(route) -> None:
                    if urlparse(route.request.url).hostname != "127.0.0.1":
                        outside.append(route.request.url)
                        route.abort()
                    else:
                        route.continue_()

                page.route("**/*", guard)
                page.set_default_timeout(30_000)
                page.goto(f"{base}/")
                page.fill("#username", "polymeer")
                page.fill("#password", "noaber-fabriek")
                page.click("#login-submit")
                page.wait_for_load_state()
                resp = page.goto(f"{base}/campaigns/dashboard")
                assert resp is not None and resp.status == 200
                assert page.locator("section.card table tbody tr").count() >= 1  # findings
                page.click("text=Open het campagnerapport")
                page.wait_for_url("**/campaigns/*/report*")
                page.wait_for_function(
                    "() => { const d = Array.from(document.querySelectorAll('.plotly-graph-div'));"
                    " return d.length > 0 && d.every(x => x._fullLayout); }"
                )
                counts = page.evaluate(
                    """() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(d =>
                      (d._fullData || []).reduce((n, t) => {
                        const a = t.z || t.y; if (!a) return n;
                        let k = 0; for (const v of a) {
                          if (ArrayBuffer.isView(v) || Array.isArray(v)) {
                            for (const w of v) k += Number.isFinite(w) ? 1 : 0;
                          } else { k += Number.isFinite(v) ? 1 : 0; }
                        }
                        return n + k; }, 0))"""
                )
                assert len(counts) >= 5 and all(c > 0 for c in counts), counts
                assert page.evaluate("typeof Plotly !== 'undefined' && !!Plotly.version")
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        ctx.engine.dispose()
    assert not outside, f"the page tried to reach the internet: {outside}"


@pytest.mark.browser
def test_savings_report_page_in_chromium(tmp_path: Path) -> None:
    """The served savings verification page draws its charts with data, offline, in Chromium."""
    need(
        Path("/usr/bin/chromium").exists(), "Debian chromium is not installed at /usr/bin/chromium"
    )
    import uvicorn
    from playwright.sync_api import sync_playwright

    from energy.api import create_app
    from energy.db import make_engine, session_factory, upgrade
    from energy.security import create_access_token
    from tests.energy.api_world import build_world
    from tests.meetkoffer.api_authz import seed

    secret = "test-secret-" + "z" * 40
    url = f"sqlite:///{tmp_path / 'noaber.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with session_factory(engine).begin() as s:
        world = build_world(s)
        seed(s, world)
    app = create_app(Settings(mode="test", secret_key=secret, database_url=url), engine)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    outside: list[str] = []
    own, sid = world.extra["campaign-own"], world.extra["savings-own"]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=need_executable("chromium"), headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page()
                token = create_access_token("firm", "firm", secret, 600)
                page.set_extra_http_headers({"Authorization": f"Bearer {token}"})

                def guard(route) -> None:
                    if urlparse(route.request.url).hostname != "127.0.0.1":
                        outside.append(route.request.url)
                        route.abort()
                    else:
                        route.continue_()

                page.route("**/*", guard)
                page.set_default_timeout(30_000)
                resp = page.goto(f"{base}/campaigns/{own}/savings/{sid}")
                assert resp is not None and resp.status == 200
                page.wait_for_function(
                    "() => { const d = Array.from(document.querySelectorAll('.plotly-graph-div'));"
                    " return d.length === 3 && d.every(x => x._fullLayout); }"
                )
                points = page.evaluate(
                    """() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(d =>
                      (d._fullData || []).map(t => Array.from(t.y || [])
                        .filter(v => Number.isFinite(v)).length))"""
                )
                # baseline: measured + model over 12 hours; reporting: adjusted baseline +
                # measured over 12 hours; cumulative savings: 12 hours
                assert points == [[12, 12], [12, 12], [12]], points
                cumulative = page.evaluate(
                    "() => Array.from(document.getElementById('chart-cumulative')._fullData[0].y)"
                )
                assert cumulative[-1] == pytest.approx(-200.0)  # 30 kW vs 70 kW 18-23 h
                assert page.locator("#downloads a").count() == 7  # PDF + 6 CSV tables
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        engine.dispose()
    assert not outside, f"the page tried to reach the internet: {outside}"
