"""The OCPP central system wired to the centre (:mod:`noaber.services.ocpp`), on SQLite and
PostgreSQL: a simulated charger's meter values become site channel samples through the
centre's checks (an implausible one is dead-lettered), the plan's setpoint is clamped to the
site description's limits and audited, and a stop hands the charger back to its default."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from energy.audit import Actor, entries
from energy.errors import ValidationError
from energy.gateways import DeadLetter
from energy.models import Channel
from energy.rawstore import PgSampleStore
from energy.samples import SampleStore
from energy.siteconfig import import_site, parse_site_document
from modbus_gateway.ocpp.sim import SimulatedCharger
from noaber.services.ocpp import OcppService, ocpp_site
from tests.net import scaled, until

SITE = Path(__file__).parents[1] / "data" / "ocpp" / "site_ocpp.yaml"
POWER, ENERGY = "dorpshuis-ocpp/ev-1/power", "dorpshuis-ocpp/ev-1/energy_import"


def _doc(version: str, **cp):
    data = yaml.safe_load(SITE.read_text())
    data["ocpp"]["charge_points"][0].update(ocpp_version=version, **cp)
    return data


@contextlib.asynccontextmanager
async def running(engine, sessions, tmp_path, version):
    doc = parse_site_document(_doc(version), str(SITE))
    with sessions.begin() as session:
        import_site(session, doc, str(SITE))
    store = (
        PgSampleStore(engine, tmp_path / "pg")
        if engine.dialect.name == "postgresql"
        else SampleStore(tmp_path / "samples")
    )
    service = OcppService(
        ocpp_site(doc, str(SITE)),
        engine,
        store,
        tmp_path / "spool.sqlite",
        Actor("installer", "cli"),
        log_path=tmp_path / "profiles.jsonl",
        flush_interval_s=0.05,
    )
    port = await service.start("127.0.0.1", 0)
    sim = SimulatedCharger(f"ws://127.0.0.1:{port}", "CP-1", version, meter_interval_s=0.05)
    task = asyncio.create_task(sim.run())
    try:
        await asyncio.wait_for(sim.charging.wait(), scaled(10))
        state = service.central.chargers["CP-1"]
        await until(lambda: state.default_profile_ok, "the TxDefaultProfile accepted")
        yield service, sim, store
    finally:
        with contextlib.suppress(Exception):
            await service.stop()
        service.close()
        sim.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, scaled(10))


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_meter_values_are_stored_as_site_channels_and_the_plan_is_clamped(
    version, engine, sessions, tmp_path
):
    async with running(engine, sessions, tmp_path, version) as (service, sim, store):
        with sessions() as s:
            ids = dict(s.execute(select(Channel.key, Channel.id)).all())
        # the plan asks 20 kW; the asset's max_charge_kw 7.4 (tighter than the charger's
        # 11 kW and the 40 kW connection) bounds it, as it bounds a Modbus setpoint
        result = await service.apply("ev-1", 20_000, "optimizer.mpc", duration_s=60)
        assert result.ok and result.sent_w == 7400 and sim.power_w == 7400

        def stored_7400() -> int:
            got = store.read(ids[POWER])
            return int((got.value == 7400).sum())

        await until(lambda: stored_7400() >= 3, "7.4 kW samples in the store")
        energy = store.read(ids[ENERGY])
        assert len(energy) >= 3 and (energy.value[1:] >= energy.value[:-1]).all()
        with sessions() as s:
            audit = entries(s, action="device.setpoint")
            assert audit[0].target == "dorpshuis-ocpp/ev-1" and audit[0].actor == "installer"
            d = audit[0].detail
            assert d["requested_w"] == 20_000 and d["written_w"] == 7400 and d["read_back"]
            assert d["control"] == "ocpp" and d["by"] == "optimizer.mpc" and d["result"] == "ok"
            assert entries(s, action="gateway.add")[0].target == "ocpp-dorpshuis-ocpp"

        # a charger that ignores its profile and reports 50 kW: outside the asset's plausible
        # range (7.4 kW x 1.5), so the centre dead-letters it and stores nothing of it
        sim.profiles["TxProfile"].limit_w = 50_000
        sim.max_power_w = 50_000
        sim.update()

        def dead() -> list[DeadLetter]:
            with sessions() as s:
                return list(
                    s.scalars(select(DeadLetter).where(DeadLetter.reason == "implausible_value"))
                )

        await until(lambda: dead(), "the 50 kW sample dead-lettered")
        row = dead()[0]
        assert row.gateway == "ocpp-dorpshuis-ocpp" and "50000" in row.detail
        assert not (store.read(ids[POWER]).value == 50_000).any()

        await service.stop()  # TxProfiles cleared: the charger is back on its default
        assert sim.source == "TxDefaultProfile" and sim.power_w == 4140


def test_the_ocpp_section_is_checked_against_the_site_description():
    data = _doc("2.0.1")
    bad = copy.deepcopy(data)
    bad["assets"][0]["channels"] = []
    with pytest.raises(ValidationError) as err:
        ocpp_site(parse_site_document(bad, "s.yaml"), "s.yaml")
    assert err.value.location == "ocpp.charge_points[0].asset" and "no channel" in str(err.value)
    bad = copy.deepcopy(data)
    bad["ocpp"]["charge_points"][0]["fallback_power_w"] = 9000  # above max_charge_kw 7.4
    with pytest.raises(ValidationError) as err:
        ocpp_site(parse_site_document(bad, "s.yaml"), "s.yaml")
    assert err.value.location == "ocpp.charge_points[0].fallback_power_w"
    bad = copy.deepcopy(data)
    del bad["ocpp"]
    with pytest.raises(ValidationError, match="no ocpp: section"):
        ocpp_site(parse_site_document(bad, "s.yaml"), "s.yaml")
