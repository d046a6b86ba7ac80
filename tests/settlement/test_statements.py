"""Statements: totals equal ledger balances, corrections reference the original, HTML in
Dutch and English, CSV, and PDF by headless Chromium."""

from __future__ import annotations

import csv
import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from energy.db import make_engine, session_factory, upgrade
from settlement import ledger
from settlement.audit import reconcile
from settlement.community import MeterData
from settlement.models import Statement
from settlement.settle import post_run
from settlement.statements import (
    CSV_COLUMNS,
    find_statement,
    render_csv,
    render_html,
    render_pdf,
    statement_data,
)
from tests.conftest import need
from tests.settlement.conftest import make_plan, meter_data


def test_statement_totals_equal_ledger_balances(sessions):
    post_run(sessions, make_plan())
    with sessions() as s:
        report = reconcile(s, "dorp-test", "2026-10")
        assert report.ok, report.problems
        for st_row in s.scalars(select(Statement)):
            data = statement_data(s, st_row.id)
            acc = ledger.member_account(st_row.member_ref)
            assert data.total.net_cents == ledger.balances(s, "cents", [acc])[acc]
            wh = ledger.balances(s, "wh", [acc])[acc]
            assert data.total.received_wh - data.total.delivered_wh == wh
            assert len(data.days) == 31


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10_000), scale=st.integers(1, 4))
def test_property_statements_reconcile_with_the_ledger(tmp_path_factory, seed, scale):
    eng = make_engine(f"sqlite:///{tmp_path_factory.mktemp('db') / 'p.db'}")
    upgrade(eng)
    sessions = session_factory(eng)
    d = meter_data(seed=seed)
    data = MeterData(d.isps, d.members, d.offtake_wh * scale, d.injection_wh * scale)
    post_run(sessions, make_plan(data=data))
    with sessions() as s:
        assert ledger.verify(s).ok
        report = reconcile(s, "dorp-test", "2026-10")
        assert report.ok, report.problems
        cents = ledger.balances(s, "cents")
        wh = ledger.balances(s, "wh")
        assert sum(cents.values()) == 0 and sum(wh.values()) == 0  # debits equal credits in total
        statement_total = sum(m.statement_cents or 0 for m in report.members)
        members = sum(v for k, v in cents.items() if k.startswith("member:"))
        assert statement_total == members
    eng.dispose()


def test_correction_statement_references_the_original(sqlite_sessions):
    post_run(sqlite_sessions, make_plan())
    d = meter_data()
    inj = d.injection_wh.copy()
    inj[1200, 2] += 1000  # one ISP of the EV's discharge corrected
    post_run(sqlite_sessions, make_plan(data=MeterData(d.isps, d.members, d.offtake_wh, inj)))
    with sqlite_sessions() as s:
        st = find_statement(s, "m-ev01", "2026-10")
        assert st.kind == "correction"
        data = statement_data(s, st.id)
        assert data.corrects is not None and data.corrects.member_ref == "m-ev01"
        assert data.difference is not None and data.difference.net_cents != 0
        html = render_html(s, st.id)
        assert "Correctie-afrekening" in html and data.corrects.number in html
        assert reconcile(s, "dorp-test", "2026-10").ok


def test_html_in_dutch_and_english_with_the_members_name(sqlite_sessions):
    post_run(sqlite_sessions, make_plan())
    with sqlite_sessions() as s:
        st = find_statement(s, "m-ev01", "2026-10")
        nl = render_html(s, st.id)
        en = render_html(s, st.id, "en")
    assert 'lang="nl"' in nl and "Afrekening" in nl and "Groen aandeel" in nl and "ev-jansen" in nl
    assert 'lang="en"' in en and "Statement" in en and "Green share" in en
    assert "€" in nl and "kWh" in nl


