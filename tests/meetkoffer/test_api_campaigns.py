"""The campaign routes: a firm sees only its own campaigns, in JSON and on its dashboard."""

from __future__ import annotations

from fastapi.testclient import TestClient

from energy.api import create_app
from energy.db import make_engine, session_factory
from energy.security import create_access_token
from energy.settings import Settings
from tests.energy.api_world import build_world
from tests.meetkoffer.api_authz import seed

SECRET = "test-secret-" + "y" * 40


def _client(db_url: str):
    engine = make_engine(db_url)
    with session_factory(engine).begin() as s:
        world = build_world(s)
        seed(s, world)
    app = create_app(Settings(mode="test", secret_key=SECRET, database_url=db_url), engine)
    return TestClient(app), world


def _auth(username: str) -> dict[str, str]:
    token = create_access_token(username, "firm", SECRET, 600)
    return {"Authorization": f"Bearer {token}"}


def test_firm_sees_only_its_campaigns(db_url: str) -> None:
    client, world = _client(db_url)
    r = client.get("/campaigns", headers=_auth("firm"))
    assert r.status_code == 200
    assert [c["name"] for c in r.json()] == ["own"]
    assert r.json()[0]["savings_eur_per_year"] == 200.0
    r = client.get("/campaigns", headers=_auth("oper"))
    assert sorted(c["name"] for c in r.json()) == ["other", "own"]
    own = world.extra["campaign-own"]
    d = client.get(f"/campaigns/{own}", headers=_auth("firm")).json()
    assert d["finding_list"][0]["title"] == "Base load at own"
    assert d["savings_list"][0]["avoided_kwh"] == 10.0
    assert (
        client.get(f"/campaigns/{world.extra['campaign-other']}", headers=_auth("firm")).status_code
        == 404
    )
    assert client.get("/campaigns/99999", headers=_auth("oper")).status_code == 404
    assert client.get("/campaigns", headers=_auth("evowner")).status_code == 403
    assert client.get("/campaigns").status_code == 401
    page = client.get("/campaigns/dashboard", headers=_auth("firm"))
    assert page.status_code == 200
    assert "Basislast van 1,0 kW buiten productietijd" in page.text  # from kind + evidence
    assert page.text.count("Basislast van") == 1  # not the other firm's finding
    assert "Bevindingen" in page.text and "Geverifieerde besparingen" in page.text
    en = client.get("/campaigns/dashboard?locale=en", headers=_auth("firm"))
    assert "Verified savings" in en.text


def test_campaign_report_page(db_url: str) -> None:
    client, world = _client(db_url)
    own = world.extra["campaign-own"]
    r = client.get(f"/campaigns/{own}/report", headers=_auth("firm"))
    assert r.status_code == 200
    assert "Meetkoffercampagne" in r.text and "plotly-graph-div" in r.text
    assert '<script src="/static/plotly.min.js"></script>' in r.text
    assert client.get("/static/plotly.min.js").status_code == 200
    assert "Basislast van 1,0 kW buiten productietijd" in r.text
    other = world.extra["campaign-other"]
    assert client.get(f"/campaigns/{other}/report", headers=_auth("firm")).status_code == 404
    page = client.get("/campaigns/dashboard", headers=_auth("firm"))
    assert f'href="/campaigns/{own}/report?locale=nl"' in page.text
