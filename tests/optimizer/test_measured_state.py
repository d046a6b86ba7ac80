"""The MPC starts from the measured state, and says what it fell back to and why."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from energy.models import Channel
from energy.readings import upsert_readings
from energy.siteconfig import import_site, load_site_text
from optimizer.model import plan
from optimizer.mpc import Measured, MPCController, RecordingSink, apply_measurements
from optimizer.scenario import BatterySpec
from tests.optimizer.helpers import ev, make_scenario

TZ = "Europe/Amsterdam"
NOW = pd.Timestamp("2026-06-15T12:00+02:00").tz_convert("UTC")
SITE = "dorpshuis-measured"
SITE_YAML = f"""
site: {{name: {SITE}, ean: "871685900000000042", latitude: 52.9, longitude: 6.8,
        grid_import_limit_kw: 40, grid_export_limit_kw: 25}}
assets:
  - name: bat-1
    kind: battery
    params: {{capacity_kwh: 20, max_charge_kw: 5, max_discharge_kw: 5, soc_initial_pct: 50}}
    channels: [{{quantity: soc}}]
  - name: ev-1
    kind: ev
    params: {{capacity_kwh: 60, max_charge_kw: 7.4}}
    channels: [{{quantity: soc}}]
  - name: ev-2
    kind: ev
    params: {{capacity_kwh: 60, max_charge_kw: 7.4}}
