"""Pricing: exact integer money, rounding stated once, tariff versions and tax bands."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from energy.errors import ValidationError
from settlement.pricing import (
    TaxBand,
    energy_tax_nc,
    energy_tax_nc_columns,
    load_tariff,
    nc_per_wh,
    parse_tariff,
    round_nc,
    shared_price_nc,
)
from settlement.settle import post_run
from tests.settlement.conftest import community, meter_data


def test_shipped_tariff_2026():
    t = load_tariff()
    v = t.version_for_day(dt.date(2026, 10, 1))
    assert v.energy_tax_bands[0] == TaxBand(10000, Decimal("0.09160"))
    assert v.vat_pct == Decimal("21")
    with pytest.raises(ValidationError, match="no tariff version"):
        t.version_for_day(dt.date(2027, 1, 1))


def test_prices_are_exact_integers():
    assert nc_per_wh(Decimal("0.15")) == 15_000_000  # 15 ct/kWh = 0.015 ct/Wh = 15e6 nc/Wh
    with pytest.raises(ValidationError, match="8 decimals"):
        nc_per_wh(Decimal("0.123456789"))
    # half to even at exactly half a cent
    assert round_nc(
        np.array([500_000_000, 1_500_000_000, 1_500_000_001, 2_499_999_999])
    ).tolist() == [0, 2, 2, 2]


def test_energy_tax_crosses_a_band_within_a_day():
    bands = (TaxBand(10000, Decimal("0.09160")), TaxBand(None, Decimal("0.09037")))
    # 9,999.5 kWh before; 1 kWh today: 0.5 kWh at band 1 + 0.5 kWh at band 2
    nc = energy_tax_nc(np.array([1000]), 9_999_500, bands)
    assert nc.tolist() == [500 * 9_160_000 + 500 * 9_037_000]


def _tariff(**price):
    return parse_tariff(
        {
            "name": "t",
            "versions": [
                {
                    "valid_from": "2026-01-01",
                    "valid_to": "2027-01-01",
                    "shared_price": price,
                    "energy_tax_bands": [{"up_to_kwh": None, "eur_per_kwh": "0.1"}],
                }
            ],
        }
    )


def test_time_of_use_by_local_time():
    t = _tariff(
        type="time_of_use",
        default_eur_per_kwh="0.10",
        periods=[
            {"from": "17:00", "to": "21:00", "price_eur_per_kwh": "0.25"},
            {"from": "23:00", "to": "06:00", "price_eur_per_kwh": "0.05"},
        ],
    )
    isps = pd.DatetimeIndex(
        ["2026-10-01T15:00Z", "2026-10-01T16:45Z", "2026-10-01T22:00Z", "2026-10-01T10:00Z"]
    ).as_unit("ns")
    # local (CEST, +2): 17:00, 18:45, 00:00, 12:00
    assert shared_price_nc(t.versions[0], isps).tolist() == [
        25_000_000,
        25_000_000,
        5_000_000,
        10_000_000,
    ]


def test_indexed_price_with_floor_and_cap():
    t = _tariff(
        type="indexed",
        multiplier="1",
        markup_eur_per_kwh="0.02",
        floor_eur_per_kwh="0",
        cap_eur_per_kwh="0.30",
    )
    isps = pd.date_range("2026-10-01", periods=3, freq="15min", tz="UTC").as_unit("ns")
    out = shared_price_nc(t.versions[0], isps, np.array([-0.1, 0.1, 0.5]))
    assert out.tolist() == [0, 12_000_000, 30_000_000]
    with pytest.raises(ValidationError, match="day-ahead"):
        shared_price_nc(t.versions[0], isps)


def test_bad_tariff_is_named():
    with pytest.raises(ValidationError, match="overlap"):
        parse_tariff(
            {
                "versions": [
                    {
                        "valid_from": "2026-01-01",
                        "valid_to": "2026-12-01",
                        "shared_price": {"type": "fixed", "price_eur_per_kwh": "0.1"},
                        "energy_tax_bands": [{"up_to_kwh": None, "eur_per_kwh": "0.1"}],
                    },
                    {
                        "valid_from": "2026-11-01",
                        "valid_to": "2027-01-01",
                        "shared_price": {"type": "fixed", "price_eur_per_kwh": "0.1"},
                        "energy_tax_bands": [{"up_to_kwh": None, "eur_per_kwh": "0.1"}],
                    },
                ]
            }
        )


def test_correction_is_priced_at_the_tariff_of_the_interval(sqlite_sessions, tmp_path):
    """October is corrected after the November price rise: October stays at October's price."""
    from settlement.ledger import effective_transfers
    from settlement.settle import plan_energy

    def version(start, end, price):
        return {
            "valid_from": start,
            "valid_to": end,
            "shared_price": {"type": "fixed", "price_eur_per_kwh": price},
            "energy_tax_bands": [{"up_to_kwh": None, "eur_per_kwh": "0.09160"}],
            "vat_pct": "21",
        }

    tariff = parse_tariff(
        {
            "name": "rise",
            "versions": [
                version("2026-01-01", "2026-11-01", "0.10"),
                version("2026-11-01", "2027-01-01", "0.30"),
            ],
        }
    )
    c = community()
    post_run(sqlite_sessions, plan_energy(c, "2026-10", meter_data(), tariff))
    post_run(sqlite_sessions, plan_energy(c, "2026-11", meter_data("2026-11"), tariff))
    d = meter_data()
    off = d.offtake_wh.copy()
    off[:, 1] += 50  # the DSO corrects the dorpshuis' October offtake
    plan = plan_energy(c, "2026-10", type(d)(d.isps, d.members, off, d.injection_wh), tariff)
    post_run(sqlite_sessions, plan)
    with sqlite_sessions() as s:
        eff = effective_transfers(s, "dorp-test", "2026-10")
    wh = {(t.day, t.member_ref): t.amount for t in eff if t.ledger == "wh" and t.code == "shared"}
    cents = {
        (t.day, t.member_ref): t.amount for t in eff if t.ledger == "cents" and t.code == "shared"
    }
    total_wh = sum(v for k, v in wh.items())
    total_cents = sum(v for k, v in cents.items())
    assert total_cents == pytest.approx(
        total_wh * 0.010, abs=len(plan.days)
    )  # 10 ct/kWh = 0.010 ct/Wh


