"""The firm's campaign dashboard and report served by the API, in headless Debian Chromium.

Serves the session demo (tests/conftest.py; it ran the Meetkoffer step) with uvicorn on
127.0.0.1, logs in as the demo firm and follows the dashboard's link to the campaign report: its charts have data and
the page reaches nothing outside 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from energy.settings import Settings
from noaber.services.demo import DemoContext
from tests.browser import live_server, login, loopback_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_firm_dashboard_and_report_in_chromium(demo: DemoContext) -> None:
    from noaber.api import create_app

    app = create_app(demo.settings, demo.engine)
    with live_server(app) as base, loopback_page() as (page, outside):
        login(page, base, "polymeer", "noaber-fabriek")
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
    assert not outside, f"the page tried to reach the internet: {outside}"


@pytest.mark.browser
def test_savings_report_page_in_chromium(tmp_path: Path) -> None:
    """The served savings verification page draws its charts with data, offline, in Chromium."""
    from energy.db import make_engine, session_factory, upgrade
    from energy.security import create_access_token
    from noaber.api import create_app
    from tests.meetkoffer.api_authz import seed
    from tests.noaber.api_world import build_world

    secret = "test-secret-" + "z" * 40
    url = f"sqlite:///{tmp_path / 'noaber.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with session_factory(engine).begin() as s:
        world = build_world(s)
        seed(s, world)
    app = create_app(Settings(mode="test", secret_key=secret, database_url=url), engine)
    own, sid = world.extra["campaign-own"], world.extra["savings-own"]
    try:
        with live_server(app) as base, loopback_page() as (page, outside):
            token = create_access_token("firm", "firm", secret, 600)
            page.set_extra_http_headers({"Authorization": f"Bearer {token}"})
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
        engine.dispose()
    assert not outside, f"the page tried to reach the internet: {outside}"
