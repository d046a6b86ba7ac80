"""Settlement in the demo (settlement/demo.py), and months with partial meter data.

The session demo (``demo`` in tests/conftest.py) is built for a week that crosses a month
boundary (26 November - 2 December 2026), so two months are settled, each with readings for
a few days only. The partial-month tests (read_meter_store, plan, post,
statement) run on both database backends.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from importlib import resources

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from energy.errors import ValidationError
from energy.readings import upsert_readings
from energy.siteconfig import import_site, load_site_text
from energy.timegrid import months_touched
from noaber.api import create_app
from noaber.services.demo import DEMO_LOGINS, DEMO_SITE, DemoContext
from noaber.services.demo.settlement import demo_community, demo_step
from settlement import ledger
from settlement.audit import reconcile
from settlement.community import MeterData, read_meter_store
from settlement.ledger import verify
from settlement.models import MemberDay, SettlementRun, Statement
from settlement.pricing import load_tariff
from settlement.settle import period_isps, plan_energy, post_run
from settlement.statements import fast_money, render_html, statement_data
from tests.browser import live_server, loopback_page
from tests.conftest import DEMO_NOW

NOW = DEMO_NOW  # the session demo: week 26 Nov - 2 Dec (local)
EV_OWNERS = {"lid-1": "m-4c1e7a", "lid-2": "m-9b2d05", "lid-3": "m-e83f61"}
LOGINS = tuple(lg for lg in DEMO_LOGINS if lg.username in ("operator", *EV_OWNERS))


def test_months_touched() -> None:
    utc = dt.UTC
    assert months_touched(dt.datetime(2026, 11, 25, 23, tzinfo=utc), NOW) == ["2026-11", "2026-12"]
    # [start, end) in local time: a week ending at local midnight 1 December is November only
    start = dt.datetime(2026, 11, 23, 23, tzinfo=utc)
    assert months_touched(start, dt.datetime(2026, 11, 30, 23, tzinfo=utc)) == ["2026-11"]
    assert months_touched(
        dt.datetime(2026, 12, 31, 22, tzinfo=utc), dt.datetime(2027, 1, 1, 1, tzinfo=utc)
    ) == [
        "2026-12",
        "2027-01",
    ]
    with pytest.raises(ValueError, match="after start"):
        months_touched(NOW, NOW)


def test_demo_community_matches_the_demo_site() -> None:
    community = demo_community()
    assert community.name == "energie-exloo"
    assert set(community.refs) == {"m-dorpshuis", "m-zon-coop", *EV_OWNERS.values()}
    site = load_site_text(
        (resources.files("noaber.services.demo") / "data" / "demo_site.yaml").read_text(
            encoding="utf-8"
        ),
        "demo_site.yaml",
    )
    assert community.name == site.community.name
    assert set(community.refs) == set(site.community.members)
    power_keys = {
        f"{DEMO_SITE}/{a.name}/power" for a in site.assets if a.name != "grid"
    }  # every sub-meter, not the grid connection (that would count everything twice)
    assert set(community.meter_owner()) == power_keys
    for m in community.members:
        assert m.has_storage == (m.ref in EV_OWNERS.values()), m.ref


def test_demo_settles_both_months_and_audits(demo: DemoContext) -> None:
    with demo.sessions() as session:
        runs = session.scalars(select(SettlementRun).order_by(SettlementRun.id)).all()
        assert [(r.period, r.status) for r in runs] == [
            ("2026-11", "posted"),
            ("2026-12", "posted"),
        ]
        assert all(r.n_transfers > 0 for r in runs)
        report = verify(session)
        assert report.ok and report.checked == sum(r.n_transfers for r in runs)
        for period in ("2026-11", "2026-12"):
            rec = reconcile(session, "energie-exloo", period)
            assert rec.ok, rec.problems
            by_ref = {m.member_ref: m for m in rec.members}
            assert sum(m.shared_wh for m in rec.members) > 0  # the community shared energy
            for ref in EV_OWNERS.values():
                st = session.scalars(
                    select(Statement).where(Statement.member_ref == ref, Statement.period == period)
                ).one()
                data = statement_data(session, st.id)
                assert (
                    data.total.net_cents == by_ref[ref].ledger_cents == by_ref[ref].statement_cents
                )
        # EV owners lent their cars: over the week some EV discharge reached the building
        discharge = session.scalar(
            select(func.sum(MemberDay.discharge_wh)).where(
                MemberDay.member_ref.in_(list(EV_OWNERS.values()))
            )
        )
        assert discharge > 0
        numbers = sorted(session.scalars(select(Statement.number)))
        assert numbers == [f"NB-2026-{k:06d}" for k in range(1, 11)]  # gap-free, 5 per month
    notes = "\n".join(demo.notes)
    assert "energie-exloo 2026-11 posted" in notes and "energie-exloo 2026-12 posted" in notes
    assert re.search(r"statements for lid-1/lid-2/lid-3 at lid-1 /statements/\d+", notes)


def test_demo_statement_lists_only_days_with_meter_data(demo: DemoContext) -> None:
    with demo.sessions() as session:
        st = session.scalars(
            select(Statement).where(
                Statement.member_ref == "m-4c1e7a", Statement.period == "2026-11"
            )
        ).one()
        data = statement_data(session, st.id)
        # 26-30 November have readings; 1 November holds the month's fee, pro rata to the
        # 5 covered days of 30: 150 cents * 5 / 30 = 25 cents
        assert [d.day.day for d in data.days] == [1, 26, 27, 28, 29, 30]
        assert (data.days_with_data, data.period_days, data.partial) == (5, 30, True)
        assert data.total.fee_cents == 25
        run = session.get(SettlementRun, st.run_id)
        assert (run.coverage_days, run.period_days) == (5, 30)
        # Anna's car charges behind the dorpshuis connection, from the roof behind it: no tax
        assert data.total.received_wh > 0 and data.total.energy_tax_cents == 0
        html = render_html(session, st.id)
        assert 'id="days-with-data">5 / 30<' in html
        assert "Dagen zonder meterdata tellen als 0 kWh" in html


def _login(client: TestClient, username: str) -> None:
    password = next(lg.password for lg in LOGINS if lg.username == username)
    resp = client.post(
        "/login", data={"username": username, "password": password}, follow_redirects=False
    )
    assert resp.status_code == 303 and resp.headers["location"] == "/"


def test_member_lands_on_their_own_statements(demo: DemoContext) -> None:
    with demo.sessions() as session:
        ids = {
            ref: sorted(session.scalars(select(Statement.id).where(Statement.member_ref == ref)))
            for ref in ("m-dorpshuis", "m-zon-coop", *EV_OWNERS.values())
        }
    app = create_app(demo.settings, demo.engine)
    with TestClient(app) as client:
        _login(client, "lid-1")
        home = client.get("/")
        assert home.status_code == 200
        links = set(map(int, re.findall(r'href="/statements/(\d+)"', home.text)))
        assert links == set(ids["m-4c1e7a"]) and len(links) == 2  # November and December
        assert "Mijn afrekeningen" in home.text
        for other in ("m-9b2d05", "m-e83f61", "m-dorpshuis"):
            assert not links & set(ids[other])
        page = client.get(f"/statements/{ids['m-4c1e7a'][0]}")
        assert page.status_code == 200 and "Anna Bakker" in page.text
        assert client.get(f"/statements/{ids['m-9b2d05'][0]}").status_code == 404
    with TestClient(app) as client:
        _login(client, "operator")
        home = client.get("/?lang=en")
        links = set(map(int, re.findall(r'href="/statements/(\d+)"', home.text)))
        assert links == {i for v in ids.values() for i in v}
        assert "m-9b2d05" in home.text  # the operator sees whose statement it is


@pytest.mark.browser
def test_anna_finds_her_statement_in_chromium(demo: DemoContext) -> None:
    """Headless Debian Chromium: anna signs in, follows the link on her start page to her
    November statement; jan's statements are not on her page. No request leaves 127.0.0.1."""
    with demo.sessions() as session:
        jan = list(
            session.scalars(select(Statement.number).where(Statement.member_ref == "m-9b2d05"))
        )
        anna_nov = session.scalars(
            select(Statement).where(
                Statement.member_ref == "m-4c1e7a", Statement.period == "2026-11"
            )
        ).one()
        anna_net = statement_data(session, anna_nov.id).total.net_cents
    with (
        live_server(create_app(demo.settings, demo.engine)) as base,
        loopback_page() as (
            page,
            outside,
        ),
    ):
        page.goto(f"{base}/")
        page.fill("#username", "lid-1")
        page.fill("#password", "noaber-lid-1")
        page.click("#login-submit")
        page.wait_for_selector("#statements")
        listed = page.locator("#statements a[href^='/statements/']").all_inner_texts()
        assert anna_nov.number in listed
        assert not set(jan) & set(listed)
        page.click(f"text={anna_nov.number}")
        page.wait_for_url(f"**/statements/{anna_nov.id}")
        assert "Anna Bakker" in page.inner_text("body")
        assert page.inner_text("#net").strip() == fast_money(abs(anna_net))
        assert page.inner_text("#days-with-data").strip() == "5 / 30"
    assert not outside, f"the pages tried to reach the internet: {outside}"