"""


def _scenario(**kw):
    battery = BatterySpec(
        capacity_kwh=20, max_charge_kw=5, max_discharge_kw=5, soc_initial_pct=50, name="bat-1"
    )
    cars = (
        ev("ev-1", "2026-06-15T11:00+02:00", "2026-06-15T18:00+02:00", 30, 80),
        ev("ev-2", "2026-06-15T11:30+02:00", "2026-06-15T18:00+02:00", 45, 80),
    )
    return make_scenario(
        [0.30, 0.10, 0.40, 0.20] * 6,
        load_kw=3.0,
        step_minutes=15,
        start="2026-06-15T12:00+02:00",
        battery=battery,
        evs=cars,
        **kw,
    )


def test_fallback_warnings_name_what_and_why():
    sc = _scenario()
    measured = Measured(
        soc_pct={"ev-1": 55.0},
        at={"ev-1": pd.Timestamp("2026-06-15T10:45+02:00").tz_convert("UTC")},
        why_not={"bat-1": "no SoC reading since 10:15"},
    )
    out, warnings = apply_measurements(sc, measured, NOW)
    assert warnings == [
        "battery bat-1: no SoC reading since 10:15, using 50 % from the site file",
        "EV ev-1: the last SoC reading (10:45) is from before the car arrived at 11:00, "
        "using the session's arrival SoC 30 %",
        "EV ev-2: the charger reports no SoC, using the session's arrival SoC 45 %",
    ]
    assert out.battery.soc_initial_pct == 50
    assert [e.sessions[0].soc_arrival_pct for e in out.evs] == [30, 45]


def test_measured_values_are_used_and_clamped_with_a_warning():
    sc = _scenario()
    at = pd.Timestamp("2026-06-15T11:45+02:00").tz_convert("UTC")
    measured = Measured(soc_pct={"bat-1": 4.0, "ev-1": 62.0}, at={"bat-1": at, "ev-1": at})
    out, warnings = apply_measurements(sc, measured, NOW)
    assert warnings[0] == (
        "battery bat-1: measured SoC 4 % lies outside its limits 10-100 %, planning from 10 %"
    )
    assert out.battery.soc_initial_pct == 10
    session = out.evs[0].sessions[0]
    assert session.soc_arrival_pct == 62  # the SoC at the start of the horizon
    assert len(warnings) == 2 and warnings[1].startswith("EV ev-2:")


def _store(sessions):
    doc = load_site_text(SITE_YAML)
    with sessions() as s, s.begin():
        import_site(s, doc)
    with sessions() as s, s.begin():
        ids = {c.key: c.id for c in s.scalars(select(Channel))}

        def reading(isp: str, mean: float, last: float) -> pd.DataFrame:
            index = pd.DatetimeIndex([pd.Timestamp(isp).tz_convert("UTC")])
            return pd.DataFrame(
                {"energy_wh": 0.0, "power_mean_w": mean, "value_last": last,
                 "sample_count": 90, "coverage": 1.0},
                index=index,
            )  # fmt: skip

        upsert_readings(s, ids[f"{SITE}/bat-1/soc"], reading("2026-06-15T10:00+02:00", 70, 71))
        upsert_readings(s, ids[f"{SITE}/bat-1/soc"], reading("2026-06-15T10:15+02:00", 72, 73.5))
        upsert_readings(s, ids[f"{SITE}/ev-1/soc"], reading("2026-06-15T11:30+02:00", 40, 41))
        # a reading after "now" in a replay is not seen
        upsert_readings(s, ids[f"{SITE}/ev-1/soc"], reading("2026-06-15T12:30+02:00", 90, 91))


def test_measured_state_from_the_store(sessions):
    from optimizer.sitestore import measured_state

    _store(sessions)
    with sessions() as s:
        fresh = measured_state(s, SITE, pd.Timestamp("2026-06-15T10:40+02:00"))
        assert fresh.soc_pct == {"bat-1": 73.5}  # the last value of the ISP, not its mean
        assert fresh.at["bat-1"] == pd.Timestamp("2026-06-15T10:30+02:00")
        assert fresh.why_not == {"ev-1": "no SoC reading", "ev-2": "the charger reports no SoC"}
        later = measured_state(s, SITE, NOW)
        assert later.soc_pct == {"ev-1": 41.0}
        assert later.why_not["bat-1"] == "no SoC reading since 10:15"
        nextday = measured_state(s, SITE, pd.Timestamp("2026-06-16T08:00+02:00"))
        assert nextday.why_not["bat-1"] == "no SoC reading since 15-06-2026 10:15"
        assert nextday.why_not["ev-1"] == "no SoC reading since 15-06-2026 12:30"


@pytest.mark.parametrize("measured_pct", [23.0, 81.5])
def test_planned_initial_soc_equals_the_measured_one(measured_pct):
    sc = _scenario()

    async def measure():
        return Measured(soc_pct={"bat-1": measured_pct}, at={"bat-1": NOW})

    mpc = MPCController(lambda now: sc, measure, RecordingSink(), clock=lambda: NOW)
    import asyncio

    asyncio.run(mpc.step())
    assert mpc.status.last_ok, mpc.status.last_error
    result = mpc.last_plan
    assert result is not None
    assert 100 * result.params.battery.soc_initial_kwh / 20 == pytest.approx(measured_pct)
    # a second method: the SoC at the end of the first step, from the planned flows
    row = result.flows.iloc[0]
    b = result.params.battery
    soc0_kwh = row["battery_soc_pct"] / 100 * 20 - 0.25 * (
        row["battery_charge_kw"] * b.efficiency_charge
        - row["battery_discharge_kw"] / b.efficiency_discharge
    )
    assert 100 * soc0_kwh / 20 == pytest.approx(measured_pct, abs=1e-6)
    assert mpc.status.warnings[0].startswith("EV ev-1: the charger reports no SoC")
    # the plan of the same scenario without a measurement starts at the site file's 50 %
    assert plan(sc).params.battery.soc_initial_kwh == pytest.approx(10.0)
    assert np.isfinite(result.objective_eur)


def test_no_load_readings_error_names_the_missing_derived_input(sessions, tmp_path):
    from energy.errors import ValidationError
    from energy.pipeline import update_derived
    from energy.samples import SampleStore
    from optimizer.sitestore import scenario_from_store

    text = SITE_YAML + (
        "  - {name: grid, kind: meter, channels: [{quantity: power}]}\n"
        "  - {name: pv, kind: pv, params: {peak_kw: 5}, channels: [{quantity: power}]}\n"
        "  - {name: building, kind: building_load,"
        " channels: [{quantity: power, derived: grid - pv}]}\n"
    )
    with sessions() as s, s.begin():
        import_site(s, load_site_text(text))
    with sessions() as s:
        grid = s.scalar(select(Channel.id).where(Channel.key == f"{SITE}/grid/power"))
        index = pd.date_range(NOW - pd.Timedelta(hours=1), NOW, freq="15min", inclusive="left")
        upsert_readings(
            s,
            grid,
            pd.DataFrame(
                {"energy_wh": 500.0, "power_mean_w": 2000.0, "sample_count": 90, "coverage": 1.0},
                index=index,
            ),
        )
        s.commit()
        update_derived(SampleStore(tmp_path / "samples"), s)
        with pytest.raises(ValidationError) as err:
            scenario_from_store(s, SITE, NOW, 6, price_series=("a", "b"))
    first = index[0].isoformat()
    assert "has no building load readings in the 28 days before" in str(err.value)
    assert (
        f"4 ISPs of its derived load are missing, first {first}: no reading of {SITE}/pv/power"
        in str(err.value)
    )