def test_day_ahead_csv(tmp_path):
    from settlement.pricing import read_day_ahead_csv

    isps = pd.date_range("2026-10-01T00:00Z", periods=4, freq="15min").as_unit("ns")
    good = tmp_path / "da.csv"
    good.write_text(
        "timestamp,price_eur_per_kwh\n"
        + "".join(f"{t.isoformat()},{0.1 * k:.2f}\n" for k, t in enumerate(isps))
    )
    assert read_day_ahead_csv(good, isps).tolist() == [0.0, 0.1, 0.2, 0.3]
    short = tmp_path / "short.csv"
    short.write_text("timestamp,price_eur_per_kwh\n" + f"{isps[0].isoformat()},0.1\n")
    with pytest.raises(ValidationError, match="no day-ahead price for 2026-10-01T00:15"):
        read_day_ahead_csv(short, isps)
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,price_eur_per_kwh\n2026-10-01T00:00:00,0.1\n")
    with pytest.raises(ValidationError, match="line 2"):
        read_day_ahead_csv(bad, isps)


def test_negative_prices_flow_the_other_way(sqlite_sessions):
    """Indexed price with a negative floor: on sunny hours the receiver is paid for shared
    energy; statements still equal the ledger and a correction still reconciles."""
    from sqlalchemy import select

    from settlement.audit import reconcile
    from settlement.ledger import verify
    from settlement.models import Transfer
    from settlement.settle import period_isps, plan_energy
    from settlement.statements import find_statement, statement_data

    tariff = parse_tariff(
        {
            "name": "indexed",
            "versions": [
                {
                    "valid_from": "2026-01-01",
                    "valid_to": "2027-01-01",
                    "shared_price": {
                        "type": "indexed",
                        "multiplier": "1",
                        "markup_eur_per_kwh": "0.01",
                        "floor_eur_per_kwh": "-0.20",
                        "cap_eur_per_kwh": "0.50",
                    },
                    "energy_tax_bands": [{"up_to_kwh": None, "eur_per_kwh": "0.09160"}],
                    "vat_pct": "21",
                }
            ],
        }
    )
    isps = period_isps("2026-10")
    hour = np.asarray(isps.tz_convert("Europe/Amsterdam").hour)
    day_ahead = np.where((hour >= 7) & (hour < 19), -0.12, 0.09)  # negative while the sun shines
    c = community()
    post_run(sqlite_sessions, plan_energy(c, "2026-10", meter_data(), tariff, day_ahead))
    d = meter_data()
    off = d.offtake_wh.copy()
    off[1000:1010, 1] += 500
    post_run(
        sqlite_sessions,
        plan_energy(
            c, "2026-10", type(d)(d.isps, d.members, off, d.injection_wh), tariff, day_ahead
        ),
    )
    with sqlite_sessions() as s:
        assert verify(s).ok
        assert reconcile(s, "dorp-test", "2026-10").ok
        st = statement_data(s, find_statement(s, "m-dh01", "2026-10").id)
        daily = [line.shared_energy_cents for line in st.days]
        assert min(daily) < 0
        reverse = s.scalars(
            select(Transfer).where(
                Transfer.ledger == "cents",
                Transfer.code == "shared",
                Transfer.credit_account == "member:m-dh01",
            )
        ).first()
        assert reverse is not None  # a receiver paid for taking energy at a negative price