# ----------------------------------------------------------------- partial months


def _partial_store(session) -> dict[str, int]:
    """The demo site with readings on 10-12 November 2026 only; ev-3 has none at all,
    and ev-2 reads 0 Wh on those days."""
    text = (resources.files("noaber.services.demo") / "data" / "demo_site.yaml").read_text(
        encoding="utf-8"
    )
    channels = import_site(session, load_site_text(text, "demo_site.yaml"), "demo").channel_ids
    isps = pd.date_range(
        "2026-11-10", "2026-11-13", freq="15min", tz="Europe/Amsterdam", inclusive="left"
    )
    hour = np.asarray(isps.hour)
    day = (hour >= 10) & (hour < 15)
    energy = {
        "pv": np.where(day, -2000.0, 0.0),
        "building": np.full(len(isps), 400.0),
        "battery": np.zeros(len(isps)),
        "ev-1": np.where(day, 1000.0, np.where(hour >= 19, -300.0, 0.0)),
        "ev-2": np.zeros(len(isps)),
    }
    for asset, wh in energy.items():
        frame = pd.DataFrame(
            {"energy_wh": wh, "sample_count": 15, "coverage": 1.0}, index=isps.tz_convert("UTC")
        )
        upsert_readings(session, channels[f"{DEMO_SITE}/{asset}/power"], frame)
    return channels


