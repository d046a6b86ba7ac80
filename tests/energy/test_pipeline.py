"""Incremental samples -> interval readings, on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from energy.kernels import counter_to_buckets, power_to_buckets
from energy.models import Asset, AssetKind, Channel, Quantity, Site
from energy.pipeline import state_path, update_all, update_intervals
from energy.readings import read_readings
from energy.samples import Quality, SampleStore
from energy.timegrid import ISP_NS

S = 1_000_000_000
T0 = 1_789_999_200 * S  # 2026-09-21T14:00Z
GAP = 10 * 60 * S  # 10 min, so that the recomputed ranges are short


def _channel(session, quantity=Quantity.POWER) -> int:
    site = Site(
        name="dorpshuis-pipe",
        display_name="Dorpshuis Pipe",
        ean="871685900000000024",
        latitude=52.99,
        longitude=6.56,
        grid_import_limit_kw=40,
        grid_export_limit_kw=30,
    )
    asset = Asset(site=site, name="load", kind=AssetKind.BUILDING_LOAD)
    ch = Channel(key="dorpshuis-pipe/load/power", asset=asset, quantity=quantity, unit="W")
    session.add_all([site, asset, ch])
    session.commit()
    return ch.id


def _samples(n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = T0 + np.cumsum(rng.choice([10 * S, 10 * S, 7 * S, 13 * S], n))
    p = 2000 + 500 * np.sin(np.arange(n) / 300) + rng.normal(0, 50, n)
    q = np.where(rng.random(n) < 0.01, Quality.INVALID, Quality.GOOD).astype(np.uint8)
    return ts, p, q


def _expected(store: SampleStore, ch: int, kind: str = "power") -> pd.DataFrame:
    s = store.read(ch)
    if kind == "power":
        res = power_to_buckets(s.ts, s.value, ISP_NS, 0, GAP, s.quality)
    else:
        res = counter_to_buckets(s.ts, s.value, ISP_NS, 0, None, GAP, s.quality)
    frame = res.to_frame()
    has = (res.count > 0) | (res.coverage > 0) | (res.invalid_count > 0)
    return frame[has]


def _assert_db_matches(session, store: SampleStore, ch: int, kind: str = "power") -> None:
    want = _expected(store, ch, kind)
    got = read_readings(session, ch).set_index("isp_start")
    got.index = got.index.as_unit("ns")
    np.testing.assert_array_equal(got.index.asi8, want.index.asi8)
    for col in want.columns:
        np.testing.assert_allclose(
            got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-12, equal_nan=True,
            err_msg=col,
        )  # fmt: skip


def test_incremental_append_late_and_compaction(sessions, tmp_path):
    store = SampleStore(tmp_path / "samples")
    ts, p, q = _samples(8000)  # about 22 hours
    with sessions() as session:
        ch = _channel(session)
        store.append(ch, ts[:4000], p[:4000], q[:4000])
        first = update_intervals(store, session, ch, max_gap_ns=GAP)
        assert first.full and first.isps_written > 0
        _assert_db_matches(session, store, ch)

        # The stream goes on: only the interval from the last valid sample on is recomputed.
        store.append(ch, ts[4000:6000], p[4000:6000], q[4000:6000])
        last_valid = ts[:4000][q[:4000] == 0][-1]
        nxt = update_intervals(store, session, ch, max_gap_ns=GAP)
        assert not nxt.full and nxt.new_parts == 1
        assert nxt.ranges_ns == [
            (int(last_valid - last_valid % ISP_NS), int(ts[5999] - ts[5999] % ISP_NS + ISP_NS))
        ]
        assert nxt.samples_read < 2000 + 2 * GAP // (7 * S) + 200
        _assert_db_matches(session, store, ch)

        # Nothing new: nothing done.
        idle = update_intervals(store, session, ch, max_gap_ns=GAP)
        assert idle.new_parts == 0 and idle.isps_written == 0 and idle.samples_read == 0

        # A late correction in the middle recomputes only the ISPs within max_gap of it.
        t_late = int(ts[2500])
        store.append(ch, [t_late], [9_999.0], [0])
        before = read_readings(session, ch).set_index("isp_start")
        late = update_intervals(store, session, ch, max_gap_ns=GAP)
        lo = t_late - GAP - (t_late - GAP) % ISP_NS
        hi = t_late + GAP - (t_late + GAP) % ISP_NS + ISP_NS
        assert late.ranges_ns == [(lo, hi)]
        assert late.isps_written <= (hi - lo) // ISP_NS
        _assert_db_matches(session, store, ch)
        after = read_readings(session, ch).set_index("isp_start")
        outside = (after.index.as_unit("ns").asi8 < lo) | (after.index.as_unit("ns").asi8 >= hi)
        pd.testing.assert_frame_equal(after[outside], before.loc[after.index[outside]])
        isp = pd.Timestamp(t_late - t_late % ISP_NS, unit="ns", tz="UTC")
        assert after.loc[isp, "power_max_w"] == 9_999.0

        # A late batch that invalidates a whole stretch: the readings there shrink to nothing.
        sel = (ts >= ts[1000]) & (ts < ts[1000] + 3 * ISP_NS)
        store.append(ch, ts[sel], np.full(sel.sum(), np.nan), np.full(sel.sum(), 2, np.uint8))
        update_intervals(store, session, ch, max_gap_ns=GAP)
        _assert_db_matches(session, store, ch)
        mid = pd.Timestamp(int(ts[1000] - ts[1000] % ISP_NS + ISP_NS), unit="ns", tz="UTC")
        row = read_readings(session, ch).set_index("isp_start").loc[mid]
        assert row["sample_count"] == 0 and row["coverage"] == 0

        # Compaction rewrites part files: the days are recomputed, the result is unchanged.
        store.compact(ch)
        update_intervals(store, session, ch, max_gap_ns=GAP)
        _assert_db_matches(session, store, ch)

        # Another gap limit: the state is discarded and everything recomputed.
        assert state_path(store, ch).is_file()
        again = update_intervals(store, session, ch, max_gap_ns=GAP + S)
        assert again.full


def test_counter_channel(sessions, tmp_path):
    store = SampleStore(tmp_path / "samples")
    n = 3000
    ts = T0 + np.arange(n) * 30 * S
    c = 1e6 + np.cumsum(np.full(n, 25.0))  # 3 kW
    with sessions() as session:
        ch = _channel(session, Quantity.ENERGY_IMPORT)
        store.append(ch, ts[:2000], c[:2000])
        update_intervals(store, session, ch, max_gap_ns=GAP, kind="counter")
        store.append(ch, ts[2000:], c[2000:])
        update_intervals(store, session, ch, max_gap_ns=GAP, kind="counter")
        _assert_db_matches(session, store, ch, kind="counter")
        got = read_readings(session, ch)
        assert got["energy_wh"].sum() == pytest.approx(c[-1] - c[0])
        assert got["energy_wh"].iloc[1:-1].to_numpy() == pytest.approx(750.0)


def test_bad_arguments(tmp_path):
    store = SampleStore(tmp_path / "samples")
    with pytest.raises(ValueError, match="kind"):
        update_intervals(store, None, 1, kind="volts")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_gap_ns"):
        update_intervals(store, None, 1, max_gap_ns=-5)  # type: ignore[arg-type]


def test_stale_reading_without_samples_is_emptied(sessions, tmp_path):
    store = SampleStore(tmp_path / "samples")
    ts = T0 + np.arange(0, 3600, 10) * S  # one hour at 10 s
    with sessions() as session:
        ch = _channel(session)
        store.append(ch, ts, np.full(ts.size, 500.0))
        update_intervals(store, session, ch, max_gap_ns=GAP)
        # A reading nobody can recompute (no samples near it), e.g. imported from elsewhere.
        stale = pd.Timestamp(T0 - ISP_NS, unit="ns", tz="UTC")  # before the first sample
        frame = pd.DataFrame(
            {"energy_wh": 123.0, "sample_count": 9, "coverage": 1.0},
            index=pd.DatetimeIndex([stale]),
        )
        from energy.readings import upsert_readings

        upsert_readings(session, ch, frame)
        session.commit()
        # A late correction within max_gap of it makes its ISP part of the recomputed range.
        store.append(ch, [T0 + 60 * S], [700.0])
        update_intervals(store, session, ch, max_gap_ns=GAP)
        row = read_readings(session, ch).set_index("isp_start").loc[stale]
        assert row["energy_wh"] == 0 and row["sample_count"] == 0 and row["coverage"] == 0


def test_update_all_picks_the_kind_per_quantity(sessions, tmp_path):
    store = SampleStore(tmp_path / "samples")
    ts = T0 + np.arange(0, 1800, 10) * S
    with sessions() as session:
        power = _channel(session)
        asset_id = session.get(Channel, power).asset_id
        counter = Channel(
            key="dorpshuis-pipe/load/import", asset_id=asset_id,
            quantity=Quantity.ENERGY_IMPORT, unit="Wh",
        )  # fmt: skip
        soc = Channel(
            key="dorpshuis-pipe/load/soc", asset_id=asset_id, quantity=Quantity.SOC, unit="%"
        )
        session.add_all([counter, soc])
        session.commit()
        store.append(power, ts, np.full(ts.size, 3600.0))
        store.append(counter.id, ts, 1000.0 + np.arange(ts.size) * 10.0)
        store.append(soc.id, ts, np.full(ts.size, 50.0))
        reports = update_all(store, session)
        assert sorted(r.channel_id for r in reports) == sorted([power, counter.id])
        got = read_readings(session, [power, counter.id, soc.id])
        sums = got.groupby("channel_id")["energy_wh"].sum()
        assert sums[power] == pytest.approx(1790 / 3600 * 3600.0)
        assert sums[counter.id] == pytest.approx(10.0 * (ts.size - 1))
        assert soc.id not in sums.index
        with pytest.raises(ValueError, match="not in the database"):
            update_all(store, session, [987654])