_BANDS = st.lists(
    st.tuples(st.integers(1, 60), st.decimals(Decimal("0"), Decimal("0.2"), places=5)),
    min_size=1,
    max_size=4,
).map(
    lambda raw: tuple(
        TaxBand(None if k == len(raw) - 1 else sum(w for w, _ in raw[: k + 1]), rate)
        for k, (_, rate) in enumerate(raw)
    )
)


@settings(deadline=None, max_examples=200)
@given(
    st.integers(1, 6).flatmap(
        lambda c: st.tuples(
            st.lists(
                st.lists(st.integers(0, 40_000), min_size=c, max_size=c), min_size=1, max_size=9
            ),
            st.lists(st.integers(0, 300_000), min_size=c, max_size=c),
        )
    ),
    _BANDS,
    st.booleans(),
)
def test_energy_tax_of_all_connections_at_once_is_each_connections_own(case, bands, open_top):
    """The vectorised energy tax against :func:`energy_tax_nc`, column by column, across
    band edges (bands of 1-60 kWh, so a day often crosses one or several)."""
    days, prior = case
    if not open_top:  # a last band with an upper bound: beyond it nothing is taxed
        bands = (
            *bands[:-1],
            TaxBand((bands[-2].up_to_kwh if len(bands) > 1 else 0) + 5, bands[-1].eur_per_kwh),
        )
    used = np.array(days, dtype=np.int64)
    got = energy_tax_nc_columns(used, np.array(prior), bands)
    for c in range(used.shape[1]):
        assert got[:, c].tolist() == energy_tax_nc(used[:, c], prior[c], bands).tolist()


def _tax_cents_by_day(taxed_day, connections, prior_wh, versions, tiebreak):
    """The per-day, per-connection loop ``tax_cents`` replaced (the reference)."""
    from settlement.allocation import largest_remainder

    out = np.zeros(taxed_day.shape, dtype=np.int64)
    for conn in sorted(set(connections)):
        cols = [i for i, c in enumerate(connections) if c == conn]
        day_total = taxed_day[:, cols].sum(axis=1)
        cum = int(prior_wh.get(conn, 0))
        whole = np.zeros(len(day_total), dtype=np.int64)
        for k, v in enumerate(versions):
            whole[k] = int(
                round_nc(energy_tax_nc(day_total[k : k + 1], cum, v.energy_tax_bands))[0]
            )
            cum += int(day_total[k])
        if len(cols) == 1:
            out[:, cols[0]] = whole
            continue
        part = (taxed_day[:, cols] * whole[:, None]) / np.maximum(day_total, 1)[:, None]
        out[:, cols] = largest_remainder(part, whole, tiebreak[cols])
    return out


def test_tax_cents_matches_the_day_by_day_reference():
    """Connections shared by several members, a tariff that changes its bands mid-month, and
    connections that cross the 10,000 kWh band during the month."""
    import dataclasses

    from settlement.settle import tax_cents

    base = load_tariff().version_for_day(dt.date(2026, 10, 1))
    other = dataclasses.replace(
        base, energy_tax_bands=(TaxBand(300, Decimal("0.12")), TaxBand(None, Decimal("0.05")))
    )
    rng = np.random.default_rng(7)
    taxed = rng.integers(0, 40_000, (31, 9)).astype(np.int64)
    taxed[:, 4] = 0  # a member that never receives across the grid
    conns = ["c1", "c1", "c2", "c3", "c3", "c3", "c4", "c5", "c1"]
    prior = {"c1": 9_000_000, "c2": 0, "c3": 299_000, "c5": 49_999_000}
    versions = [base] * 12 + [other] * 10 + [base] * 9
    rank = np.arange(9)
    got = tax_cents(taxed, conns, prior, versions, rank)
    assert got.tolist() == _tax_cents_by_day(taxed, conns, prior, versions, rank).tolist()
    assert got[:, 4].sum() == 0 and got.sum() > 0
