"""The centre's checks per sample (:class:`noaber.services.ingest.CentreSink`), on SQLite and
PostgreSQL, without a broker: bound site, plausible range (site limits, rated power, the
device profile's range), time window, forged payloads; quarantine of a changed value and its
explicit, audited resolution."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sqlalchemy import select

from energy.audit import Actor, entries
from energy.gateways import DeadLetter, QuarantinedSample, add_gateway
from energy.models import Asset, AssetKind, Channel, Device, Quantity, Site
from energy.samples import SampleStore
from modbus_gateway.mqtt import Received
from modbus_gateway.spool import Sample
from noaber.services.ingest import CentreSink, resolve_quarantine

S = 1_000_000_000
NOW = 1_796_000_000 * S  # the sink's injected clock


def _site(i: int, **limits) -> Site:
    return Site(
        name=f"site-{i}",
        display_name=f"Site {i}",
        ean=f"87168590000000{i:04d}",
        latitude=52.9,
        longitude=6.6,
        grid_import_limit_kw=limits.get("imp", 40),
        grid_export_limit_kw=limits.get("exp", 25),
    )


@pytest.fixture
def world(sessions):
    with sessions.begin() as session:
        a, b = _site(1), _site(2)
        grid = Asset(site=a, name="grid", kind=AssetKind.METER)
        pv = Asset(site=a, name="pv", kind=AssetKind.PV, params={"peak_kw": 10})
        bat = Asset(site=a, name="battery", kind=AssetKind.BATTERY, params={"max_charge_kw": 5})
        meter_dev = Device(site=a, name="grid-meter", profile="eastron_sdm630", host="127.0.0.1")
        other = Asset(site=b, name="grid", kind=AssetKind.METER)
        chans = [
            Channel(key="site-1/grid/power", asset=grid, quantity=Quantity.POWER, unit="W"),
            Channel(key="site-1/pv/power", asset=pv, quantity=Quantity.POWER, unit="W"),
            Channel(key="site-1/battery/soc", asset=bat, quantity=Quantity.SOC, unit="%"),
            Channel(
                key="site-1/grid/current",
                asset=grid,
                quantity=Quantity.CURRENT,
                unit="A",
                device=meter_dev,
                register="current_l1_a",
            ),
            Channel(key="site-2/grid/power", asset=other, quantity=Quantity.POWER, unit="W"),
        ]
        session.add_all([a, b, grid, pv, bat, meter_dev, other, *chans])
        session.flush()
        add_gateway(session, "gw-1", ["site-1"], "$7$101$x$y")
        add_gateway(session, "gw-2", ["site-2"], "$7$101$x$y")
        ids = {c.key: c.id for c in chans}
    return ids


def _batch(samples, gateway="gw-1", topic_gw="gw-1", batch_id="b:1"):
    return Received(f"noaber/{topic_gw}/samples", topic_gw, gateway, batch_id, list(samples))


def test_checks_each_sample_and_keeps_the_refused_with_the_reason(
    world, engine, sessions, tmp_path
):
    from modbus_gateway.profiles import get_profile

    store = SampleStore(tmp_path / "samples")
    sink = CentreSink(store, engine, max_age_s=86_400, max_future_s=60, now_ns=lambda: NOW)
    t = NOW - 3600 * S
    amp_max = get_profile("eastron_sdm630").registers["current_l1_a"].valid_max
    assert amp_max is not None and amp_max < 1.5 * 80_000 / 230  # tighter than the site's
    good = [
        Sample("site-1/grid/power", t, 59_000.0, 0),  # < 1.5 x 40 kW import
        Sample("site-1/grid/power", t + S, -37_000.0, 0),  # > -1.5 x 25 kW export
        Sample("site-1/pv/power", t, -14_000.0, 0),  # 1.5 x 10 kWp
        Sample("site-1/battery/soc", t, 55.0, 0),
        Sample("site-1/grid/current", t, amp_max - 1, 0),
        Sample("site-1/grid/power", t + 2 * S, math.nan, 2),  # a flagged missing value
    ]
    bad = [
        Sample("site-1/grid/power", t + 3 * S, 61_000.0, 0),  # above the import margin
        Sample("site-1/pv/power", t + S, -16_000.0, 0),  # above its rated power margin
        Sample("site-1/battery/soc", t + S, 101.0, 0),
        Sample("site-1/grid/current", t + S, amp_max + 1, 0),  # beyond the profile's range
        Sample("site-2/grid/power", t, 100.0, 0),  # a channel of another site
        Sample("site-9/grid/power", t, 100.0, 0),  # no such channel
        Sample("site-1/grid/power", NOW + 120 * S, 100.0, 0),  # 2 min ahead
        Sample("site-1/grid/power", NOW - 2 * 86_400 * S, 100.0, 0),  # older than the window
    ]
    from noaber.services.metrics import REGISTRY

    def counted(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = (
        counted("noaber_samples_ingested_total"),
        counted("noaber_samples_dead_lettered_total", reason="implausible_value"),
    )
    out = sink.write_batch(_batch(good + bad))
    assert (out.stored, out.dead_lettered, out.quarantined) == (6, 8, 0)
    # the process's Prometheus counters follow the outcome
    assert counted("noaber_samples_ingested_total") - before[0] == 6
    assert (
        counted("noaber_samples_dead_lettered_total", reason="implausible_value") - before[1] == 4
    )
    assert store.read(world["site-1/grid/power"]).ts.tolist() == [t, t + S, t + 2 * S]
    assert store.read(world["site-2/grid/power"]).ts.size == 0
    with sessions() as session:
        dead = {d.reason: d for d in session.scalars(select(DeadLetter))}
    assert set(dead) == {"implausible_value", "other_site", "unknown_channel", "implausible_time"}
    assert len(dead["implausible_value"].samples) == 4
    assert "60000" in dead["implausible_value"].detail  # the limit it broke, in words
    assert dead["other_site"].samples == [["site-2/grid/power", t, 100.0, 0]]
    assert len(dead["implausible_time"].samples) == 2

    # the same batch again (the gateway did not get the acknowledgement): nothing new
    again = sink.write_batch(_batch(good + bad))
    assert (again.stored, again.quarantined) == (6, 0)
    with sessions() as session:
        assert len(list(session.scalars(select(DeadLetter)))) == 4
    assert len(store.read(world["site-1/grid/power"])) == 3


def test_unknown_gateway_and_forged_payloads_store_nothing(world, engine, sessions, tmp_path):
    store = SampleStore(tmp_path / "samples")
    sink = CentreSink(store, engine, now_ns=lambda: NOW, reload_s=0)
    s = [Sample("site-2/grid/power", NOW - S, 10.0, 0)]
    assert sink.write_batch(_batch(s, "gw-9", "gw-9")).dead_lettered == 1
    # gw-1's credentials on its own topic, claiming to be gw-2 (whose site the channel is)
    assert sink.write_batch(_batch(s, "gw-2", "gw-1", "b:2")).dead_lettered == 1
    # not a samples topic at all
    assert sink.write_batch(Received("noaber/x/y", None, "gw-2", None, s)).dead_lettered == 1
    assert store.read(world["site-2/grid/power"]).ts.size == 0
    with sessions() as session:
        reasons = [d.reason for d in session.scalars(select(DeadLetter).order_by(DeadLetter.id))]
    assert reasons == ["unknown_gateway", "forged_topic", "forged_topic"]
    # the rightful gateway is stored
    assert sink.write_batch(_batch(s, "gw-2", "gw-2", "b:3")).stored == 1


def test_a_changed_value_is_quarantined_until_accepted_or_rejected(
    world, engine, sessions, tmp_path
):
    store = SampleStore(tmp_path / "samples")
    sink = CentreSink(store, engine, now_ns=lambda: NOW)
    cid = world["site-1/grid/power"]
    t = NOW - 600 * S
    sink.write_batch(
        _batch([Sample("site-1/grid/power", t + i * S, 100.0 + i, 0) for i in range(3)])
    )
    out = sink.write_batch(
        _batch(
            [
                Sample("site-1/grid/power", t, 100.0, 0),  # the same: idempotent
                Sample("site-1/grid/power", t + S, 999.0, 0),  # changed
                Sample("site-1/grid/power", t + 2 * S, math.nan, 2),  # changed to missing
                Sample("site-1/grid/power", t + 3 * S, 103.0, 0),  # new
            ],
            batch_id="b:2",
        )
    )
    assert (out.stored, out.quarantined) == (2, 2)
    got = store.read(cid)
    assert got.value.tolist() == [100.0, 101.0, 102.0, 103.0]  # nothing replaced
    sink.write_batch(_batch([Sample("site-1/grid/power", t + S, 999.0, 0)], batch_id="b:3"))
    with sessions() as session:
        q = list(session.scalars(select(QuarantinedSample).order_by(QuarantinedSample.id)))
    assert len(q) == 2  # reported once, however often it comes
    assert (q[0].stored_value, q[0].value, q[0].ts_ns) == (101.0, 999.0, t + S)
    assert q[1].value is None and q[1].quality == 2

    who = Actor("operator-1")
    resolve_quarantine(sessions, store, q[0].id, accept=True, actor=who)
    resolve_quarantine(sessions, store, q[1].id, accept=False, actor=who)
    got = store.read(cid)
    assert got.value.tolist() == [100.0, 999.0, 102.0, 103.0]  # the explicit correction only
    with pytest.raises(Exception, match="accepted already"):
        resolve_quarantine(sessions, store, q[0].id, accept=False, actor=who)
    with sessions() as session:
        audit = [(e.action, e.actor) for e in entries(session, action="quarantine.")]
        q = list(session.scalars(select(QuarantinedSample).order_by(QuarantinedSample.id)))
    assert sorted(audit) == [
        ("quarantine.accept", "operator-1"),
        ("quarantine.reject", "operator-1"),
    ]
    assert [x.status for x in q] == ["accepted", "rejected"]
    assert np.isfinite(store.read(cid).value).all()
