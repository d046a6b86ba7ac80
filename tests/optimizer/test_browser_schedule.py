"""Schedule pages in headless Debian Chromium: the manager's charts draw, an owner sees only their car.

Builds the demo with the optimizer's demo step, serves it with uvicorn on a free 127.0.0.1 port
and logs in through the real login form. Nothing may be fetched from outside 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from energy.demo import build_demo
from energy.settings import Settings
from optimizer.demo import DEMO_SITE, demo_step
from tests.conftest import need, need_executable

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-gpu",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    from energy.api import create_app

    ctx = build_demo(
        Path(tmp_path_factory.mktemp("demo")),
        Settings(mode="local"),
        extra_steps=[("optimizer", demo_step)],
        now=dt.datetime(2026, 6, 20, 10, tzinfo=dt.UTC),
        sample_period_s=900,
    )
    app = create_app(ctx.settings, ctx.engine)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
        assert thread.is_alive(), "uvicorn thread died"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)
    sock.close()
    ctx.engine.dispose()


def _login(page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-submit")
    page.wait_for_load_state()


def test_manager_sees_charts_and_owner_only_their_car(server: str) -> None:
    need(
        Path("/usr/bin/chromium").exists(), "Debian chromium is not installed at /usr/bin/chromium"
    )
    chromium = need_executable("chromium")
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
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
            _login(page, server, "beheer-noaberhof", "noaber-dorpshuis")
            resp = page.goto(f"{server}/schedules/sites/{DEMO_SITE}")
            assert resp is not None and resp.status == 200
            page.wait_for_function(
                "() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3"
            )
            plots = page.evaluate(
                "() => [...document.querySelectorAll('.js-plotly-plot')].map(el => ({id: el.id,"
                " traces: el.data.map(t => t.name), n: el.data.length ? el.data[0].y.length : 0}))"
            )
            by_id = {pl["id"]: pl for pl in plots}
            assert {"flows", "soc", "prices"} <= set(by_id)
            assert (
                "Zon-PV" in by_id["flows"]["traces"]
                and "Afname van het net" in by_id["flows"]["traces"]
            )
            assert {"battery", "ev-anna", "ev-jan", "ev-fatima"} <= set(by_id["soc"]["traces"])
            assert by_id["prices"]["n"] == 96
            assert page.locator("#departures tr").count() == 4  # header + three cars

            owner = browser.new_page()
            owner.route("**/*", guard)
            owner.set_default_timeout(30_000)
            _login(owner, server, "anna", "noaber-anna")
            resp = owner.goto(f"{server}/schedules/my-car")
            assert resp is not None and resp.status == 200
            owner.wait_for_function("() => document.querySelector('#car-plan .main-svg') !== null")
            text = owner.inner_text("body")
            assert "ev-anna" in text and "ev-jan" not in text and "ev-fatima" not in text
            assert "Gegarandeerd bij vertrek" in text
            resp = owner.goto(f"{server}/schedules/sites/{DEMO_SITE}")
            assert resp is not None and resp.status == 403
        finally:
            browser.close()
    assert not outside, f"the page tried to reach the internet: {outside}"