def test_partial_month_is_settled_exactly(sessions) -> None:
    community = demo_community()
    isps = period_isps("2026-11")
    with sessions() as session, session.begin():
        channels = _partial_store(session)
    with sessions() as session:
        data = read_meter_store(session, community, isps)
    refs = list(community.refs)
    local_day = np.asarray(isps.tz_convert("Europe/Amsterdam").day)
    with_data = (local_day >= 10) & (local_day <= 12)
    assert data.measured is not None and data.measured.shape == (len(isps), len(refs))
    for ref in ("m-zon-coop", "m-dorpshuis", "m-4c1e7a", "m-9b2d05"):
        np.testing.assert_array_equal(data.measured[:, refs.index(ref)], with_data)
    assert not data.measured[:, refs.index("m-e83f61")].any()  # no readings at all
    assert not data.offtake_wh[~with_data].any() and not data.injection_wh[~with_data].any()

    plan = plan_energy(community, "2026-11", data, load_tariff())
    result = post_run(sessions, plan)
    assert result.created and result.status == "posted" and len(result.statements) == 5
    with sessions() as session:
        assert verify(session).ok
        assert reconcile(session, "energie-exloo", "2026-11").ok
        member_days = session.scalars(
            select(MemberDay).where(MemberDay.run_id == result.run_id)
        ).all()
        assert {(md.member_ref, md.day.day) for md in member_days} == {
            (ref, d) for ref in refs if ref != "m-e83f61" for d in (10, 11, 12)
        }
        anna = statement_data(
            session,
            session.scalars(select(Statement.id).where(Statement.member_ref == "m-4c1e7a")).one(),
        )
        assert [d.day.day for d in anna.days] == [1, 10, 11, 12]  # the fee, then the data
        assert anna.total.received_wh > 0 and anna.days_with_data == 3 and anna.partial
        fatima = statement_data(
            session,
            session.scalars(select(Statement.id).where(Statement.member_ref == "m-e83f61")).one(),
        )
        # the fee only, pro rata to the 3 covered days of 30: 150 * 3 / 30 = 15 cents
        assert fatima.days_with_data == 0 and fatima.total.net_cents == -15
        assert [d.day.day for d in fatima.days] == [1]
        run = session.get(SettlementRun, result.run_id)
        assert (run.coverage_days, run.period_days) == (3, 30)

    # A 0-Wh reading for a gap is new data: a new data version, and the day then counts as
    # covered: no energy changes, but the fee of every member is now 150 * 4 / 30 = 20 cents
    # (a reversal and a new fee each, and a correction statement each).
    gap = pd.DatetimeIndex([pd.Timestamp("2026-11-20 12:00", tz="Europe/Amsterdam")]).tz_convert(
        "UTC"
    )
    with sessions() as session, session.begin():
        upsert_readings(
            session,
            channels[f"{DEMO_SITE}/ev-3/power"],
            pd.DataFrame({"energy_wh": [0.0], "sample_count": 15, "coverage": 1.0}, index=gap),
        )
    with sessions() as session:
        again = plan_energy(
            community, "2026-11", read_meter_store(session, community, isps), load_tariff()
        )
    assert again.data_version != plan.data_version
    second = post_run(sessions, again)
    assert second.created and (second.coverage_days, second.period_days) == (4, 30)
    assert second.n_transfers == 10 and second.n_reversals == 5 and len(second.statements) == 5
    with sessions() as session:
        fees = {
            t.member_ref: t.amount
            for t in ledger.effective_transfers(session, "energie-exloo", "2026-11")
            if t.code == "fee"
        }
        assert fees == dict.fromkeys(refs, 20)
        assert session.scalars(
            select(MemberDay.day).where(
                MemberDay.run_id == second.run_id, MemberDay.member_ref == "m-e83f61"
            )
        ).all() == [dt.date(2026, 11, 20)]
        assert reconcile(session, "energie-exloo", "2026-11").ok


