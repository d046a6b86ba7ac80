"""The OCPP central system against the charge-point simulator (same ``ocpp`` library), over
websockets on loopback, for OCPP 1.6J, 2.0.1 and 2.1: boot, authorisation, meter values,
status and heartbeat, charging profiles within the limits, audit, fail-safe fallback when the
controller dies."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json

import pytest

from energy.errors import ValidationError
from modbus_gateway.driver import WriteRefused, WriteVerifyError
from modbus_gateway.ocpp.central import CentralSystem, profile_limit
from modbus_gateway.ocpp.config import parse_ocpp_section
from modbus_gateway.ocpp.sim import SimulatedCharger
from modbus_gateway.spool import Sample
from tests.net import scaled, until

VERSIONS = ["1.6", "2.0.1", "2.1"]
TOKEN = "04A1B2C3D4"
CHANNELS = {
    "Power.Active.Import": "site/ev-1/power",
    "Energy.Active.Import.Register": "site/ev-1/energy_import",
}


def _config(version: str, **cp):
    base = {
        "id": "CP-1",
        "ocpp_version": version,
        "asset": "ev-1",
        "max_power_w": 11000,
        "fallback_power_w": 4140,
        "limits": {"power_w_max": 7400},
    }
    base.update(cp)
    return parse_ocpp_section({"id_tokens": [TOKEN], "charge_points": [base]}, "site.yaml")


class _World:
    def __init__(self, central: CentralSystem, port: int):
        self.central = central
        self.port = port
        self.samples: list[Sample] = []
        self.sims: list[tuple[SimulatedCharger, asyncio.Task]] = []

    def charger(self, cp_id="CP-1", version="2.0.1", token=TOKEN, **kw) -> SimulatedCharger:
        sim = SimulatedCharger(
            f"ws://127.0.0.1:{self.port}", cp_id, version, token, meter_interval_s=0.05, **kw
        )
        self.sims.append((sim, asyncio.create_task(sim.run())))
        return sim

    async def charging(self, version: str, **kw) -> SimulatedCharger:
        sim = self.charger(version=version, **kw)
        await asyncio.wait_for(sim.charging.wait(), scaled(10))
        state = self.central.chargers["CP-1"]
        await until(lambda: state.default_profile_ok, "the TxDefaultProfile accepted")
        return sim


@contextlib.asynccontextmanager
async def world(config, tmp_path, site_bounds=None):
    samples: list[Sample] = []
    central = CentralSystem(
        config,
        samples.extend,
        {"CP-1": CHANNELS},
        site_bounds or {},
        log_path=tmp_path / "profiles.jsonl",
    )
    port = await central.start("127.0.0.1", 0)
    w = _World(central, port)
    w.samples = samples
    try:
        yield w
    finally:
        for sim, _ in w.sims:
            sim.stop()
        await central.stop()
        for _, task in w.sims:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, scaled(10))


@pytest.mark.parametrize("version", VERSIONS)
async def test_boot_accepted_only_for_a_configured_charger_with_its_version(version, tmp_path):
    other = "2.0.1" if version == "1.6" else "1.6"
    async with world(_config(version), tmp_path) as w:
        good = w.charger(version=version)
        stranger = w.charger(cp_id="CP-UNKNOWN", version=version)
        wrong_version = w.charger(version=other)
        for sim in (good, stranger, wrong_version):
            await asyncio.wait_for(sim.booted.wait(), scaled(10))
        assert good.boot_status == "Accepted"
        assert stranger.boot_status == "Rejected"
        assert wrong_version.boot_status == "Rejected"
        whys = dict(w.central.rejected)
        assert whys["CP-UNKNOWN"] == "not a charge point of this site"
        assert f"configured for OCPP {version}, connected with {other}" in whys["CP-1"]
        await asyncio.wait_for(good.charging.wait(), scaled(10))
        # the accepted charger got its own fallback right after boot, audited
        await until(lambda: w.central.chargers["CP-1"].default_profile_ok, "TxDefaultProfile")
        assert ("TxDefaultProfile", 4140.0) in good.profiles_received
        entry = next(e for e in w.central.log if e.register == "TxDefaultProfile")
        assert entry.result == "ok" and entry.value == 4140.0


@pytest.mark.parametrize("version", VERSIONS)
async def test_an_unknown_id_token_is_refused_and_no_transaction_starts(version, tmp_path):
    async with world(_config(version), tmp_path) as w:
        sim = w.charger(version=version, token="DEADBEEF")
        await asyncio.wait_for(sim.booted.wait(), scaled(10))
        await until(lambda: sim.auth_status is not None, "the Authorize answer")
        assert sim.boot_status == "Accepted" and sim.auth_status == "Invalid"
        assert ("CP-1", "DEADBEEF") in w.central.refused_tokens
        assert sim.transaction_id is None
        assert w.central.chargers["CP-1"].transaction_id is None


@pytest.mark.parametrize("version", VERSIONS)
async def test_meter_values_follow_the_profile_and_arrive_as_site_channel_samples(
    version, tmp_path
):
    cfg = _config(version)
    cfg.heartbeat_interval_s = 1
    async with world(cfg, tmp_path) as w:
        sim = await w.charging(version)
        state = w.central.chargers["CP-1"]
        assert state.transaction_id is not None and state.id_token == TOKEN
        assert state.status == ("Charging" if version == "1.6" else "Occupied")
        await until(lambda: sim.heartbeats >= 1, "a heartbeat answered (interval 1 s)")
        assert sim.heartbeat_interval_s == 1 and state.last_heartbeat is not None
        result = await w.central.apply("ev-1", 5000, "optimizer.mpc", duration_s=60)
        assert result.ok and result.sent_w == 5000 and result.composite_limit == 5000
        assert sim.source == "TxProfile" and sim.power_w == 5000
        t0 = len(w.samples)
        await until(
            lambda: sum(s.channel == CHANNELS["Power.Active.Import"] for s in w.samples[t0:]) >= 4,
            "meter values after the profile",
        )
        after = w.samples[t0:]
        powers = [s.value for s in after if s.channel == CHANNELS["Power.Active.Import"]]
        assert powers and all(p == 5000 for p in powers[1:])
        energy = [s for s in after if s.channel == CHANNELS["Energy.Active.Import.Register"]]
        # the register grows at the profile's 5 kW: Wh = W x s / 3600, within rounding
        first, last = energy[1], energy[-1]
        dt_s = (last.ts_ns - first.ts_ns) / 1e9
        assert dt_s > 0
        assert last.value - first.value == pytest.approx(5000 * dt_s / 3600, abs=0.5)
        assert {s.channel for s in w.samples} == set(CHANNELS.values())


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_too_high_setpoint_is_clamped_to_the_site_limits_and_audited(version, tmp_path):
    cfg = _config(version, rate_unit="A", phases=3, voltage_v=230)
    async with world(cfg, tmp_path, site_bounds={"CP-1": (0.0, 9000.0)}) as w:
        sim = await w.charging(version)
        result = await w.central.apply("ev-1", 22000, "optimizer.mpc", duration_s=60)
        # limits.power_w_max 7400 W (tighter than the site's 9000 and the charger's 11000):
        # 7400 / (3 x 230) = 10.72 A -> 10.7 A at the profile's resolution = 7383 W
        assert result.ok and result.unit == "A" and result.limit == 10.7
        assert result.sent_w == pytest.approx(7383.0)
        assert sim.power_w == pytest.approx(7383.0) and sim.power_w <= 7400
        lines = [json.loads(x) for x in (tmp_path / "profiles.jsonl").read_text().splitlines()]
        tx = [x for x in lines if x["register"] == "TxProfile"]
        assert tx[-1]["requested_by"] == "optimizer.mpc" and tx[-1]["requested_value"] == 22000
        assert tx[-1]["value"] == pytest.approx(7383.0) and tx[-1]["result"] == "ok"


def test_profile_limit_never_rounds_past_a_limit():
    # 16.04 A max must not become 16.1; a 6 A minimum stays 6.0 A
    assert profile_limit(99_000, 0, 16.04 * 690, 690) == 16.0
    assert profile_limit(100, 6.01 * 690, 11_000, 690) == 6.1
    assert profile_limit(-10_000, -3000, 7400, 1.0) == -3000.0


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_discharge_setpoint_is_refused_before_ocpp_2_1(version, tmp_path):
    async with world(_config(version), tmp_path) as w:
        sim = await w.charging(version)
        with pytest.raises(WriteRefused, match=r"needs OCPP 2\.1"):
            await w.central.apply("ev-1", -3000, "optimizer.mpc")
        assert sim.power_w == 4140  # nothing sent: the charger keeps its default
        assert w.central.log[-1].result.startswith("refused: ")


async def test_v2g_discharge_on_ocpp_2_1_within_the_discharge_limit(tmp_path):
    cfg = _config("2.1", min_power_w=-3700)
    async with world(cfg, tmp_path) as w:
        sim = await w.charging("2.1")
        result = await w.central.apply("ev-1", -9000, "optimizer.mpc", duration_s=60)
        assert result.ok and result.sent_w == -3700 and result.composite_limit == -3700
        assert sim.power_w == -3700


def test_discharge_config_needs_2_1_and_errors_name_the_path():
    with pytest.raises(ValidationError) as err:
        _config("2.0.1", min_power_w=-3700)
    assert err.value.location == "ocpp.charge_points[0]"
    assert "needs ocpp_version 2.1" in str(err.value)
    with pytest.raises(ValidationError) as err:
        parse_ocpp_section(
            {
                "charge_points": [
                    {"id": "A", "asset": "ev-9", "max_power_w": 1, "fallback_power_w": 0}
                ]
            },
            "site.yaml",
            {"ev-1"},
        )
    assert err.value.location == "ocpp.charge_points[0].asset" and "ev-9" in str(err.value)
    with pytest.raises(ValidationError) as err:
        _config("1.6", ocpp_version="1.5")
    assert err.value.location == "ocpp.charge_points[0].ocpp_version"


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_profile_the_charger_does_not_accept_is_not_ok(version, tmp_path, monkeypatch):
    async with world(_config(version), tmp_path) as w:
        sim = await w.charging(version)
        monkeypatch.setattr(sim, "hold", lambda *a, **k: False)  # the charger answers Rejected
        with pytest.raises(WriteVerifyError, match="answered Rejected"):
            await w.central.apply("ev-1", 5000, "optimizer.mpc")
        assert w.central.log[-1].result.startswith("failed: ")
        assert sim.power_w == 4140


@pytest.mark.parametrize("version", VERSIONS)
async def test_controller_killed_the_charger_falls_back_at_profile_expiry(version, tmp_path):
    async with world(_config(version), tmp_path) as w:
        sim = await w.charging(version)
        result = await w.central.apply("ev-1", 7000, "optimizer.mpc", duration_s=1)
        sent = dt.datetime.now(dt.UTC)
        assert result.ok and sim.power_w == 7000
        await w.central.stop()  # the controller dies: no more profiles, no clear
        await asyncio.wait_for(sim.fell_back.wait(), scaled(10))
        assert sim.source == "TxDefaultProfile" and sim.power_w == 4140
        assert sim.fell_back_at is not None
        # not before the profile's validTo (1 s after it was sent)
        valid_to = dt.datetime.fromisoformat(result.valid_to.replace("Z", "+00:00"))
        assert sim.fell_back_at >= valid_to
        assert (sim.fell_back_at - sent).total_seconds() < scaled(5)
