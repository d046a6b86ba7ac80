"""The page cache (:mod:`noaber.api.pagecache`): a write changes the next view of the
dashboard, the schedule and the statement page, and no reader is served another reader's
view. Runs on the API world (both backends)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from energy.i18n import format_kwh, format_local_datetime
from energy.models import (
    Asset,
    Channel,
    IntervalReading,
    MemberPersonal,
    Quantity,
    Role,
    Site,
    User,
)
from energy.readings import readings_changed, readings_versions, upsert_readings
from energy.security import create_access_token
from noaber.api.deps import TOKEN_COOKIE
from noaber.api.pagecache import PageCache
from optimizer.model import plan
from optimizer.report import compare
from optimizer.store import save_plan
from tests.noaber.api_world import DAY_START, password_hash
from tests.noaber.test_api_authz import SECRET
from tests.optimizer.api_authz import _scenario

HTML = {"Accept": "text/html"}
DAY = {"start": DAY_START.isoformat(), "end": (DAY_START + dt.timedelta(days=1)).isoformat()}


def _client(app, username: str) -> TestClient:
    client = TestClient(app)
    client.headers.update(
        {**HTML, "Authorization": f"Bearer {create_access_token(username, '', SECRET, 600)}"}
    )
    return client


def _cookie_client(app, username: str) -> TestClient:
    """A browser's way in: the token cookie (the page header shows the user)."""
    client = TestClient(app)
    client.headers.update(HTML)
    client.cookies.set(TOKEN_COOKIE, create_access_token(username, "", SECRET, 600))
    return client


def _grid_channel(session, site: str) -> int:
    return session.scalar(
        select(Channel.id)
        .join(Asset, Channel.asset_id == Asset.id)
        .join(Site, Asset.site_id == Site.id)
        .where(Site.name == site, Asset.name == "grid", Channel.quantity == Quantity.POWER)
    )


def _grid_wh(session, cid: int, start: dt.datetime, end: dt.datetime) -> float:
    return float(
        session.scalar(
            select(func.sum(IntervalReading.energy_wh)).where(
                IntervalReading.channel_id == cid,
                IntervalReading.isp_start >= start,
                IntervalReading.isp_start < end,
            )
        )
    )


def _readings(start: dt.datetime, n: int, energy_wh: float) -> pd.DataFrame:
    idx = pd.date_range(start, periods=n, freq="15min", tz="UTC")
    return pd.DataFrame(
        {
            "energy_wh": np.full(n, energy_wh),
            "power_mean_w": np.full(n, energy_wh * 4),
            "sample_count": np.full(n, 15),
            "coverage": np.ones(n),
        },
        index=idx,
    )


def test_page_cache_is_a_bounded_lru() -> None:
    cache = PageCache(maxsize=2)
    built: list[str] = []

    def make(key: str):
        return lambda: built.append(key) or key.upper()

    assert cache.get("a", make("a")) == "A" and cache.get("b", make("b")) == "B"
    assert cache.get("a", make("a")) == "A"  # a hit, and "a" is now the newest
    cache.get("c", make("c"))  # evicts "b", the least recently used
    assert len(cache) == 2 and (cache.hits, cache.misses) == (1, 3)
    cache.get("b", make("b"))
    assert built == ["a", "b", "c", "b"]
    with pytest.raises(ValueError, match="maxsize must be >= 1, got 0"):
        PageCache(maxsize=0)


def test_readings_version_grows_once_per_committed_transaction(world_app) -> None:
    _app, world = world_app
    sessions = world.extra["sessions"]
    with sessions() as session:
        cid = _grid_channel(session, "hall-a")
        v0 = readings_versions(session, [cid])[cid]
    with sessions() as session, session.begin():  # two writes in one transaction: one bump
        upsert_readings(session, cid, _readings(DAY_START, 2, 10.0))
        upsert_readings(session, cid, _readings(DAY_START, 2, 20.0))
    with sessions() as session:
        assert readings_versions(session, [cid])[cid] == v0 + 1
    with sessions() as session:  # rolled back: no bump, and nothing left for the next commit
        upsert_readings(session, cid, _readings(DAY_START, 2, 30.0))
        session.rollback()
        session.commit()
    with sessions() as session:
        assert readings_versions(session, [cid])[cid] == v0 + 1
        readings_changed(session, cid)  # a delete notes the channel the same way
        session.commit()
        assert readings_versions(session, [cid])[cid] == v0 + 2


