"""Derived channels and instantaneous channels in the interval pipeline, by hand.

The site: a grid meter, PV, a battery and a car behind one connection, and the building's own
load derived from them. Every power follows the sign convention (positive = import or
consumption at that meter), so what the building itself consumes is

    building = grid - pv - battery - ev-1

(the grid brings in what the building, the battery and the car take, plus what the PV does
not cover: grid = building + pv + battery + ev-1, with pv negative while it produces).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from energy.errors import ValidationError
from energy.models import Channel, DerivedGap
from energy.pipeline import update_derived, update_many
from energy.readings import read_readings, upsert_readings
from energy.samples import SampleStore
from energy.siteconfig import import_site, load_site_text, parse_formula
from energy.timegrid import ISP_NS

S = 1_000_000_000
T0 = pd.Timestamp("2026-06-15T08:00Z")
SITE = "dorpshuis-derived"
SITE_YAML = f"""
site: {{name: {SITE}, ean: "871685900000000035", latitude: 52.9, longitude: 6.8,
        grid_import_limit_kw: 40, grid_export_limit_kw: 25}}
assets:
  - name: grid
    kind: meter
    channels: [{{quantity: power}}]
  - name: pv
    kind: pv
    params: {{peak_kw: 20}}
    channels: [{{quantity: power}}]
  - name: building
    kind: building_load
    channels:
      - quantity: power
        derived: grid - pv - battery - ev-1
  - name: battery
    kind: battery
    channels: [{{quantity: power}}, {{quantity: soc}}]
  - name: ev-1
    kind: ev
    channels: [{{quantity: power}}]
