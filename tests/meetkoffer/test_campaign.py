"""A campaign end to end on SQLite and PostgreSQL: create, import, aggregate, analyse, verify."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sqlalchemy import delete, select

from energy.errors import NotFoundError, ValidationError
from energy.models import Asset, AssetKind, Channel, IntervalReading, Site
from energy.pipeline import update_many
from energy.readings import read_readings
from energy.samples import SampleStore
from meetkoffer import campaign as cp
from meetkoffer import mv
from meetkoffer.models import Campaign, FindingRecord, SavingsRecord
from tests.meetkoffer.campaign_fixture import DATA, STEP_AT, STEP_KW, build
from tests.meetkoffer.synth import TZ


def test_create_campaign_makes_core_rows(sessions) -> None:
    cfg = yaml.safe_load((DATA / "campaign.yaml").read_text())
    with sessions.begin() as s:
        c = cp.create_campaign(s, cfg)
        site = s.get(Site, c.site_id)
        assert site.kind == "factory" and site.owner_member_id == c.firm_member_id
        kinds = {a.name: a.kind for a in s.scalars(select(Asset).where(Asset.site_id == site.id))}
        assert kinds["main-incomer"] == AssetKind.METER
        assert kinds["compressor-1"] == AssetKind.PROCESS_LOAD
        keys = set(s.scalars(select(Channel.key)))
        assert "kunststof-emmen/lighting/energy_import" in keys
    with sessions.begin() as s, pytest.raises(ValidationError, match="exists already"):
        cp.create_campaign(s, cfg)
    bad = {**cfg, "name": "other", "equipment": [{"name": "a"}]}
    with sessions.begin() as s, pytest.raises(ValidationError, match="exactly one equipment"):
        cp.create_campaign(s, bad)
    with sessions() as s, pytest.raises(NotFoundError):
        cp.get_campaign(s, "nope")
    live = {
        **cfg,
        "name": "live",
        "equipment": [
            {"name": "incomer", "role": "incomer", "channel": "kunststof-emmen/main-incomer/power"},
            {"name": "compressor", "channel": "kunststof-emmen/compressor-1/power"},
        ],
    }
    with sessions.begin() as s:
        c2 = cp.create_campaign(s, live)
        first = cp.get_campaign(s, cfg["name"])
        assert {e.channel_id for e in c2.equipment} <= {e.channel_id for e in first.equipment}
    bad_live = {
        **live,
        "name": "live2",
        "equipment": [{"name": "x", "role": "incomer", "channel": "nope/x/power"}],
    }
    with sessions.begin() as s, pytest.raises(ValidationError, match="no channel 'nope/x/power'"):
        cp.create_campaign(s, bad_live)


def test_bad_file_changes_nothing(sessions, tmp_path: Path) -> None:
    store = SampleStore(tmp_path / "samples")
    cfg = yaml.safe_load((DATA / "campaign.yaml").read_text())
    with sessions.begin() as s:
        c = cp.create_campaign(s, cfg)
    text = (
        "timestamp,channel,value,unit\n"
        "2026-03-02T08:00:00+01:00,compressor 1,30,kW\n"
        "2026-03-02T08:00:00+01:00,lighting,30,kW\n"  # lighting is a kWh counter channel
        "2026-04-02T08:00:00+01:00,compressor 1,30,kW\n"  # after the campaign
    )
    with sessions.begin() as s:
        c = cp.get_campaign(s, c.name)
        with pytest.raises(ValidationError) as exc:
            cp.import_samples(s, store, c, Path("k.csv"), text=text)
    assert "line 3: channel 'lighting' takes an energy counter (Wh, kWh, MWh), got power" in str(
        exc.value
    )
    assert "line 4: timestamp outside the campaign period" in str(exc.value)
    assert store.channels() == []
    good = "timestamp,channel,value,unit\n2026-03-02T08:00:00+01:00,compressor 1,30,kW\n"
    with sessions.begin() as s:
        c = cp.get_campaign(s, c.name)
        assert cp.import_samples(s, store, c, Path("k.csv"), text=good) == {"compressor 1": 1}
        assert cp.import_samples(s, store, c, Path("k.csv"), text=good) == {"compressor 1": 0}


def test_aggregate_writes_what_the_interval_pipeline_writes(sessions, tmp_path: Path) -> None:
    """The campaign's readings are those of the site's pipeline, cut to the campaign period."""
    store = SampleStore(tmp_path / "samples")
    with sessions.begin() as s:
        c, _ = build(s, store)
        ids = [e.channel_id for e in c.equipment]
        end = pd.Timestamp(c.end_at)
        # The clamp on the incomer stays and goes on measuring after the campaign.
        incomer = next(e.channel_id for e in c.equipment if e.role == "incomer")
        ts = end.as_unit("ns").value + np.arange(0, 3600, 60) * 10**9
        store.append(incomer, ts, np.full(ts.size, 5_000.0))
        assert cp.aggregate(s, store, c)["main incomer"] > 0
        campaign = read_readings(s, ids)
        assert campaign["isp_start"].max() < end
        s.execute(delete(IntervalReading))
        update_many(store, s, ids, commit=False)
        site = read_readings(s, ids)
    assert site["isp_start"].max() >= end
    inside = site[site["isp_start"] < end].reset_index(drop=True)
    pd.testing.assert_frame_equal(campaign, inside)


def test_campaign_end_to_end(sessions, tmp_path: Path) -> None:
    store = SampleStore(tmp_path / "samples")
    with sessions.begin() as s:
        c, plant = build(s, store)
    with sessions.begin() as s:
        c = cp.get_campaign(s, "kunststof-2026-03")
        series = cp.load_series(s, c)
        assert series.incomer == "main incomer"
        inc = series.incomer_wh
        assert len(inc) == len(plant.index)
        # Step-held 1-minute samples: the trapezoid only blurs the last minute of each ISP.
        assert inc.sum() == pytest.approx(plant.incomer_wh.sum(), rel=0.01)
        light = series.energy_wh["lighting"]
        assert light.sum() == pytest.approx(plant.lighting_wh.sum(), rel=1e-6)
        assert len(series.production) == 20 and len(series.temp_c) == 28

        _, found = cp.analyze(s, c)
        kinds = {(f.kind, f.equipment) for f in found}
        assert ("off_hours_equipment", "compressor 1") in kinds
        assert ("standby", None) in kinds and (
            "startup_peak",
            None,
        ) in kinds  # the peak is at 06:00
    with sessions() as s:
        recs = s.scalars(select(FindingRecord).order_by(FindingRecord.rank)).all()
        assert [r.rank for r in recs] == list(range(1, len(recs) + 1))
        comp = next(r for r in recs if r.equipment == "compressor 1")
        assert comp.evidence["weekend_kwh_in_campaign"] == pytest.approx(5730.0, rel=0.01)
        assert s.scalar(select(Campaign)).analyzed_at is not None

    with sessions.begin() as s:
        c = cp.get_campaign(s, "kunststof-2026-03")
        base = cp.parse_period(f"2026-03-02..{STEP_AT}", "baseline")
        rep = cp.parse_period(f"{STEP_AT}..2026-03-30", "reporting")
        adj = mv.NonRoutineAdjustment(0.0, "no change to the line during reporting")
        res, _ = cp.verify(
            s, c, base, rep, option="B", equipment="extruder line 2", adjustments=[adj]
        )
        weekdays = 10
        true_kwh = STEP_KW * 16 * weekdays
        assert abs(res.avoided_kwh - true_kwh) <= max(res.uncertainty_kwh_90, 0.01 * true_kwh)
        res_c, _ = cp.verify(s, c, base, rep, option="C")
        assert (
            abs(res_c.avoided_kwh - true_kwh) <= res_c.uncertainty_kwh_90 + 40.0
        )  # + the peak ISP
        with pytest.raises(ValidationError, match="Option B needs"):
            cp.verify(s, c, base, rep, option="B")
        res_dd, _ = cp.verify(
            s, c, base, rep, option="C", heating_bp_c=15.0, time_of_week=False, store=False
        )
        assert "hdd" in res_dd.coefficients and "production" in res_dd.coefficients
        # The hourly time-of-week-and-temperature model finds the same known step, judged
        # against the ASHRAE 14 hourly limits.
        res_h, rec_h = cp.verify(
            s, c, base, rep, option="B", equipment="extruder line 2", interval="hourly"
        )
        assert res_h.interval == "hourly" and res_h.metrics.interval == "hourly"
        assert (res_h.metrics.cv_rmse_max, res_h.metrics.nmbe_max) == (0.30, 0.10)
        assert res_h.baseline_n == 14 * 24 and res_h.reporting_m == 14 * 24 - 1  # DST: 23 h
        assert sum(k.startswith("how") for k in res_h.coefficients) == 167
        assert abs(res_h.avoided_kwh - true_kwh) <= res_h.uncertainty_kwh_90
        assert rec_h.summary["request"]["interval"] == "hourly"
        res_hdd, _ = cp.verify(s, c, base, rep, interval="hourly", heating_bp_c=15.0, store=False)
        assert res_hdd.coefficients["hdd"] == res_hdd.coefficients["hdd"]  # temperatures per hour
        assert res_hdd.baseline_n == res_h.baseline_n - 12  # before the first noon reading: none
        # readings at midnight + 12 h: 13:00 CEST on the last (DST) day, 10 hours after it
        assert any("12 baseline and 10 reporting periods without" in w for w in res_hdd.warnings)
        assert cp.recompute(s, c, rec_h).result.avoided_kwh == pytest.approx(res_h.avoided_kwh)
        with pytest.raises(ValidationError, match="hourly model has no production"):
            cp.verify(s, c, base, rep, interval="hourly", production=True)
        with pytest.raises(ValidationError, match="CalTRACK model is a daily"):
            cp.verify(s, c, base, rep, interval="hourly", model="caltrack")
    with sessions() as s:
        rows = s.scalars(select(SavingsRecord).order_by(SavingsRecord.id)).all()
        assert [r.option for r in rows] == ["B", "C", "B"]
        assert rows[0].adjustments[0].reason.startswith("no change")
        assert rows[0].summary["equipment"] == "extruder line 2"
        assert rows[0].summary["emission_factors"][0]["source"]


def test_parse_period_local_dates() -> None:
    a, b = cp.parse_period("2026-03-29..2026-03-30", "baseline")
    assert (b - a) == pd.Timedelta(hours=23)
    assert a == pd.Timestamp("2026-03-29", tz=TZ).tz_convert("UTC")
    with pytest.raises(ValidationError, match=r"FROM\.\.TO"):
        cp.parse_period("2026-03-29", "baseline")
