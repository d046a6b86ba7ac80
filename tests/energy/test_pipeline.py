"""Incremental samples -> interval readings, on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import delete

from energy import pipeline
from energy.kernels import DEFAULT_MAX_GAP_NS, counter_to_buckets, power_to_buckets
from energy.models import Asset, AssetKind, Channel, IntervalReading, Quantity, Site
from energy.pipeline import (
    Aggregation,
    aggregation_of,
    state_path,
    update_intervals,
    update_many,
)
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
        reports = update_many(store, session)
        assert sorted(r.channel_id for r in reports) == sorted([power, counter.id, soc.id])
        got = read_readings(session, [power, counter.id, soc.id])
        sums = got.groupby("channel_id")["energy_wh"].sum()
        assert sums[power] == pytest.approx(1790 / 3600 * 3600.0)
        assert sums[counter.id] == pytest.approx(10.0 * (ts.size - 1))
        # a state of charge is aggregated as an instantaneous value: no energy, 50 % throughout
        assert sums[soc.id] == 0.0
        socs = got[got["channel_id"] == soc.id]
        assert (socs["power_mean_w"] == 50.0).all() and (socs["value_last"] == 50.0).all()
        with pytest.raises(ValueError, match="not in the database"):
            update_many(store, session, [987654])


def _readings(session, ids: list[int]) -> pd.DataFrame:
    got = read_readings(session, ids).sort_values(["channel_id", "isp_start"])
    return got.reset_index(drop=True)


def test_update_many_matches_update_intervals_channel_by_channel(sessions, tmp_path, monkeypatch):
    # Short chunks, so that channels run in several chunks and batches mix channels.
    monkeypatch.setattr(pipeline, "CHUNK_NS", 3 * 3600 * S)
    store = SampleStore(tmp_path / "samples")
    ts, p, q = _samples(8000)
    with sessions() as session:
        default = _channel(session)
        asset_id = session.get(Channel, default).asset_id
        gaps = {"power-b": None, "power-c": GAP // S, "import": GAP // S}
        more = {
            name: Channel(
                key=f"dorpshuis-pipe/load/{name}", asset_id=asset_id, max_gap_s=gap,
                quantity=Quantity.ENERGY_IMPORT if name == "import" else Quantity.POWER,
                unit="Wh" if name == "import" else "W",
            )
            for name, gap in gaps.items()
        }  # fmt: skip
        session.add_all(more.values())
        session.commit()
        ids = [default] + [ch.id for ch in more.values()]
        _, p2, q2 = _samples(8000, seed=4)
        drop = np.arange(8000) % 997 < 60  # gaps of 60 samples (about 10 min) now and then
        series = {
            default: (ts, p, q),
            more["power-b"].id: (ts[~drop], p2[~drop], q2[~drop]),
            more["power-c"].id: (ts[~drop], p2[~drop], q2[~drop]),
            more["import"].id: (ts, 1e6 + np.cumsum(np.full(ts.size, 8.0)), np.zeros(8000, "u1")),
        }
        for cid, (t, v, qq) in series.items():
            store.append(cid, t[t < ts[4000]], v[t < ts[4000]], qq[t < ts[4000]])
        first = update_many(store, session, ids, n_threads=2, batch=3)
        assert [r.channel_id for r in first] == ids and all(r.full for r in first)
        for cid, (t, v, qq) in series.items():  # the stream goes on, with a late correction
            store.append(cid, t[t >= ts[4000]], v[t >= ts[4000]], qq[t >= ts[4000]])
            store.append(cid, t[1500:1501], v[1500:1501] + 100.0, qq[1500:1501])
        again = update_many(store, session, ids, n_threads=2, batch=3)
        assert not any(r.full for r in again) and all(r.new_parts > 0 for r in again)
        many = _readings(session, ids)

        session.execute(delete(IntervalReading))
        session.commit()
        aggregations = [aggregation_of(session.get(Channel, cid)) for cid in ids]
        assert aggregations == [
            Aggregation("power", DEFAULT_MAX_GAP_NS),
            Aggregation("power", DEFAULT_MAX_GAP_NS),
            Aggregation("power", GAP),
            Aggregation("counter", GAP),
        ]
        for cid, agg in zip(ids, aggregations):
            assert agg is not None
            update_intervals(
                store, session, cid, max_gap_ns=agg.max_gap_ns, kind=agg.kind, full=True
            )
        one_by_one = _readings(session, ids)
    pd.testing.assert_frame_equal(many, one_by_one, rtol=1e-12)
    # The default gap bridges the dropped stretches that the short one leaves as gaps.
    cov = many.groupby("channel_id")["coverage"].mean()
    assert cov[more["power-c"].id] < cov[more["power-b"].id]


def _gap_channel(session, max_gap_s: int | None) -> int:
    ch = _channel(session)
    session.get(Channel, ch).max_gap_s = max_gap_s
    session.commit()
    return ch


def _by_isp(session, ch: int) -> pd.DataFrame:
    got = read_readings(session, ch).set_index("isp_start")
    got.index = got.index.as_unit("ns").asi8 - T0
    return got


@pytest.mark.parametrize(
    ("max_gap_s", "bridged"), [(900, True), (None, True), (300, False)], ids=str
)
def test_max_gap_s_by_hand(sessions, tmp_path, max_gap_s, bridged):
    """Five samples with a 10-minute gap, worked out by hand (T0 starts an ISP).

    t [s]   0     300   600   (10 min)   1200   1500
    P [W]   1000  1000  2200             2200   2200

    ISP [0, 900): 1000 W x 300 s + 1600 W x 300 s = 83.33 + 133.33 Wh, and 2200 W over
    [600, 900) = 183.33 Wh if the gap is bridged; ISP [900, 1800): 2200 W over [900, 1200)
    if bridged, and over [1200, 1500) = 183.33 Wh each.
    """
    store = SampleStore(tmp_path / "samples")
    t = T0 + np.array([0, 300, 600, 1200, 1500]) * S
    with sessions() as session:
        ch = _gap_channel(session, max_gap_s)
        store.append(ch, t, [1000.0, 1000.0, 2200.0, 2200.0, 2200.0])
        (report,) = update_many(store, session, [ch])
        assert report.isps_written == 2
        got = _by_isp(session, ch)
    wh = 2200 * 300 / 3600
    first, second = got.loc[0], got.loc[ISP_NS]
    assert first["sample_count"] == 3 and second["sample_count"] == 2
    assert first["power_min_w"] == 1000 and first["power_max_w"] == 2200
    if bridged:
        assert first["energy_wh"] == pytest.approx(1000 / 12 + 1600 / 12 + wh)  # 400 Wh
        assert first["coverage"] == pytest.approx(1.0)
        assert first["power_mean_w"] == pytest.approx(1600.0)
        assert second["energy_wh"] == pytest.approx(2 * wh)
        assert second["coverage"] == pytest.approx(2 / 3)
    else:
        assert first["energy_wh"] == pytest.approx(1000 / 12 + 1600 / 12)
        assert first["coverage"] == pytest.approx(2 / 3)
        assert first["power_mean_w"] == pytest.approx(1300.0)
        assert second["energy_wh"] == pytest.approx(wh)
        assert second["coverage"] == pytest.approx(1 / 3)
    assert second["power_mean_w"] == pytest.approx(2200.0)


def test_max_gap_s_beyond_the_default(sessions, tmp_path):
    """A 3-hour gap is a gap under the default (2 h) and integrated with max_gap_s = 4 h."""
    store = SampleStore(tmp_path / "samples")
    t = T0 + np.array([0, 3 * 3600]) * S
    with sessions() as session:
        default = _channel(session)
        long = Channel(
            key="dorpshuis-pipe/load/power-b", asset_id=session.get(Channel, default).asset_id,
            quantity=Quantity.POWER, unit="W", max_gap_s=4 * 3600,
        )  # fmt: skip
        session.add(long)
        session.commit()
        for ch in (default, long.id):
            store.append(ch, t, [800.0, 800.0])
        update_many(store, session)
        got = read_readings(session, [default, long.id]).groupby("channel_id")["energy_wh"].sum()
    assert got[default] == 0
    assert got[long.id] == pytest.approx(800.0 * 3)


def test_update_many_window_and_state(sessions, tmp_path):
    """A window (a campaign period) writes only its ISPs and leaves the state for the rest."""
    store = SampleStore(tmp_path / "samples")
    ts, p, q = _samples(3000)
    with sessions() as session:
        ch = _gap_channel(session, GAP // S)
        store.append(ch, ts, p, q)
        lo = int(ts[1000] - ts[1000] % ISP_NS) + 7 * S  # not on the ISP grid: ISPs from the next
        hi = int(ts[2000] - ts[2000] % ISP_NS)
        (part,) = update_many(store, session, [ch], window=(lo, hi))
        assert part.ranges_ns == [(lo - 7 * S + ISP_NS, hi)]
        assert not state_path(store, ch).is_file()
        starts = _by_isp(session, ch).index + T0
        assert starts.min() == lo - 7 * S + ISP_NS and starts.max() == hi - ISP_NS
        want = _expected(store, ch)
        inside = want[(want.index.asi8 >= lo) & (want.index.asi8 < hi)]
        np.testing.assert_allclose(
            read_readings(session, ch)["energy_wh"], inside["energy_wh"], rtol=1e-12
        )
        (rest,) = update_many(store, session, [ch])
        assert rest.full and state_path(store, ch).is_file()
        _assert_db_matches(session, store, ch)
        # A window that holds every sample advances the state: nothing is left to do.
        store.append(ch, [int(ts[-1]) + 10 * S], [1000.0])
        (last,) = update_many(store, session, [ch], window=(int(ts[0]), int(ts[-1]) + ISP_NS))
        assert not last.full and state_path(store, ch).is_file()
        (idle,) = update_many(store, session, [ch])
        assert idle.new_parts == 0 and idle.isps_written == 0
        _assert_db_matches(session, store, ch)