def test_new_readings_change_the_next_dashboard(world_app) -> None:
    app, world = world_app
    sessions = world.extra["sessions"]
    mgr = _client(app, "mgr")
    day_start, day_end = DAY_START, DAY_START + dt.timedelta(days=1)
    with sessions() as session:
        cid = _grid_channel(session, "hall-a")
        before_kwh = format_kwh(_grid_wh(session, cid, day_start, day_end), 1, "nl")
    first = mgr.get("/sites/hall-a/dashboard", params=DAY)
    assert first.status_code == 200 and before_kwh in first.text
    cache = app.state.page_cache
    hits = cache.hits
    assert mgr.get("/sites/hall-a/dashboard", params=DAY).text == first.text
    assert cache.hits > hits  # the second view came from the cache
    with sessions() as session, session.begin():  # late readings replace four ISPs
        upsert_readings(session, cid, _readings(day_start, 4, 250_000.0))
    with sessions() as session:
        after_kwh = format_kwh(_grid_wh(session, cid, day_start, day_end), 1, "nl")
    assert after_kwh != before_kwh
    html = mgr.get("/sites/hall-a/dashboard", params=DAY).text
    assert after_kwh in html and before_kwh not in html
    # the default period follows the latest reading: a new day of readings moves it
    with sessions() as session, session.begin():
        upsert_readings(session, cid, _readings(day_end, 96, 100.0))
    html = mgr.get("/sites/hall-a/dashboard").text
    new_end = day_end + dt.timedelta(days=1)
    assert format_local_datetime(new_end) in html


def test_a_reader_never_gets_another_readers_page(world_app) -> None:
    app, world = world_app
    sessions = world.extra["sessions"]
    oper, mgr = _client(app, "oper"), _client(app, "mgr")
    # the operator fills the cache with hall-b's dashboard and hall-a's plan with the car
    assert oper.get("/sites/hall-b/dashboard", params=DAY).status_code == 200
    plan_html = oper.get("/schedules/sites/hall-a").text
    assert "ev-own" in plan_html  # the operator sees every car
    # the manager of hall-a only: hall-b stays 404, the car's owner has not consented
    assert mgr.get("/sites/hall-b/dashboard", params=DAY).status_code == 404
    html = mgr.get("/schedules/sites/hall-a").text
    assert "ev-own" not in html and "ev-total" in html
    # and the other way round: the manager's view first, then the operator's
    app.state.page_cache.clear()
    assert "ev-own" not in mgr.get("/schedules/sites/hall-a").text
    assert "ev-own" in oper.get("/schedules/sites/hall-a").text
    # a manager of hall-b does not get hall-a's building statement (hall-b has none)
    with sessions() as session, session.begin():
        hall_b = session.scalar(select(Site).where(Site.name == "hall-b"))
        session.add(
            User(
                username="mgr-b",
                password_hash=password_hash(),
                role=Role.SITE_MANAGER,
                sites=[hall_b],
            )
        )
    assert mgr.get("/sites/hall-a/statement").status_code == 200
    mgr_b = _client(app, "mgr-b")
    assert mgr_b.get("/sites/hall-a/statement").status_code == 404
    assert mgr_b.get("/sites/hall-b/statement").status_code == 404
    assert _client(app, "firm").get("/sites/hall-a/statement").status_code == 403
    # the same statement page for two signed-in readers: each sees their own header
    browsers = {u: _cookie_client(app, u) for u in ("mgr", "oper")}
    pages = {u: c.get("/sites/hall-a/statement").text for u, c in browsers.items()}
    assert '<span id="user-name">mgr ' in pages["mgr"] and "oper" not in pages["mgr"]
    assert '<span id="user-name">oper ' in pages["oper"]
    hits = app.state.page_cache.hits
    assert browsers["mgr"].get("/sites/hall-a/statement").text == pages["mgr"]
    assert app.state.page_cache.hits > hits


def test_a_new_plan_changes_the_next_schedule_page(world_app) -> None:
    app, world = world_app
    sessions = world.extra["sessions"]
    mgr = _client(app, "mgr")
    old_id = world.extra["schedule-hall-a"]
    html = mgr.get("/schedules/sites/hall-a").text
    assert f"/schedules/{old_id}/csv" in html
    assert mgr.get("/schedules/sites/hall-a").text == html  # kept
    sc = _scenario("hall-a", "ev-own", "m-ev")
    with sessions() as session, session.begin():
        result = plan(sc)
        new_id = save_plan(session, sc, result, compare(sc, result))
    html = mgr.get("/schedules/sites/hall-a").text
    assert f"/schedules/{new_id}/csv" in html and f"/schedules/{old_id}/csv" not in html


def test_a_changed_name_changes_the_next_statement(world_app) -> None:
    app, world = world_app
    sessions = world.extra["sessions"]
    mgr = _client(app, "mgr")
    member_id = world.members["m-hall-a"]
    with sessions() as session, session.begin():
        session.add(MemberPersonal(member_id=member_id, name="Dorpshuis Zuid"))
    html = mgr.get("/sites/hall-a/statement").text
    assert "Dorpshuis Zuid" in html
    assert mgr.get("/sites/hall-a/statement").text == html
    with sessions() as session, session.begin():
        row = session.scalar(select(MemberPersonal).where(MemberPersonal.member_id == member_id))
        row.name = "Dorpshuis Noord"
    html = mgr.get("/sites/hall-a/statement").text
    assert "Dorpshuis Noord" in html and "Dorpshuis Zuid" not in html
    with sessions() as session, session.begin():  # erased: the ref is shown, not the name
        session.delete(
            session.scalar(select(MemberPersonal).where(MemberPersonal.member_id == member_id))
        )
    html = mgr.get("/sites/hall-a/statement").text
    assert "Dorpshuis Noord" not in html and "m-hall-a" in html
    assert mgr.get("/sites/hall-a/statement?lang=en").status_code == 200  # kept data, en
