"""The core API: tokens, payload validation (422 naming the field), readings, profile, pages."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from fastapi.testclient import TestClient

from energy.security import create_access_token
from energy.settings import Settings
from noaber.api import create_app
from tests.noaber.api_world import DAY_ISPS, DAY_START, PASSWORD, build_world

SECRET = "api-test-secret-" + "z" * 40


@pytest.fixture
def api(engine, sessions):
    with sessions() as session, session.begin():
        world = build_world(session)
    app = create_app(Settings(mode="test", secret_key=SECRET), engine)
    with TestClient(app) as client:
        yield client, world


def _token(client: TestClient, username: str) -> dict[str, str]:
    """Bearer header for a world user (issued directly: Argon2 is slow on purpose)."""
    return {"Authorization": f"Bearer {create_access_token(username, '', SECRET, 600)}"}


def test_password_flow(api) -> None:
    client, _ = api
    r = client.post("/auth/token", data={"username": "mgr", "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in_s"] > 0
    via_form = {"Authorization": f"Bearer {body['access_token']}"}
    assert client.get("/users/me", headers=via_form).json()["username"] == "mgr"
    assert (
        client.post("/auth/token", data={"username": "oper", "password": "nope"}).status_code == 401
    )
    assert (
        client.post("/auth/token", data={"username": "ghost", "password": PASSWORD}).status_code
        == 401
    )
    me = client.get("/users/me", headers=_token(client, "mgr")).json()
    assert me == {
        "username": "mgr",
        "role": "site_manager",
        "member_ref": None,
        "site_names": ["hall-a"],
        "disabled": False,
    }
    assert "password" not in str(client.get("/users", headers=_token(client, "oper")).json())


def test_sites_are_filtered_by_ownership(api) -> None:
    client, _ = api
    names = {
        u: [s["name"] for s in client.get("/sites", headers=_token(client, u)).json()]
        for u in ("oper", "mgr", "firm", "evowner")
    }
    assert names == {
        "oper": ["factory-other", "factory-own", "hall-a", "hall-b"],
        "mgr": ["hall-a"],
        "firm": ["factory-own"],
        "evowner": ["hall-a"],
    }
    assets = client.get("/sites/hall-a/assets", headers=_token(client, "evowner")).json()
    assert [(a["name"], a["owner_member_ref"]) for a in assets] == [("ev-own", "m-ev")]
    # the manager sees the hall's assets but not m-ev's car: its owner has not consented
    managed = client.get("/sites/hall-a/assets", headers=_token(client, "mgr")).json()
    assert sorted(a["name"] for a in managed) == ["building", "grid", "pv"]


BAD_USER_BODIES = [
    ({"username": "x", "password": "long-password", "role": "operator"}, "username"),
    ({"username": "new-user", "password": "short", "role": "operator"}, "password"),
    ({"username": "new-user", "password": "long-password", "role": "admin"}, "role"),
    ({"username": "new-user", "password": "long-password", "role": "member"}, "member_ref"),
    (
        {
            "username": "new-user",
            "password": "long-password",
            "role": "site_manager",
            "site_names": ["nowhere"],
        },
        "site_names",
    ),
    ({"username": "mgr", "password": "long-password", "role": "operator"}, "username"),
    ({"password": "long-password", "role": "operator"}, "username"),
]


def test_bad_user_payload_is_422_naming_the_field(api) -> None:
    client, _ = api
    headers = _token(client, "oper")
    for body, field in BAD_USER_BODIES:
        r = client.post("/users", json=body, headers=headers)
        assert r.status_code == 422, (body, r.text)
        locs = [d["loc"] for d in r.json()["errors"]]
        assert any(loc[-1] == field for loc in locs), (body, locs)
    assert client.get("/users/new-user", headers=headers).status_code == 404  # nothing written


def test_create_user_then_log_in(api) -> None:
    client, _ = api
    r = client.post(
        "/users",
        json={
            "username": "newbie",
            "password": "long-password",
            "role": "member",
            "member_ref": "m-ev-other",
        },
        headers=_token(client, "oper"),
    )
    assert r.status_code == 201, r.text
    assert r.json()["member_ref"] == "m-ev-other"
    token = client.post("/auth/token", data={"username": "newbie", "password": "long-password"})
    assert token.status_code == 200


def test_channel_readings(api) -> None:
    client, world = api
    ch = world.channels["hall-a/building/power"]
    headers = _token(client, "mgr")
    body = client.get(f"/channels/{ch}/readings", headers=headers).json()
    assert body["channel"]["key"] == "hall-a/building/power"
    rows = body["readings"]
    assert len(rows) == DAY_ISPS  # default: the week up to the latest reading
    assert dt.datetime.fromisoformat(rows[0]["isp_start"]) == DAY_START
    assert rows[0]["power_mean_w"] == pytest.approx(3000.0)
    assert rows[0]["energy_wh"] == pytest.approx(750.0)
    start = (DAY_START + dt.timedelta(hours=1)).isoformat()
    end = (DAY_START + dt.timedelta(hours=2)).isoformat()
    part = client.get(
        f"/channels/{ch}/readings", params={"start": start, "end": end}, headers=headers
    ).json()
    assert [dt.datetime.fromisoformat(r["isp_start"]) for r in part["readings"]] == [
        DAY_START + dt.timedelta(minutes=60 + 15 * i) for i in range(4)
    ]


BAD_PERIODS = [
    ({"start": "2026-06-02T00:00:00Z", "end": "2026-06-01T00:00:00Z"}, "end"),
    ({"start": "2026-06-02T00:00:00"}, "start"),
    ({"start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "end"),
    ({"start": "yesterday"}, "start"),
]


def test_bad_period_is_422_naming_the_field(api) -> None:
    client, world = api
    ch = world.channels["hall-a/building/power"]
    headers = _token(client, "oper")
    for params, field in BAD_PERIODS:
        for url in (f"/channels/{ch}/readings", "/sites/hall-a/readings"):
            r = client.get(url, params=params, headers=headers)
            assert r.status_code == 422, (url, params, r.text)
            assert any(d["loc"][-1] == field for d in r.json()["errors"]), r.json()


def test_site_profile_adds_up(api) -> None:
    client, _ = api
    body = client.get("/sites/hall-a/readings", headers=_token(client, "mgr")).json()
    assert set(body["power_w"]) == {"pv", "load", "ev", "grid"}
    n = len(body["isp_start"])
    assert n == 7 * 96  # default: a week ending after the latest reading
    p = {
        k: np.array([np.nan if v is None else v for v in vals])
        for k, vals in body["power_w"].items()
    }
    have = ~np.isnan(p["grid"])
    assert have.sum() == DAY_ISPS
    np.testing.assert_allclose(p["pv"][have] + p["load"][have] + p["ev"][have], p["grid"][have])
    assert body["energy_wh"]["load"] == pytest.approx(np.nansum(p["load"]) * 0.25)
    assert np.isnan(p["pv"][~have]).all()  # no reading is null, not zero


def test_dashboard_page_is_local_and_translated(api) -> None:
    client, _ = api
    headers = _token(client, "firm")
    page = client.get("/sites/factory-own/dashboard", headers=headers)
    assert page.status_code == 200
    html = page.text
    assert '<script src="/static/plotly.min.js"></script>' in html
    assert "cdn" not in html.lower()
    assert "Kwartierprofiel" in html and 'id="profile-chart"' in html
    en = client.get("/sites/factory-own/dashboard?lang=en", headers=headers).text
    assert "15-minute profile" in en and "previous" in en
    assert "vorige" in html and "no-data" not in html
    # The previous period has no readings: the page says so instead of drawing nothing.
    prev = html.split('id="prev-period"')[0].rsplit('href="', 1)[1].split('"')[0]
    older = client.get("/sites/factory-own/dashboard" + prev.replace("&amp;", "&"), headers=headers)
    assert older.status_code == 200 and 'id="no-data"' in older.text
    js = client.get("/static/plotly.min.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("application/javascript")
    assert len(js.text) > 1_000_000
    again = client.get("/static/plotly.min.js", headers={"If-None-Match": js.headers["etag"]})
    assert again.status_code == 304


def test_browser_without_cookie_gets_the_login_form(api) -> None:
    client, _ = api
    r = client.get("/sites/hall-a/dashboard", headers={"Accept": "text/html"})
    assert r.status_code == 401
    assert 'id="login-form"' in r.text and 'value="/sites/hall-a/dashboard"' in r.text
    r = client.post(
        "/login",
        data={"username": "mgr", "password": "wrong", "next": "/"},
        follow_redirects=False,
    )
    assert r.status_code == 401 and "Onjuiste" in r.text
    r = client.post(
        "/login",
        data={"username": "mgr", "password": "wrong", "next": "/sites/hall-a/dashboard"},
        follow_redirects=False,
    )
    assert 'value="/sites/hall-a/dashboard"' in r.text  # kept for the next attempt
    for evil in ("//evil.example/", "/\\evil.example/", "https://evil.example/"):
        r = client.post(
            "/login",
            data={"username": "mgr", "password": PASSWORD, "next": evil},
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"] == "/", evil
    r = client.post(
        "/login",
        data={"username": "mgr", "password": PASSWORD, "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/"  # no open redirect
    home = client.get("/")
    assert "hall-a/dashboard" in home.text and "hall-b" not in home.text


def test_openapi_lists_the_resources(api) -> None:
    client, _ = api
    spec = client.get("/openapi.json").json()
    for path in (
        "/auth/token",
        "/sites",
        "/assets/{asset_id}",
        "/channels/{channel_id}/readings",
        "/users",
    ):
        assert path in spec["paths"], path
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "/static/swagger/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()  # Swagger UI from the installed package
    js = client.get("/static/swagger/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    assert client.get("/static/swagger/index.html").status_code == 404  # only listed files
    assert client.get("/static/swagger/..%2F..%2F__init__.py").status_code == 404