"""
INPUTS = ("grid", "pv", "battery", "ev-1")


def _import(session, text: str = SITE_YAML) -> dict[str, int]:
    doc = load_site_text(text)
    with session.begin():
        result = import_site(session, doc)
    return {
        k.split("/")[1] + ("" if k.endswith("/power") else ":soc"): v
        for k, v in result.channel_ids.items()
    }


def _reading(isp: pd.Timestamp, power_w: float, coverage: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "energy_wh": [power_w * 0.25 * coverage],
            "power_mean_w": [power_w],
            "sample_count": [90],
            "coverage": [coverage],
        },
        index=pd.DatetimeIndex([isp]),
    )


def _write_inputs(session, ids: dict[str, int], isp: pd.Timestamp, powers: dict[str, float]):
    for name, power_w in powers.items():
        upsert_readings(session, ids[name], _reading(isp, power_w))
    session.commit()


def _building(session, ids) -> pd.DataFrame:
    return read_readings(session, ids["building"]).set_index("isp_start")


def test_formula_parsing():
    assert parse_formula("grid - pv - battery - ev-1") == [
        (1.0, "grid"), (-1.0, "pv"), (-1.0, "battery"), (-1.0, "ev-1"),
    ]  # fmt: skip
    assert parse_formula("-pv + 0.5 * ev-2 + 2*grid/power") == [
        (-1.0, "pv"), (0.5, "ev-2"), (2.0, "grid/power"),
    ]  # fmt: skip
    for bad, why in [
        ("grid pv", "missing '\\+' or '-' before 'pv'"),
        ("grid - - pv", "two operators"),
        ("grid -", "ends with an operator"),
        ("grid - x * pv", "not '\\[number \\*\\] name'"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_formula(bad)


@pytest.mark.parametrize(
    "channel, path, message",
    [
        ("{quantity: power, derived: grid - pvv}", "derived", "'pvv' is no asset"),
        ("{quantity: power, derived: grid-pv}", "derived", "operators need spaces"),
        ("{quantity: soc, derived: grid}", "channels[0]", "must have quantity 'power'"),
        ("{quantity: power, device: gx, derived: grid}", "channels[0]", "no device or register"),
        ("{quantity: power, derived: grid - grid/soc}", "derived", "a formula adds power"),
    ],
)
def test_bad_derived_definitions_name_where(channel, path, message):
    text = SITE_YAML.replace(
        "  - quantity: power\n        derived: grid - pv - battery - ev-1",
        f"  - {channel}",
    ).replace(
        "channels: [{quantity: power}]\n  - name: pv",
        "channels: [{quantity: power}, {quantity: soc}]\n  - name: pv",
    )
    text += "devices: [{name: gx, profile: victron_gx, host: 127.0.0.1}]\n"
    with pytest.raises(ValidationError, match=message) as err:
        load_site_text(text, "site.yaml")
    assert path in str(err.value)


def test_definition_is_stored_and_import_is_idempotent(sessions):
    with sessions() as session:
        ids = _import(session)
        ch = session.get(Channel, ids["building"])
        assert ch.derived == {
            "formula": "grid - pv - battery - ev-1",
            "terms": [
                [f"{SITE}/grid/power", 1.0],
                [f"{SITE}/pv/power", -1.0],
                [f"{SITE}/battery/power", -1.0],
                [f"{SITE}/ev-1/power", -1.0],
            ],
            "min_coverage": 0.5,
        }
        session.commit()
        doc = load_site_text(SITE_YAML)
        with session.begin():
            again = import_site(session, doc)
        assert not again.changed


def test_derived_load_by_hand(sessions, tmp_path):
    """Three ISPs worked by hand (W, sign convention: + = import/consumption):

    ==========  ======  ======  =======  =====  =====================================
    ISP         grid    pv      battery  ev-1   building = grid - pv - battery - ev-1
    ==========  ======  ======  =======  =====  =====================================
    08:00       8000    -5000   2000     4000   8000 + 5000 - 2000 - 4000 = 7000
    08:15       -3000   -9000   4000     0      -3000 + 9000 - 4000 - 0 = 2000
    08:30       12000   0       -6000    7400   12000 - 0 + 6000 - 7400 = 10600
    ==========  ======  ======  =======  =====  =====================================

    08:15 exports 3 kW while the battery charges from the PV; at 08:30 the battery
    discharges into the building and the car. Energy per ISP = power x 0.25 h.
    """
    store = SampleStore(tmp_path / "samples")
    table = [
        (8000, -5000, 2000, 4000, 7000),
        (-3000, -9000, 4000, 0, 2000),
        (12000, 0, -6000, 7400, 10600),
    ]
    with sessions() as session:
        ids = _import(session)
        for k, row in enumerate(table):
            isp = T0 + pd.Timedelta(minutes=15 * k)
            _write_inputs(session, ids, isp, dict(zip(INPUTS, row[:4], strict=True)))
        [report] = update_derived(store, session)
        assert report.derived and report.full and report.missing_isps == 0
        got = _building(session, ids)
        assert got["power_mean_w"].tolist() == [7000.0, 2000.0, 10600.0]
        assert got["energy_wh"].tolist() == [1750.0, 500.0, 2650.0]
        assert got["coverage"].tolist() == [1.0, 1.0, 1.0]
        assert got["power_min_w"].isna().all() and got["value_last"].isna().all()
        # nothing changed: a second run does nothing
        assert update_derived(store, session) == []


def test_missing_input_leaves_the_derived_isp_missing_with_the_reason(sessions, tmp_path):
    store = SampleStore(tmp_path / "samples")
    full = dict(zip(INPUTS, (8000, -5000, 2000, 4000), strict=True))
    with sessions() as session:
        ids = _import(session)
        _write_inputs(session, ids, T0, full)
        no_pv = {k: v for k, v in full.items() if k != "pv"}
        _write_inputs(session, ids, T0 + pd.Timedelta(minutes=15), no_pv)
        _write_inputs(session, ids, T0 + pd.Timedelta(minutes=30), no_pv)
        upsert_readings(
            session, ids["pv"], _reading(T0 + pd.Timedelta(minutes=30), -5000, coverage=0.2)
        )
        session.commit()
        [report] = update_derived(store, session)
        got = _building(session, ids)
        assert got.index.tolist() == [T0]  # missing, not zero
        assert report.missing_isps == 2
        assert (
            report.first_missing
            == f"{(T0 + pd.Timedelta(minutes=15)).isoformat()}: no reading of {SITE}/pv/power"
        )
        gaps = dict(
            session.execute(
                select(DerivedGap.isp_start, DerivedGap.reason).where(
                    DerivedGap.channel_id == ids["building"]
                )
            ).all()
        )
        assert gaps == {
            T0 + pd.Timedelta(minutes=15): f"no reading of {SITE}/pv/power",
            T0 + pd.Timedelta(minutes=30): f"{SITE}/pv/power covers 20 % (needs 50 %)",
        }
        # again in the same session, with the gap rows loaded: replaced, not duplicated
        held = session.scalars(select(DerivedGap)).all()
        [again] = update_derived(store, session, full=True)
        assert again.missing_isps == 2 and len(held) == 2
        # the PV reading arrives: the ISP is computed and its gap goes
        upsert_readings(session, ids["pv"], _reading(T0 + pd.Timedelta(minutes=15), -5000))
        session.commit()
        update_derived(store, session, full=True)
        assert _building(session, ids).index.tolist() == [T0, T0 + pd.Timedelta(minutes=15)]
        assert session.scalars(select(DerivedGap.isp_start)).all() == [
            T0 + pd.Timedelta(minutes=30)
        ]


def _constant(store, cid, start_ns, minutes, value, step_s=60):
    ts = start_ns + np.arange(0, minutes * 60 + 1, step_s, dtype=np.int64) * S
    store.append(cid, ts, np.full(ts.size, float(value)))


def test_samples_to_derived_incrementally(sessions, tmp_path):
    """From raw samples: constant powers give the hand-worked 7000 W; a later hour of PV
    at -9000 W (the rest unchanged) gives 8000 + 9000 - 2000 - 4000 = 11000 W, and only the
    ISPs the new samples reach are recomputed."""
    store = SampleStore(tmp_path / "samples")
    t0 = T0.value
    with sessions() as session:
        ids = _import(session)
        for name, value in zip(INPUTS, (8000, -5000, 2000, 4000), strict=True):
            _constant(store, ids[name], t0, 60, value)
        reports = update_many(store, session)
        [derived] = [r for r in reports if r.derived]
        assert derived.channel_id == ids["building"] and derived.full
        got = _building(session, ids)
        # 08:00..09:00 has four full ISPs; the sample at 09:00 opens a fifth with no coverage
        assert got["power_mean_w"].tolist()[:4] == [7000.0] * 4
        assert got["energy_wh"].tolist()[:4] == [1750.0] * 4
        assert len(got) == 4 and derived.missing_isps == 1
        # the next hour: everything continues, the PV produces more
        for name, value in zip(INPUTS, (8000, -9000, 2000, 4000), strict=True):
            _constant(store, ids[name], t0 + 3600 * S + 60 * S, 59, value)
        reports = update_many(store, session)
        [derived] = [r for r in reports if r.derived]
        assert not derived.full
        assert derived.ranges_ns == [(t0 + 4 * ISP_NS, t0 + 9 * ISP_NS)]
        got = _building(session, ids)
        assert len(got) == 8
        # 09:00-09:01 is integrated from pv -5000 to -9000: mean over that minute -7000
        first = 8000 + (14 * 9000 + 7000) / 15 - 2000 - 4000
        assert got["power_mean_w"].iloc[4] == pytest.approx(first)
        assert got["power_mean_w"].tolist()[5:] == pytest.approx([11000.0] * 3)
        gaps = session.scalars(
            select(DerivedGap.isp_start).where(DerivedGap.channel_id == ids["building"])
        ).all()
        assert gaps == [T0 + pd.Timedelta(hours=2)]  # the 10:00 sample covers nothing yet


def test_soc_aggregation_by_hand(sessions, tmp_path):
    """SoC samples [%] at 08:00 50, 08:05 52, 08:10 56, 08:15 60, 08:20 58, 08:25 40.

    ISP 08:00: trapezoids 0-5 min (50+52)/2 = 51, 5-10 min 54, 10-15 min 58, so the mean is
    (51 + 54 + 58) / 3 = 54.333; min 50, max 56 and last 56 of the samples in the ISP
    (08:15 belongs to the next). ISP 08:15: 15-20 min 59, 20-25 min 49: mean 54 over the
    10 covered minutes (coverage 2/3); min 40, max 60, last 40. No energy.
    """
    store = SampleStore(tmp_path / "samples")
    with sessions() as session:
        ids = _import(session)
        ts = T0.value + np.array([0, 5, 10, 15, 20, 25], dtype=np.int64) * 60 * S
        store.append(ids["battery:soc"], ts, np.array([50, 52, 56, 60, 58, 40], dtype=float))
        update_many(store, session, [ids["battery:soc"]])
        got = read_readings(session, ids["battery:soc"]).set_index("isp_start")
        assert got.index.tolist() == [T0, T0 + pd.Timedelta(minutes=15)]
        assert got["power_mean_w"].tolist() == pytest.approx([163 / 3, 54.0])
        assert got["power_min_w"].tolist() == [50.0, 40.0]
        assert got["power_max_w"].tolist() == [56.0, 60.0]
        assert got["value_last"].tolist() == [56.0, 40.0]
        assert got["coverage"].tolist() == pytest.approx([1.0, 2 / 3])
        assert got["energy_wh"].tolist() == [0.0, 0.0]