def test_energy_in_an_unmeasured_isp_is_refused() -> None:
    community = demo_community()
    isps = period_isps("2026-11")
    shape = (len(isps), len(community.members))
    off = np.zeros(shape, dtype=np.int64)
    off[5, 1] = 100
    measured = np.zeros(shape, dtype=bool)
    data = MeterData(isps, community.refs, off, np.zeros(shape, dtype=np.int64), measured)
    with pytest.raises(ValidationError, match="marked as not measured"):
        plan_energy(community, "2026-11", data, load_tariff())
    # without `measured` (CSV data) every ISP counts: every member-day is stored as before
    plan = plan_energy(
        community, "2026-11", MeterData(isps, community.refs, off, off * 0), load_tariff()
    )
    assert plan.measured_day is None


def test_a_month_without_tariff_is_noted_not_settled(demo_copy: DemoContext) -> None:
    # the shipped tariff ends on 1 January 2027; a demo built then says so and goes on
    later = dataclasses.replace(
        demo_copy,
        start=dt.datetime(2027, 1, 3, 23, tzinfo=dt.UTC),
        end=dt.datetime(2027, 1, 5, 23, tzinfo=dt.UTC),
        notes=[],
    )
    demo_step(later)
    assert later.notes == [
        "settlement: energie-exloo 2027-01 not settled: no tariff version of "
        "'noaber-default-2026' covers 2027-01-01"
    ]
    with demo_copy.sessions() as session:
        assert session.scalar(select(func.count(SettlementRun.id))) == 2  # nothing posted
