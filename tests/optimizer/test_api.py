"""Schedule pages through the API: the site manager's page, the CSV, an EV owner's own plan."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from energy.security import create_access_token
from energy.settings import Settings
from noaber.api import create_app
from tests.noaber.api_world import build_world
from tests.optimizer.api_authz import seed

SECRET = "optimizer-api-secret-" + "q" * 40


@pytest.fixture
def api(engine, sessions):
    with sessions() as session, session.begin():
        world = build_world(session)
        seed(session, world)
    app = create_app(Settings(mode="test", secret_key=SECRET), engine)
    with TestClient(app) as client:
        yield client, world


def _h(username: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_access_token(username, '', SECRET, 600)}"}


def test_site_page_has_flows_soc_prices_and_savings(api) -> None:
    client, _ = api
    r = client.get("/schedules/sites/hall-a", headers=_h("mgr"))
    assert r.status_code == 200
    html = r.text
    assert '<script src="/static/plotly.min.js"></script>' in html and "cdn" not in html.lower()
    for div in ('id="flows"', 'id="soc"', 'id="prices"', 'id="kpi-table"'):
        assert div in html
    assert (
        "Energiestromen" in html and "Bespaard ten opzichte van niet sturen" in html
    )  # Dutch default
    # m-ev has not consented: the manager sees the cars' total, not ev-own or its departure
    assert "ev-own" not in html and "ev-total" in html and 'id="departures"' not in html
    assert "Planning als CSV" in html
    owner = {"Authorization": f"Bearer {create_access_token('evowner', '', SECRET, 600)}"}
    consent = {"purpose": "ev_detail_site_manager"}
    assert client.post("/members/m-ev/consents", json=consent, headers=owner).status_code == 201
    html = client.get("/schedules/sites/hall-a", headers=_h("mgr")).text
    assert "ev-own" in html and 'id="departures"' in html
    en = client.get("/schedules/sites/hall-a?lang=en", headers=_h("mgr")).text
    assert "Energy flows" in en and "Saved against no control" in en
    listing = client.get("/schedules/sites/hall-a/list", headers=_h("mgr")).json()
    assert len(listing) == 1 and listing[0]["site_name"] == "hall-a"


def test_schedule_csv(api) -> None:
    client, world = api
    r = client.get(f"/schedules/{world.extra['schedule-hall-a']}/csv", headers=_h("oper"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = pd.read_csv(io.StringIO(r.text))
    assert list(table.columns) == ["timestamp", "asset", "kind", "power_kw", "soc_pct"]
    assert set(table.asset) == {"grid", "pv", "load", "ev-own"}


def test_ev_owner_sees_only_their_car(api) -> None:
    client, _ = api
    r = client.get("/schedules/my-car?lang=en", headers=_h("evowner"))
    assert r.status_code == 200
    html = r.text
    assert "Charging plan for ev-own" in html and 'id="car-plan"' in html
    assert "Guaranteed at departure" in html and "60 %" in html  # the session's target
    charged = re.search(r'id="charged">([0-9.,]+) kWh<', html)
    assert (
        charged is not None and float(charged.group(1).replace(",", "")) >= 12.0
    )  # 30 -> 60 % of 40 kWh
    assert "ev-other" not in html and "hall-b" not in html
    assert client.get("/schedules/my-car?car=ev-other", headers=_h("evowner")).status_code == 404
    assert client.get("/schedules/sites/hall-a", headers=_h("evowner")).status_code == 403
