"""Runs compare with the ledger (issue 13, point 2), on SQLite and PostgreSQL.

Each test checks the ledger against a second method: the same data settled from scratch in a
fresh database, in the natural order (so no correction or re-pricing is involved there), or
amounts worked out by hand.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from sqlalchemy import insert, select

from energy.db import Base, make_engine, session_factory
from energy.errors import NoaberError, ValidationError
from settlement import ledger
from settlement.community import MeterData, read_meter_csv
from settlement.models import ChainHead, MemberDay, SettlementRun, Statement
from settlement.pricing import Tariff, load_tariff, parse_tariff
from settlement.proof import RECORDS_HEAD
from settlement.settle import (
    EnergyPlan,
    period_isps,
    plan_energy,
    post_pending,
    post_run,
    void_pending,
)
from tests.settlement.conftest import community, make_plan, meter_data

Held = dict[tuple[str, str, str, str], int]


def held(sessions, period: str = "2026-10") -> Held:
    """What counts in the ledger for a period: (ledger, code, day, member) -> signed amount."""
    from settlement.settle import _signed

    with sessions() as s:
        return {
            (t.ledger, t.code, t.day.isoformat(), str(t.member_ref)): _signed(t, "dorp-test")
            for t in ledger.effective_transfers(s, "dorp-test", period)
        }


def fresh(*plans: EnergyPlan) -> Callable[[str], Held]:
    """Settle ``plans`` in order in a new SQLite database; returns a reader of its ledger.

    The tables come from the models (``create_all``, much faster than the migrations; the
    migrations are checked against the models in ``tests/energy/test_migrations.py``)."""
    eng = make_engine("sqlite://")
    Base.metadata.create_all(eng)
    with eng.begin() as conn:
        # the transfers' chain (1) and the sealed records' chain (2), as the migrations seed
        for head in (1, RECORDS_HEAD):
            conn.execute(
                insert(ChainHead).values(id=head, last_seq=0, last_hash=ledger.GENESIS_HASH)
            )
    sessions = session_factory(eng)
    for p in plans:
        post_run(sessions, p)
    return lambda period: held(sessions, period)


def data_b() -> MeterData:
    d = meter_data()
    off = d.offtake_wh.copy()
    off[1000:1100, 1] += 300  # the DSO corrects the dorpshuis' offtake on two days
    return MeterData(d.isps, d.members, off, d.injection_wh)


def test_a_then_b_then_a_ends_with_a(sessions):
    first = post_run(sessions, make_plan())
    held_a = held(sessions)
    second = post_run(sessions, make_plan(data=data_b()))
    assert second.created and second.n_reversals > 0
    assert held(sessions) == fresh(make_plan(data=data_b()))("2026-10") != held_a
    third = post_run(sessions, make_plan())
    assert third.created and third.run_id not in (first.run_id, second.run_id)
    assert third.n_reversals == second.n_transfers - second.n_reversals  # undoes B exactly
    a = held(sessions)
    assert a == held_a == fresh(make_plan())("2026-10")
    # A once more: the ledger holds it, nothing is posted
    fourth = post_run(sessions, make_plan())
    assert not fourth.created and fourth.run_id == third.run_id
    with sessions() as s:
        assert ledger.verify(s).ok
        kinds = [st.kind for st in s.scalars(select(Statement).order_by(Statement.id))]
        assert kinds.count("statement") == 4 and kinds.count("correction") >= 2
        versions = [r.data_version for r in s.scalars(select(SettlementRun).order_by("id"))]
        assert versions[0] == versions[2] != versions[1]  # one data version, two runs


def _band_tariff(threshold_kwh: int) -> Tariff:
    """A tariff whose first energy-tax band ends at ``threshold_kwh`` (cheaper above)."""
    return parse_tariff(
        {
            "name": "band-test",
            "versions": [
                {
                    "valid_from": "2026-01-01",
                    "valid_to": "2027-01-01",
                    "shared_price": {"type": "fixed", "price_eur_per_kwh": "0.15"},
                    "energy_tax_bands": [
                        {"up_to_kwh": threshold_kwh, "eur_per_kwh": "0.09160"},
                        {"up_to_kwh": None, "eur_per_kwh": "0.03943"},
                    ],
                    "vat_pct": "21",
                    "fixed_fee_eur_per_month": "1.50",
                }
            ],
        }
    )


def test_earlier_month_band_correction_reprices_later_months(sessions):
    """October is corrected after November was settled: the dorpshuis crosses the band
    earlier in November, so November's energy tax and VAT are re-priced in the same run."""
    c = community()
    dh = c.refs.index("m-dh01")
    oct_plan = make_plan()
    nov_data = meter_data("2026-11", seed=2)
    # the band ends halfway through the dorpshuis' November, counted from its October
    oct_kwh = int(oct_plan.taxed_day[:, dh].sum()) // 1000
    nov_kwh = int(make_plan("2026-11", nov_data).taxed_day[:, dh].sum()) // 1000
    tariff = _band_tariff(oct_kwh + nov_kwh // 2)
    post_run(sessions, plan_energy(c, "2026-10", meter_data(), tariff))
    post_run(sessions, plan_energy(c, "2026-11", nov_data, tariff))
    nov_before = held(sessions, "2026-11")

    d = meter_data()
    off = d.offtake_wh.copy()
    off[:, dh] += 150  # the DSO corrects October: 150 Wh more every ISP
    corrected = plan_energy(c, "2026-10", MeterData(d.isps, d.members, off, d.injection_wh), tariff)
    assert int(corrected.taxed_day[:, dh].sum()) > int(oct_plan.taxed_day[:, dh].sum()) + 100_000
    res = post_run(sessions, corrected)
    assert list(res.repriced) == ["2026-11"]
    nov_after = held(sessions, "2026-11")
    expect = fresh(corrected, plan_energy(c, "2026-11", nov_data, tariff))
    assert nov_after == expect("2026-11") and held(sessions, "2026-10") == expect("2026-10")
    changed = {k for k in set(nov_before) | set(nov_after) if nov_before.get(k) != nov_after.get(k)}
    assert changed and {k[1] for k in changed} <= {"energy_tax", "vat"}
    tax = sum(v for k, v in nov_after.items() if k[1] == "energy_tax" and k[3] == "m-dh01")
    assert tax < sum(v for k, v in nov_before.items() if k[1] == "energy_tax" and k[3] == "m-dh01")
    with sessions() as s:
        rerun = s.get(SettlementRun, res.repriced["2026-11"])
        assert rerun.kind == "reprice" and rerun.period == "2026-11"
        assert {
            st.kind for st in s.scalars(select(Statement).where(Statement.run_id == rerun.id))
        } == {"correction"}
        assert ledger.verify(s).ok
    # November's data run again: its re-priced ledger is what they say, nothing is posted
    again = post_run(sessions, plan_energy(c, "2026-11", nov_data, tariff))
    assert not again.created and again.run_id == res.repriced["2026-11"]


def test_voided_provisional_run_never_blocks_its_data(sessions):
    prov = post_run(sessions, make_plan(), provisional=True)
    void_pending(sessions, prov.run_id)
    # the same data, provisional again: a new pending run
    again = post_run(sessions, make_plan(), provisional=True)
    assert again.created and again.status == "pending" and again.run_id != prov.run_id
    void_pending(sessions, again.run_id)
    # and as a final run: everything is posted, as in a fresh ledger
    final = post_run(sessions, make_plan())
    assert final.created and final.status == "posted" and len(final.statements) == 4
    assert held(sessions) == fresh(make_plan())("2026-10")
    with sessions() as s:
        assert ledger.verify(s).ok


def test_posting_a_provisional_run_priced_on_an_old_band_is_refused(sqlite_sessions):
    sessions = sqlite_sessions
    post_run(sessions, make_plan("2026-11", meter_data("2026-11")), provisional=True)
    post_run(sessions, make_plan())  # October arrives: November's band changes
    with sessions() as s:
        pending = s.scalars(select(SettlementRun).where(SettlementRun.status == "pending")).one()
    with pytest.raises(NoaberError, match="void it and run the period again"):
        post_pending(sessions, pending.id)


def _one_day_csv() -> str:
    """Meter data of 3 October 2026 only (long form, local time)."""
    d = meter_data()
    isps = d.isps
    local = isps.tz_convert("Europe/Amsterdam")
    meters = ("PV", "DH", "EV", "CL")
    lines = ["timestamp,meter,direction,energy_wh"]
    for t in np.flatnonzero(np.asarray(local.day) == 3):
        for i, meter in enumerate(meters):
            for direction, arr in (("offtake", d.offtake_wh), ("injection", d.injection_wh)):
                if arr[t, i]:
                    lines.append(f"{local[t].isoformat()},{meter},{direction},{arr[t, i]}")
    return "\n".join(lines) + "\n"


def test_partial_month_is_settled_pro_rata_to_the_days_covered(sessions):
    c = community()
    data = read_meter_csv(io.StringIO(_one_day_csv()), c, period_isps("2026-10"))
    plan = plan_energy(c, "2026-10", data, load_tariff())
    assert (plan.coverage_days, plan.period_days) == (1, 31)
    res = post_run(sessions, plan)
    assert (res.coverage_days, res.period_days) == (1, 31)
    h = held(sessions)
    # the fee: 150 cents * 1 / 31 = 4.84 -> 5 cents, for each of the 4 members
    assert {k[3]: v for k, v in h.items() if k[1] == "fee"} == dict.fromkeys(c.refs, 5)
    assert {k[2] for k in h if k[1] != "fee"} == {"2026-10-03"}
    with sessions() as s:
        run = s.get(SettlementRun, res.run_id)
        assert (run.coverage_days, run.period_days) == (1, 31)
        days = set(s.scalars(select(MemberDay.day).where(MemberDay.run_id == res.run_id)))
        assert [d.isoformat() for d in days] == ["2026-10-03"]
    # the whole month arrives later: the fee becomes the full 150 cents, the days are added
    full = post_run(sessions, make_plan())
    assert (full.coverage_days, full.period_days) == (31, 31)
    assert held(sessions) == fresh(make_plan())("2026-10")


def test_a_period_without_meter_data_is_refused():
    c = community()
    empty = read_meter_csv(
        io.StringIO(
            "timestamp,meter,direction,energy_wh\n2026-11-01T00:00:00+01:00,DH,offtake,5\n"
        ),
        c,
        period_isps("2026-11"),
    )
    shape = empty.offtake_wh.shape
    none = MeterData(
        empty.isps,
        empty.members,
        np.zeros(shape, np.int64),
        np.zeros(shape, np.int64),
        np.zeros(shape, bool),
    )
    with pytest.raises(ValidationError, match="no reading in 2026-11"):
        plan_energy(c, "2026-11", none, load_tariff())
    # the one-ISP file covers one day: settled, with the fee for one day of 30
    plan = plan_energy(c, "2026-11", empty, load_tariff())
    assert (plan.coverage_days, plan.period_days) == (1, 30)


def test_posting_a_provisional_earlier_month_reprices_the_later_one(sqlite_sessions):
    """October arrives provisional after November was settled: nothing changes until it is
    posted; then November is re-priced, as if both had been settled in order."""
    c = community()
    dh = c.refs.index("m-dh01")
    nov_data = meter_data("2026-11", seed=2)
    oct_kwh = int(make_plan().taxed_day[:, dh].sum()) // 1000
    nov_kwh = int(make_plan("2026-11", nov_data).taxed_day[:, dh].sum()) // 1000
    tariff = _band_tariff(nov_kwh // 2 + oct_kwh // 3)
    oct_plan = plan_energy(c, "2026-10", meter_data(), tariff)
    nov_plan = plan_energy(c, "2026-11", nov_data, tariff)
    post_run(sqlite_sessions, nov_plan)
    nov_alone = held(sqlite_sessions, "2026-11")
    prov = post_run(sqlite_sessions, oct_plan, provisional=True)
    assert held(sqlite_sessions, "2026-11") == nov_alone and not prov.repriced
    posted = post_pending(sqlite_sessions, prov.run_id)
    assert list(posted.repriced) == ["2026-11"]
    expect = fresh(oct_plan, nov_plan)
    assert held(sqlite_sessions, "2026-11") == expect("2026-11") != nov_alone
    assert held(sqlite_sessions, "2026-10") == expect("2026-10")
