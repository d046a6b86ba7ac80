"""The demo dashboard in headless Debian Chromium: log in, see a chart with data, no internet.

Builds the demo (what ``noaber demo --no-serve`` builds) into a temporary directory, serves it
with uvicorn in a thread on a free 127.0.0.1 port, and drives Chromium with Playwright.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from energy.demo import DEMO_SITE, build_demo
from energy.settings import Settings
from tests.conftest import need, need_executable

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-gpu",
]


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    from energy.api import create_app

    data_dir = tmp_path_factory.mktemp("demo")
    ctx = build_demo(Path(data_dir), Settings(mode="local"))
    app = create_app(ctx.settings, ctx.engine)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
        assert thread.is_alive(), "uvicorn thread died"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()
    ctx.engine.dispose()


def _browser(p):
    chromium = need_executable("chromium")
    return p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)


def test_dashboard_chart_has_data(demo_server: str) -> None:
    need(
        Path("/usr/bin/chromium").exists(), "Debian chromium is not installed at /usr/bin/chromium"
    )
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page()

            def guard(route) -> None:
                host = urlparse(route.request.url).hostname
                if host != "127.0.0.1":
                    outside.append(route.request.url)
                    route.abort()
                else:
                    route.continue_()

            page.route("**/*", guard)
            page.set_default_timeout(30_000)
            resp = page.goto(f"{demo_server}/sites/{DEMO_SITE}/dashboard")
            assert resp is not None and resp.status == 401  # the login form, not the data
            page.fill("#username", "beheer-noaberhof")
            page.fill("#password", "noaber-dorpshuis")
            page.click("#login-submit")
            page.wait_for_url(f"**/sites/{DEMO_SITE}/dashboard")
            page.wait_for_function(
                "() => { const el = document.querySelector('.js-plotly-plot');"
                " return el && el.data && el.data.length > 0; }"
            )
            traces = page.evaluate(
                "() => document.querySelector('.js-plotly-plot').data.map("
                "t => ({name: t.name, n: t.y.length,"
                " finite: t.y.filter(v => v !== null && Number.isFinite(v)).length}))"
            )
            assert page.evaluate("document.querySelector('.js-plotly-plot').data[0].y.length > 0")
            names = {t["name"] for t in traces}
            assert {"Zonne-energie", "Verbruik", "Batterij", "Net"} <= names, (
                traces
            )  # Dutch by default
            for t in traces:
                assert t["n"] == 7 * 96 or t["n"] in (7 * 96 - 4, 7 * 96 + 4), t  # a DST week
                assert t["finite"] == t["n"], t
            # Plotly itself came from our server and drew an SVG.
            assert page.evaluate("typeof Plotly !== 'undefined' && !!Plotly.version")
            assert page.locator(".js-plotly-plot .main-svg").count() > 0
        finally:
            browser.close()
    assert not outside, f"the page tried to reach the internet: {outside}"


def test_member_is_refused_the_dashboard(demo_server: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.goto(f"{demo_server}/")
            page.fill("#username", "anna")
            page.fill("#password", "noaber-anna")
            page.click("#login-submit")
            page.wait_for_load_state()
            resp = page.goto(f"{demo_server}/sites/{DEMO_SITE}/dashboard")
            assert resp is not None and resp.status == 403
            resp = page.goto(f"{demo_server}/sites/{DEMO_SITE}/assets")
            assert resp is not None and resp.status == 200
            assets = page.evaluate("JSON.parse(document.body.innerText)")
            assert [a["name"] for a in assets] == ["ev-anna"]
        finally:
            browser.close()


def test_api_docs_render_offline(demo_server: str) -> None:
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    with sync_playwright() as p:
        browser = _browser(p)
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
            page.goto(f"{demo_server}/docs")
            page.wait_for_selector(".swagger-ui .opblock-tag")
            tags = page.locator(".swagger-ui .opblock-tag").all_inner_texts()
            assert any("sites" in t for t in tags), tags
        finally:
            browser.close()
    assert not outside, f"the docs tried to reach the internet: {outside}"
