"""The start page of each role: its tasks, every link working, and the short write actions
(an EV owner's session, a manager's limits) on the page and over the API, with clear errors
and audit entries. Runs on the API world (both backends); the browser journeys are in
``test_browser_journeys.py``."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from energy.models import AuditEntry, Site
from energy.security import create_access_token, decode_access_token
from energy.sitecontrols import EvSession, SiteOperatingLimits
from noaber.api.deps import TOKEN_COOKIE
from noaber.api.forms import csrf_token
from tests.noaber.api_world import USERS
from tests.noaber.test_api_authz import SECRET

HTML = {"Accept": "text/html"}


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href and href.startswith("/"):
            self.links.append(href)


def links_of(html: str) -> list[str]:
    p = _Links()
    p.feed(html)
    return list(dict.fromkeys(p.links))


def _client(app, role: str) -> tuple[TestClient, str]:
    token = create_access_token(USERS[role], role, SECRET, 600)
    client = TestClient(app)
    client.cookies.set(TOKEN_COOKIE, token)
    app_settings = app.state.settings
    return client, csrf_token(app_settings, decode_access_token(token, SECRET))


#: What each role's start page must offer (ids of its task links).
TASKS = {
    # (the plan links appear with a plan: the browser journeys check them on the demo)
    "member": ["task-session", "task-statements", "task-devices"],
    "site_manager": [
        "task-dashboard",
        "task-limits",
        "task-statement",
    ],
    "firm": ["task-campaigns"],
    "operator": ["task-province"],
}


@pytest.mark.parametrize("role", sorted(TASKS))
def test_start_page_links_all_work(world_app, role) -> None:
    app, _world = world_app
    client, _csrf = _client(app, role)
    with client:
        home = client.get("/", headers=HTML)
        assert home.status_code == 200, home.text[:500]
        for task in TASKS[role]:
            assert f'id="{task}"' in home.text, (role, task)
        broken = []
        for href in links_of(home.text):
            if href.startswith("/#") or href.endswith("/pdf"):
                continue  # anchors; PDFs print with Chromium (their own tests)
            r = client.get(href, headers=HTML, follow_redirects=True)
            # a plan or statement the world does not have is an HTML 404 page, never JSON
            if r.status_code != 200 and not (
                r.status_code == 404 and r.headers["content-type"].startswith("text/html")
            ):
                broken.append((href, r.status_code))
            if "/csv" not in href and "/export" not in href:
                assert r.headers["content-type"].startswith("text/html"), (href, r.headers)
        assert broken == [], broken
        # the header's menu always leads somewhere: 200, never a 404 page
        from energy.models import Role
        from noaber.api.language import ROLE_NAV

        for href, label in ROLE_NAV[Role(role)]:
            path, _, anchor = href.partition("#")
            r = client.get(path or "/", headers=HTML)
            assert r.status_code == 200, (role, label, href, r.status_code)
            if anchor:
                assert f'id="{anchor}"' in r.text, (role, label, href)


def test_my_devices_is_an_html_page(world_app) -> None:
    app, _world = world_app
    client, _csrf = _client(app, "member")
    with client:
        r = client.get("/my/devices", headers=HTML)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "Mijn apparaten" in r.text and "ev-own" in r.text and "ev-other" not in r.text
        assert "Elektrische auto" in r.text  # the kind's display name, not the slug "ev"


def _local(t: dt.datetime) -> str:
    from zoneinfo import ZoneInfo

    return t.astimezone(ZoneInfo("Europe/Amsterdam")).strftime("%Y-%m-%dT%H:%M")


def test_member_sets_a_session_on_the_page(world_app, sessions) -> None:
    app, world = world_app
    client, csrf = _client(app, "member")
    car = world.assets["hall-a/ev-own"]
    arrive = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=2)
    form = {
        "csrf_token": csrf,
        "asset": str(car),
        "arrival": _local(arrive),
        "departure": _local(arrive - dt.timedelta(hours=1)),  # before arrival: refused
        "soc_target_pct": "80",
        "soc_min_pct": "30",
    }
    with client:
        bad = client.post("/my/session", data=form, headers=HTML)
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html")
        assert "moet na de aankomst" in bad.text and 'data-field="departure"' in bad.text
        assert 'value="80"' in bad.text  # what was typed stays
        no_csrf = client.post("/my/session", data={**form, "csrf_token": "x"}, headers=HTML)
        assert no_csrf.status_code == 403
        with sessions() as s:
            assert s.scalar(select(EvSession)) is None  # nothing stored by a refusal
        form["departure"] = _local(arrive + dt.timedelta(hours=8))
        ok = client.post("/my/session", data=form, headers=HTML, follow_redirects=False)
        assert ok.status_code == 303, ok.text[:400]
        page = client.get(ok.headers["location"], headers=HTML)
        assert 'id="saved"' in page.text and "80 %" in page.text
        # someone else's car is not found
        other = client.post(
            "/my/session",
            data={**form, "asset": str(world.assets["hall-b/ev-other"])},
            headers=HTML,
        )
        assert other.status_code == 404
    with sessions() as s:
        row = s.scalar(select(EvSession))
        assert row is not None and row.soc_target_pct == 80 and row.asset_id == car
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "ev_session.set"))
        assert entry is not None and entry.actor == USERS["member"]


def test_member_sets_a_session_over_the_api(world_app) -> None:
    app, world = world_app
    token = create_access_token(USERS["member"], "member", SECRET, 600)
    h = {"Authorization": f"Bearer {token}"}
    arrive = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    body = {
        "asset_id": world.assets["hall-a/ev-own"],
        "arrival": arrive.isoformat(),
        "departure": (arrive + dt.timedelta(hours=6)).isoformat(),
        "soc_target_pct": 90,
        "soc_min_pct": 10,  # below the car's own 20 %
    }
    with TestClient(app) as client:
        r = client.post("/ev-sessions", json=body, headers=h)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["loc"][-1] == "soc_min_pct"
        r = client.post("/ev-sessions", json={**body, "soc_min_pct": 25}, headers=h)
        assert r.status_code == 201, r.text
        first = r.json()["id"]
        r = client.post("/ev-sessions", json={**body, "soc_min_pct": 30}, headers=h)
        listed = client.get("/ev-sessions", headers=h).json()
        assert [s["id"] for s in listed] == [r.json()["id"]] != [first]  # the new one replaces


def test_manager_sets_limits_within_the_sites(world_app, sessions) -> None:
    app, world = world_app
    client, csrf = _client(app, "site_manager")
    with sessions() as s:
        conn = s.scalar(select(Site.grid_import_limit_kw).where(Site.name == "hall-a"))
    assert conn is not None
    with client:
        too_high = client.post(
            "/sites/hall-a/limits",
            data={"csrf_token": csrf, "grid_import_limit_kw": str(conn + 1)},
            headers=HTML,
        )
        assert too_high.status_code == 422 and "hoogstens" in too_high.text
        ok = client.post(
            "/sites/hall-a/limits",
            data={"csrf_token": csrf, "grid_import_limit_kw": f"{conn / 2:g}".replace(".", ",")},
            headers=HTML,
            follow_redirects=False,
        )
        assert ok.status_code == 303
        page = client.get("/sites/hall-a/limits?saved=1", headers=HTML)
        assert 'id="saved"' in page.text
        foreign = client.post(
            "/sites/hall-b/limits",
            data={"csrf_token": csrf, "grid_import_limit_kw": "1"},
            headers=HTML,
        )
        assert foreign.status_code == 404
    with sessions() as s:
        row = s.get(SiteOperatingLimits, world.sites["hall-a"])
        assert row is not None and row.grid_import_limit_kw == pytest.approx(conn / 2)
        assert s.scalar(select(AuditEntry).where(AuditEntry.action == "site.limits"))
        # the connection's own limit is untouched
        assert s.scalar(select(Site.grid_import_limit_kw).where(Site.name == "hall-a")) == conn
    token = create_access_token(USERS["site_manager"], "site_manager", SECRET, 600)
    with TestClient(app) as api:
        r = api.put(
            "/sites/hall-a/limits",
            json={"grid_import_limit_kw": conn * 3},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 422 and "grid_import_limit_kw" in r.json()["detail"]


def test_province_csv_totals_are_the_sum_of_the_sites(world_app) -> None:
    app, _world = world_app
    client, _csrf = _client(app, "operator")
    with client:
        page = client.get("/operator/province", headers=HTML)
        assert page.status_code == 200 and "Provincie" in page.text
        text = client.get("/operator/province/csv").text
    rows = [line.split(",") for line in text.strip().splitlines()]
    header, body = rows[0], rows[1:]
    sites = [r for r in body if r[0] == "site"]
    total = next(r for r in body if r[0] == "total")
    assert {r[1] for r in sites} == {"hall-a", "hall-b", "factory-own", "factory-other"}
    for col in ("shared_kwh", "v2g_kwh", "savings_eur"):
        i = header.index(col)
        assert float(total[i]) == pytest.approx(sum(float(r[i]) for r in sites))
    assert re.fullmatch(r"[a-z_]+", header[0])


def test_manager_sees_a_device_the_loop_lost_until_it_is_restored(world_app, sessions) -> None:
    """The closed loop's control_lost alarm (energy.alarms) is an alert on the start page
    until a later control_restored alarm of the same device."""
    from energy.alarms import record_alarm

    app, _world = world_app
    client, _ = _client(app, "site_manager")
    t0 = dt.datetime(2026, 6, 15, 8, 0, tzinfo=dt.UTC)
    with sessions.begin() as s:
        record_alarm(s, "hall-a", t0, "ev-9", "charger-9", "control_lost", "stays out of remote")
    with client:
        page = client.get("/", headers=HTML)
        assert page.status_code == 200
        assert "Sturing verloren: ev-9 (charger-9)" in page.text
        with sessions.begin() as s:
            later = t0 + dt.timedelta(minutes=15)
            record_alarm(s, "hall-a", later, "ev-9", "charger-9", "control_restored", "again")
        assert "ev-9 (charger-9)" not in client.get("/", headers=HTML).text
