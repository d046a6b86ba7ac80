"""Schedule pages in headless Debian Chromium: the manager's charts draw, an owner sees only their car.

Serves the session demo (tests/conftest.py; it ran the optimizer's demo step) with uvicorn on
a free 127.0.0.1 port and logs in through the real login form. Nothing may be fetched from outside 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from noaber.services.demo import DemoContext
from noaber.services.demo.optimizer import DEMO_SITE
from tests.browser import live_server, login, loopback_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(demo: DemoContext) -> Iterator[str]:
    from noaber.api import create_app

    with live_server(create_app(demo.settings, demo.engine)) as base:
        yield base


def test_manager_sees_charts_and_owner_only_their_car(server: str) -> None:
    with loopback_page() as (page, outside):
        login(page, server, "beheer-noaberhof", "noaber-dorpshuis")
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
        # no owner consented: the manager sees the cars as one total, no car's own SoC
        assert {"battery", "ev-total"} <= set(by_id["soc"]["traces"])
        assert not {"ev-1", "ev-2", "ev-3"} & set(by_id["soc"]["traces"])
        assert by_id["prices"]["n"] == 96
        assert page.locator("#departures tr").count() == 0  # no car's departure either

    assert not outside, f"the page tried to reach the internet: {outside}"
    with loopback_page() as (owner, outside):
        login(owner, server, "lid-1", "noaber-lid-1")
        resp = owner.goto(f"{server}/schedules/my-car")
        assert resp is not None and resp.status == 200
        owner.wait_for_function("() => document.querySelector('#car-plan .main-svg') !== null")
        text = owner.inner_text("body")
        assert "ev-1" in text and "ev-2" not in text and "ev-3" not in text
        assert "Gegarandeerd bij vertrek" in text
        resp = owner.goto(f"{server}/schedules/sites/{DEMO_SITE}")
        assert resp is not None and resp.status == 403
    assert not outside, f"the page tried to reach the internet: {outside}"
