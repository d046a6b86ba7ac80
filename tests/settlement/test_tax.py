"""Energy tax where the energy crosses the public grid (issue 13, point 3), worked by hand.

A dorpshuis (connection EAN 1) has its own PV roof and its own EV charger; a member's home
(connection EAN 2) also receives from the roof. In one quarter-hour the roof injects 1000 Wh,
the dorpshuis' charger takes 600 Wh and the home 400 Wh (priority key: charger first).

By hand, tariff of 2026 (shared 0.15 EUR/kWh, energy tax 0.09160 EUR/kWh, VAT 21 %, fee
1.50 EUR/month; docs/SOURCES.md):

- the charger's 600 Wh never leave the dorpshuis' connection: no energy tax. Shared energy
  600 Wh * 0.015 ct/Wh = 9 ct; VAT 21 % of 9 ct = 1.89 -> 2 ct.
- the home's 400 Wh cross the grid into EAN 2 and are taxed there: 400 * 0.009160 ct/Wh =
  3.664 -> 4 ct; shared energy 6 ct; VAT 21 % of (6 + 4) = 2.1 -> 2 ct.
- the roof is paid 1000 Wh * 0.015 = 15 ct.
- one day of 31 has data: fee 150 * 1 / 31 = 4.84 -> 5 ct each.

Without connections (each member its own, as before) the charger would pay
600 * 0.009160 = 5.496 -> 5 ct energy tax and VAT 21 % of (9 + 5) = 2.94 -> 3 ct.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from energy.errors import ValidationError
from settlement import ledger
from settlement.community import parse_community, read_meter_csv
from settlement.pricing import load_tariff
from settlement.settle import period_isps, plan_energy, post_run, tax_cents, taxed_energy

EAN_DORPSHUIS = "871687400000000014"
EAN_HOME = "871687400000000021"


def _community(with_connections: bool = True):
    def conn(ean: str) -> dict:
        return {"connection": ean} if with_connections else {}

    return parse_community(
        {
            "name": "tax-test",
            "key": {"type": "priority", "order": ["charger", "home"]},
            "members": [
                {
                    "name": "roof",
                    "ref": "m-1a0f",
                    "meters": ["PV"],
                    "assets": ["pv"],
                    **conn(EAN_DORPSHUIS),
                },
                {"name": "charger", "ref": "m-2b1e", "meters": ["EVC"], **conn(EAN_DORPSHUIS)},
                {"name": "home", "ref": "m-3c2d", "meters": ["HOME"], **conn(EAN_HOME)},
            ],
        },
        "tax-test",
    )


CSV = (
    "timestamp,meter,direction,energy_wh\n"
    "2026-10-05T12:00:00+02:00,PV,injection,1000\n"
    "2026-10-05T12:00:00+02:00,EVC,offtake,600\n"
    "2026-10-05T12:00:00+02:00,HOME,offtake,400\n"
)


def _money(sessions, with_connections: bool) -> dict[tuple[str, str], int]:
    c = _community(with_connections)
    data = read_meter_csv(io.StringIO(CSV), c, period_isps("2026-10"))
    res = post_run(sessions, plan_energy(c, "2026-10", data, load_tariff()))
    assert res.created
    from settlement.settle import _signed

    with sessions() as s:
        assert ledger.verify(s).ok
        return {
            (t.code, str(t.member_ref)): _signed(t, "tax-test")
            for t in ledger.effective_transfers(s, "tax-test", "2026-10")
            if t.ledger == "cents"
        }


def test_flow_behind_one_connection_is_untaxed_shared_flow_taxed_at_the_receiver(sessions):
    got = _money(sessions, with_connections=True)
    assert got == {
        ("shared", "m-2b1e"): 9,
        ("vat", "m-2b1e"): 2,
        ("shared", "m-3c2d"): 6,
        ("energy_tax", "m-3c2d"): 4,
        ("vat", "m-3c2d"): 2,
        ("supplied", "m-1a0f"): 15,
        ("fee", "m-1a0f"): 5,
        ("fee", "m-2b1e"): 5,
        ("fee", "m-3c2d"): 5,
    }
    assert ("energy_tax", "m-2b1e") not in got


def test_without_connections_every_shared_kwh_is_taxed(sqlite_sessions):
    got = _money(sqlite_sessions, with_connections=False)
    assert got[("energy_tax", "m-2b1e")] == 5 and got[("vat", "m-2b1e")] == 3
    assert got[("energy_tax", "m-3c2d")] == 4


def test_taxed_energy_nets_what_one_connection_gives_and_takes():
    """Members a and b (connection X) receive 300 and 100 Wh while c (also X) gives 200 Wh
    and d (connection Y) gives 200 Wh: 200 Wh stay behind X, 200 Wh cross into X, split
    pro rata 3:1 -> 150 and 50 Wh; d receives nothing."""
    shared = np.array([[300, 100, 0, 0]], dtype=np.int64)
    supplied = np.array([[0, 0, 200, 200]], dtype=np.int64)
    got = taxed_energy(shared, supplied, ["X", "X", "X", "Y"], np.arange(4))
    assert got.tolist() == [[150, 50, 0, 0]]
    # a connection that gives more than it takes pays no tax on what it takes
    got = taxed_energy(np.array([[300, 0]]), np.array([[0, 500]]), ["X", "X"], np.arange(2))
    assert got.tolist() == [[0, 0]]


def test_tax_band_is_per_connection():
    """Two members behind one connection share its band: with 9,999 kWh taxed there before,
    a day of 2 kWh (1.5 + 0.5) has 1 kWh at 0.09160 and 1 kWh at 0.09037 EUR/kWh:
    9.160 + 9.037 = 18.197 -> 18 ct, split 3:1 by largest remainder -> 13.5 / 4.5 -> 14 / 4
    (the tie of remainders goes to the first by rank)."""
    v = load_tariff().versions[0]
    taxed = np.array([[1500, 500]], dtype=np.int64)
    got = tax_cents(taxed, ["X", "X"], {"X": 9_999_000}, [v], np.arange(2))
    assert got.tolist() == [[14, 4]]
    # each its own connection: both in the first band
    alone = tax_cents(taxed, ["X", "Y"], {"X": 9_999_000}, [v], np.arange(2))
    # 1 kWh * 9.160 + 0.5 kWh * 9.037 = 13.68 -> 14 ct; 0.5 kWh * 9.160 = 4.58 -> 5 ct
    assert alone.tolist() == [[14, 5]]


def test_a_member_behind_two_connections_is_refused():
    with pytest.raises(ValidationError, match="connection must be an 18-digit EAN"):
        parse_community(
            {
                "name": "x",
                "key": {"type": "proportional"},
                "members": [{"name": "a", "meters": ["A"], "connection": "123"}],
            }
        )
    c = parse_community(
        {
            "name": "x",
            "key": {"type": "proportional"},
            "members": [{"name": "a", "meters": [EAN_DORPSHUIS, EAN_HOME]}],
        }
    )
    with pytest.raises(ValidationError, match="behind 2 connections"):
        read_meter_csv(
            io.StringIO(
                f"timestamp,meter,direction,energy_wh\n2026-10-05T12:00:00+02:00,{EAN_HOME},offtake,1\n"
            ),
            c,
        )


def test_connections_from_the_data_source_and_a_contradiction():
    from settlement.community import MeterData, member_connections

    c = _community()
    isps = period_isps("2026-10")[:1]
    zero = np.zeros((1, 3), dtype=np.int64)
    # the store knows the sites: the file's connections agree, a member the file leaves open
    # takes the store's, one nobody knows gets a connection of its own
    c_open = _community(with_connections=False)
    known = MeterData(isps, c.refs, zero, zero, None, (EAN_DORPSHUIS, EAN_DORPSHUIS, None))
    assert member_connections(c, known) == (EAN_DORPSHUIS, EAN_DORPSHUIS, EAN_HOME)
    assert member_connections(c_open, known) == (EAN_DORPSHUIS, EAN_DORPSHUIS, "member:m-3c2d")
    wrong = MeterData(isps, c.refs, zero, zero, None, (EAN_DORPSHUIS, EAN_HOME, None))
    with pytest.raises(ValidationError, match=r"members\[1\].connection"):
        member_connections(c, wrong)


def test_a_bad_bank_account_is_named():
    base = {
        "name": "x",
        "key": {"type": "proportional"},
        "members": [{"name": "a", "meters": ["A"]}],
    }
    with pytest.raises(ValidationError, match=r"payments\.iban"):
        parse_community({**base, "payments": {"name": "X", "iban": "NL91ABNA0417164301"}})
    with pytest.raises(ValidationError, match=r"payments\.creditor_id"):
        parse_community(
            {**base, "payments": {"name": "X", "iban": "NL91ABNA0417164300", "creditor_id": "?"}}
        )
    ok = parse_community({**base, "payments": {"name": "X", "iban": "nl91 abna 0417 1643 00"}})
    assert ok.payments is not None and ok.payments.iban == "NL91ABNA0417164300"