def test_csv_has_a_row_per_day_and_a_total(sqlite_sessions):
    post_run(sqlite_sessions, make_plan())
    with sqlite_sessions() as s:
        st = find_statement(s, "m-dh01", "2026-10")
        text = render_csv(s, st.id)
        data = statement_data(s, st.id)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert len(rows) == 32 and rows[-1]["date"] == "total"
    assert (
        sum(int(r["net_cents"]) for r in rows[:-1])
        == int(rows[-1]["net_cents"])
        == data.total.net_cents
    )
    assert np.sum([int(r["received_wh"]) for r in rows[:-1]]) == data.total.received_wh


def test_pdf_by_headless_chromium(tmp_path, sqlite_sessions):
    from energy.pdf import chromium_available

    need(chromium_available(), "Chromium (/usr/bin/chromium) and playwright are needed for PDF")
    post_run(sqlite_sessions, make_plan())
    with sqlite_sessions() as s:
        st = find_statement(s, "m-ev01", "2026-10")
        out = render_pdf(s, st.id, tmp_path / "st.pdf")
    data = out.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 5000


def test_fast_formatting_equals_babel():
    from energy.i18n import format_kwh, format_money_cents
    from settlement.statements import fast_kwh, fast_money

    rng = np.random.default_rng(3)
    values = [
        0,
        1,
        -1,
        5,
        -5,
        49,
        50,
        51,
        150,
        250,
        -1250,
        -500,
        1500,
        2500,
        -2500,
        999_999,
        1_000_000,
        123_456_789,
        -123_456_789,
    ]
    values += [int(v) for v in rng.integers(-(10**9), 10**9, 300)]
    for locale in ("nl", "en"):
        for v in values:
            assert fast_money(v, locale) == format_money_cents(v, locale), (v, locale)
            for d in (0, 1, 3, 4):  # the statement uses 1 and 3; 4 takes the Decimal path
                assert fast_kwh(v, d, locale) == format_kwh(v, d, locale), (v, d, locale)


def test_fast_number_and_pct_equal_babel():
    from decimal import Decimal

    from energy.i18n import format_number, format_pct
    from settlement.statements import fast_number, fast_pct

    rng = np.random.default_rng(5)
    prices = [Decimal("0.12345"), Decimal("0.12335"), Decimal("-0.00004"), Decimal("0.00005")]
    prices += [Decimal("1234.56785"), Decimal(0), Decimal("-0"), Decimal("-12.5"), 7, -3, None]
    prices += [Decimal(int(v)).scaleb(-6) for v in rng.integers(-(10**9), 10**9, 300)]
    shares = [0.0, 1.0, 0.125, 0.1235, 0.9995, 0.0004999, 1 / 3, 2 / 3, None]
    shares += [float(v) for v in rng.random(300)]
    for locale in ("nl", "en"):
        for p in prices:
            for d in (0, 2, 4):
                assert fast_number(p, d, locale) == format_number(p, d, locale), (p, d, locale)
        for share in shares:
            for d in (0, 1):
                assert fast_pct(share, d, locale) == format_pct(share, d, locale), (share, d)


def test_period_statements_read_in_bulk_equal_one_at_a_time(sqlite_sessions):
    from settlement.statements import period_statements, render_period_html

    post_run(sqlite_sessions, make_plan())
    d = meter_data()
    inj = d.injection_wh.copy()
    inj[1200, 2] += 1000
    post_run(sqlite_sessions, make_plan(data=MeterData(d.isps, d.members, d.offtake_wh, inj)))
    with sqlite_sessions() as s:
        bulk = period_statements(s, "dorp-test", "2026-10")
        assert len(bulk) > 4 and any(b.corrects is not None for b in bulk)
        for b in bulk:
            one = statement_data(s, b.statement.id)
            assert (b.days, b.total, b.previous_total, b.ledger_balance_cents) == (
                one.days,
                one.total,
                one.previous_total,
                one.ledger_balance_cents,
            )
            assert (b.merkle_root, b.days_with_data, b.building) == (
                one.merkle_root,
                one.days_with_data,
                one.building,
            )
        pages = dict(render_period_html(s, "dorp-test", "2026-10"))
        for st_row, html in pages.items():
            assert html == render_html(s, st_row.id)
