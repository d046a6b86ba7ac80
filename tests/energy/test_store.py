"""The SQL store and the Parquet sample store, on SQLite and PostgreSQL."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select, text

from energy.db import current_revisions, upgrade
from energy.models import Asset, AssetKind, Channel, IntervalReading, Quantity, Site
from energy.readings import read_readings, upsert_readings
from energy.samples import Quality, SampleStore
from energy.timegrid import local_day_isps


def _channel(session) -> int:
    site = Site(
        name="dorpshuis-test",
        display_name="Dorpshuis Test",
        ean="871685900000000017",
        latitude=52.99,
        longitude=6.56,
        grid_import_limit_kw=40,
        grid_export_limit_kw=30,
    )
    asset = Asset(site=site, name="pv", kind=AssetKind.PV)
    ch = Channel(key="dorpshuis-test/pv/power", asset=asset, quantity=Quantity.POWER, unit="W")
    session.add_all([site, asset, ch])
    session.flush()
    return ch.id


def test_migrations_are_idempotent(engine):
    before = current_revisions(engine)
    upgrade(engine)
    assert current_revisions(engine) == before and before


@pytest.mark.parametrize("day", [dt.date(2026, 3, 29), dt.date(2026, 10, 25)])
def test_readings_roundtrip_dst_day_and_reimport_is_idempotent(sessions, day):
    isps = local_day_isps(day)
    frame = pd.DataFrame(
        {
            "energy_wh": np.arange(len(isps), dtype=float),
            "power_mean_w": 4.0 * np.arange(len(isps)),
            "power_min_w": 0.0,
            "power_max_w": 10.0,
            "sample_count": 900,
            "coverage": 1.0,
        },
        index=isps,
    )
    with sessions.begin() as s:
        cid = _channel(s)
        upsert_readings(s, cid, frame)
    with sessions.begin() as s:
        upsert_readings(s, cid, frame)  # same data again
    with sessions() as s:
        n = s.scalar(select(func.count()).select_from(IntervalReading))
        back = read_readings(s, cid)
    assert n == len(isps) in (92, 100)
    assert back["isp_start"].tolist() == list(isps)
    np.testing.assert_allclose(back["energy_wh"], frame["energy_wh"].to_numpy())


def test_upsert_stores_what_the_orm_stores(sessions):
    """The bulk upsert (driver-level executemany) writes the rows the ORM writes, byte for
    byte in the database (the ``isp_start`` text on SQLite), NULLs and NaNs included, and
    replaces a stored row on conflict."""
    isps = local_day_isps(dt.date(2026, 3, 29))[:8]  # a DST day, across the change
    frame = pd.DataFrame(
        {
            "energy_wh": [0.25, np.nan, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
            "power_mean_w": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0, 7.0, 8.0],
            "sample_count": [900, 1, 2, 3, 4, 5, 6, 7],
            "coverage": [1.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 0.25],
        },
        index=isps,
    )
    with sessions.begin() as s:
        orm_id, bulk_id = _channel(s), None
        site_id = s.get(Channel, orm_id).asset.site_id
        asset = Asset(site_id=site_id, name="battery", kind=AssetKind.BATTERY)
        ch = Channel(
            key="dorpshuis-test/battery/power", asset=asset, quantity=Quantity.POWER, unit="W"
        )
        s.add_all([asset, ch])
        s.flush()
        bulk_id = ch.id
        for t, row in frame.iterrows():
            s.add(
                IntervalReading(
                    channel_id=orm_id,
                    isp_start=t.to_pydatetime(),
                    energy_wh=0.0 if np.isnan(row.energy_wh) else float(row.energy_wh),
                    power_mean_w=None if np.isnan(row.power_mean_w) else float(row.power_mean_w),
                    power_min_w=None,
                    power_max_w=None,
                    sample_count=int(row.sample_count),
                    coverage=float(row.coverage),
                )
            )
        stale = frame.iloc[:2].copy()
        stale["energy_wh"] = 99.0
        assert upsert_readings(s, bulk_id, stale) == 2  # replaced below
        assert upsert_readings(s, bulk_id, frame) == len(frame)
    cols = "isp_start, energy_wh, power_mean_w, power_min_w, power_max_w, sample_count, coverage"
    with sessions() as s:
        raw = {
            cid: s.execute(
                text(f"SELECT {cols} FROM interval_readings WHERE channel_id = :c ORDER BY 1"),
                {"c": cid},
            ).all()
            for cid in (orm_id, bulk_id)
        }
        back = read_readings(s, bulk_id)
    assert raw[bulk_id] == raw[orm_id] and len(raw[orm_id]) == len(frame)
    assert back["isp_start"].tolist() == list(isps)


def test_bad_readings_change_nothing(sessions):
    isps = local_day_isps(dt.date(2026, 6, 1))
    good = pd.DataFrame({"energy_wh": 1.0, "sample_count": 1, "coverage": 1.0}, index=isps)
    with sessions.begin() as s:
        cid = _channel(s)
        upsert_readings(s, cid, good)
    bad = good.copy()
    bad["energy_wh"] = 99.0
    bad.iloc[5, bad.columns.get_loc("coverage")] = 1.5
    with pytest.raises(ValueError, match="coverage"), sessions.begin() as s:
        upsert_readings(s, cid, bad)
    with sessions() as s:
        assert read_readings(s, cid)["energy_wh"].eq(1.0).all()


def test_sample_store_append_read_compact_idempotent(tmp_path):
    store = SampleStore(tmp_path / "samples")
    t0 = pd.Timestamp("2026-10-24T22:00:00Z").value
    ts = t0 + np.arange(0, 4 * 3600) * 1_000_000_000  # crosses UTC midnight
    p = np.sin(np.arange(ts.size) / 100.0) * 1000
    assert store.append(7, ts, p) == ts.size
    assert store.append(7, ts, p) == 0  # re-import writes nothing
    assert store.append(7, ts[::-1], p[::-1]) == 0  # order does not matter
    assert len(store.days(7)) == 2
    # a correction of one sample replaces it
    p2 = p.copy()
    p2[10] = -5.0
    assert store.append(7, ts[10:11], p2[10:11]) == 1
    back = store.read(7)
    np.testing.assert_array_equal(back.ts, ts)
    np.testing.assert_array_equal(back.value, p2)
    assert (back.quality == Quality.GOOD).all()
    assert store.compact(7) >= 1
    again = store.read(7)
    np.testing.assert_array_equal(again.value, p2)
    window = store.read(7, int(ts[100]), int(ts[200]))
    assert len(window) == 100 and window.ts[0] == ts[100]


def test_sample_store_marks_nan_invalid_and_rejects_ragged(tmp_path):
    store = SampleStore(tmp_path)
    ts = np.array([1, 2, 3], dtype=np.int64) * 1_000_000_000
    store.append(1, ts, np.array([1.0, np.nan, 3.0]))
    assert store.read(1).quality.tolist() == [Quality.GOOD, Quality.INVALID, Quality.GOOD]
    with pytest.raises(ValueError, match="equal length"):
        store.append(1, ts, np.array([1.0]))
