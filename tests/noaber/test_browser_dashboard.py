"""The demo dashboard in headless Debian Chromium: log in, see a chart with data, no internet.

Serves the session demo (tests/conftest.py: what ``noaber demo --no-serve`` builds) with
uvicorn in a thread on a free 127.0.0.1 port, and drives Chromium with Playwright.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from noaber.services.demo import DEMO_SITE, DemoContext
from tests.browser import live_server, login, loopback_page

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def demo_server(demo: DemoContext) -> Iterator[str]:
    from noaber.api import create_app

    with live_server(create_app(demo.settings, demo.engine)) as base:
        yield base


def test_dashboard_chart_has_data(demo_server: str) -> None:
    with loopback_page() as (page, outside):
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
        assert {"Zonne-energie", "Verbruik", "Batterij", "Net"} <= names, traces  # Dutch by default
        for t in traces:
            assert t["n"] == 7 * 96 or t["n"] in (7 * 96 - 4, 7 * 96 + 4), t  # a DST week
            assert t["finite"] == t["n"], t
        # Plotly itself came from our server and drew an SVG.
        assert page.evaluate("typeof Plotly !== 'undefined' && !!Plotly.version")
        assert page.locator(".js-plotly-plot .main-svg").count() > 0
    assert not outside, f"the page tried to reach the internet: {outside}"


def test_member_is_refused_the_dashboard(demo_server: str) -> None:
    with loopback_page() as (page, _outside):
        login(page, demo_server, "lid-1", "noaber-lid-1")
        resp = page.goto(f"{demo_server}/sites/{DEMO_SITE}/dashboard")
        assert resp is not None and resp.status == 403
        resp = page.goto(f"{demo_server}/sites/{DEMO_SITE}/assets")
        assert resp is not None and resp.status == 200
        assets = page.evaluate("JSON.parse(document.body.innerText)")
        assert [a["name"] for a in assets] == ["ev-1"]


def test_api_docs_render_offline(demo_server: str) -> None:
    with loopback_page() as (page, outside):
        page.goto(f"{demo_server}/docs")
        page.wait_for_selector(".swagger-ui .opblock-tag")
        tags = page.locator(".swagger-ui .opblock-tag").all_inner_texts()
        assert any("sites" in t for t in tags), tags
    assert not outside, f"the docs tried to reach the internet: {outside}"
