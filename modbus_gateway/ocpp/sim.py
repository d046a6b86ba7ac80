"""A charge point built with the ``ocpp`` library: it models a real charger's behaviour.

:class:`SimulatedCharger` connects to a central system over websockets (the subprotocol of
its version), sends BootNotification (and stops if it is rejected), Authorize with its id
token, starts a transaction (1.6 StartTransaction, 2.x TransactionEvent ``Started``) and then,
every ``meter_interval_s``, MeterValues (1.6) / TransactionEvent ``Updated`` (2.x) with
``Energy.Active.Import.Register`` [Wh] and ``Power.Active.Import`` [W], and a Heartbeat every
interval the BootNotification answer gives.

The power it draws follows the charging profiles it holds, as a charger does: the
TxProfile while it is valid (``validTo`` and the schedule's ``startSchedule + duration``),
then the TxDefaultProfile, then its own maximum; limits in A are W / (phases x voltage).
The energy register integrates that power over time. When a TxProfile expires without being
replaced the charger falls back by itself (:attr:`SimulatedCharger.fell_back` is set, the
time in :attr:`fell_back_at`), whether or not the central system is still connected.
A negative limit (discharge) is accepted only on OCPP 2.1 (``CentralSetpoint``); on 1.6 and
2.0.1 the profile is ``Rejected``, as their schema allows only charging.

For the security profiles it sends HTTP Basic auth (its id and ``password``) on the
websocket upgrade and connects with TLS (``wss://`` and ``ssl_context``, which carries its
client certificate for profile 3); a refused upgrade raises ``InvalidStatus`` (401) from
:meth:`SimulatedCharger.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import ssl
from dataclasses import dataclass
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v21 import ChargePoint as Cp21
from ocpp.v21 import call as call21
from ocpp.v21 import call_result as result21
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.asyncio.client import ClientConnection, connect
from websockets.headers import build_authorization_basic

from modbus_gateway.ocpp.central import iso, parse_time
from modbus_gateway.ocpp.config import SUBPROTOCOLS

log = logging.getLogger("modbus_gateway.ocpp.sim")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class HeldProfile:
    """A charging profile the charger holds: its limit [W] and until when it applies."""

    purpose: str
    profile_id: int
    limit_w: float
    expires: dt.datetime | None


class SimulatedCharger:
    """A charger for tests and the demo (see the module docstring)."""

    def __init__(
        self,
        url: str,
        cp_id: str,
        version: str = "2.0.1",
        id_token: str = "04A1B2C3D4",
        max_power_w: float = 11_000.0,
        phases: int = 3,
        voltage_v: float = 230.0,
        connector_id: int = 1,
        meter_interval_s: float = 0.2,
        composite_schedule: bool = True,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.url = url.rstrip("/") + "/" + cp_id
        self.cp_id = cp_id
        self.version = version
        self.id_token = id_token
        self.max_power_w = max_power_w
        self.phases = phases
        self.voltage_v = voltage_v
        self.connector_id = connector_id
        self.meter_interval_s = meter_interval_s
        self.composite_schedule = composite_schedule
        #: Security profiles 1-2: Basic auth as the charge point id with this password;
        #: profiles 2-3: TLS (``wss://``) with this context (a client certificate for 3).
        self.password = password
        self.ssl_context = ssl_context
        self.profiles: dict[str, HeldProfile] = {}
        self.energy_wh = 0.0
        self.power_w = 0.0
        self.source = "max"
        self.boot_status: str | None = None
        self.auth_status: str | None = None
        self.transaction_id: str | None = None
        self.booted = asyncio.Event()
        self.charging = asyncio.Event()
        self.fell_back = asyncio.Event()
        self.fell_back_at: dt.datetime | None = None
        self.profiles_received: list[tuple[str, float]] = []  # (purpose, limit W)
        self.meter_messages = 0
        self.heartbeat_interval_s: float | None = None  # from the BootNotification answer
        self.heartbeats = 0
        self._stop = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._cp: Any = None
        self._seq = 0

    # ------------------------------------------------------------------ profiles
    def w_per(self, unit: str) -> float:
        return 1.0 if unit == "W" else self.phases * self.voltage_v

    def hold(self, purpose: str, profile_id: int, limit: float, unit: str,
             start: str | None, duration: int | None, valid_to: str | None) -> bool:  # fmt: skip
        """Take a profile (False: refused); ``limit`` in ``unit``."""
        if purpose not in ("TxProfile", "TxDefaultProfile"):
            return False
        if limit < 0 and self.version != "2.1":
            return False
        expires: dt.datetime | None = None
        if duration is not None:
            begin = parse_time(start) if start else _now()
            expires = begin + dt.timedelta(seconds=duration)
        if valid_to is not None:
            vt = parse_time(valid_to)
            expires = vt if expires is None else min(expires, vt)
        self.profiles[purpose] = HeldProfile(purpose, profile_id, limit * self.w_per(unit), expires)
        self.profiles_received.append((purpose, limit * self.w_per(unit)))
        self.update()
        return True

    def clear(self, purpose: str | None) -> None:
        for p in list(self.profiles):
            if purpose is None or p == purpose:
                del self.profiles[p]
        self.update()

    def limit_now(self, now: dt.datetime | None = None) -> tuple[float, str]:
        """The limit in force [W] and where it comes from (``TxProfile``,
        ``TxDefaultProfile`` or ``max``)."""
        now = now or _now()
        for purpose in ("TxProfile", "TxDefaultProfile"):
            p = self.profiles.get(purpose)
            if p is not None and (p.expires is None or now < p.expires):
                return p.limit_w, purpose
        return self.max_power_w, "max"

    def update(self) -> None:
        limit, source = self.limit_now()
        if self.source == "TxProfile" and source != "TxProfile" and "TxProfile" in self.profiles:
            self.fell_back_at = _now()
            self.fell_back.set()
            log.info("%s: TxProfile expired, falls back to %s (%g W)", self.cp_id, source, limit)
        if source == "TxProfile":
            self.fell_back.clear()
        self.source = source
        self.power_w = max(-self.max_power_w, min(self.max_power_w, limit))

    # ------------------------------------------------------------------ life
    async def run(self) -> None:
        """Connect, boot, authorise, charge and send meter values until :meth:`stop`.

        The charger's physics (its profiles expiring, the energy register) runs on its own
        task, whatever the connection does: a central system that is gone (closed, or not
        answering a call) leaves the charger charging on its profiles until :meth:`stop`.
        """
        proto = SUBPROTOCOLS[self.version]
        headers = {}
        if self.password is not None:
            headers["Authorization"] = build_authorization_basic(self.cp_id, self.password)
        extra: dict[str, Any] = {} if self.ssl_context is None else {"ssl": self.ssl_context}
        async with connect(
            self.url,
            subprotocols=[proto],  # type: ignore[list-item]
            additional_headers=headers,
            **extra,
        ) as ws:
            self._ws = ws
            cls: Any = {"1.6": _Sim16, "2.0.1": _Sim201, "2.1": _Sim21}[self.version]
            cp = cls(self.cp_id, ws, self)
            self._cp = cp
            serving = asyncio.create_task(cp.start())
            physics: asyncio.Task | None = None
            try:
                self.boot_status = await cp.boot()
                self.booted.set()
                if self.boot_status != "Accepted":
                    return
                self.auth_status = await cp.authorize()
                if self.auth_status != "Accepted":
                    return
                await cp.status("Occupied" if self.version != "1.6" else "Charging")
                await cp.start_transaction()
                if self.transaction_id is None:
                    return
                physics = asyncio.create_task(self._physics())
                self.charging.set()
                await self._meter_loop(cp)
            except (websockets.ConnectionClosed, TimeoutError) as exc:
                log.info("%s: central system gone (%r); charges on its profiles", self.cp_id, exc)
                if physics is not None:
                    await self._stop.wait()
            finally:
                for task in (serving, physics):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(BaseException):
                            await task

    async def _physics(self) -> None:
        """Every ``meter_interval_s``: the energy register grows at the power drawn, and the
        profiles in force are re-evaluated (an expired TxProfile falls back)."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.meter_interval_s)
            t = loop.time()
            self.energy_wh += self.power_w * (t - last) / 3600.0
            last = t
            self.update()

    async def _meter_loop(self, cp: Any) -> None:
        loop = asyncio.get_running_loop()
        beat = loop.time()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.meter_interval_s)
            if self._stop.is_set():
                break
            now = loop.time()
            if self.heartbeat_interval_s and now - beat >= self.heartbeat_interval_s:
                await cp.heartbeat()
                self.heartbeats += 1
                beat = now
            await cp.send_meter_values()
            self.meter_messages += 1

    def stop(self) -> None:
        self._stop.set()

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def meter_value(self, v16: bool) -> list[dict[str, Any]]:
        e, p = round(self.energy_wh, 1), round(self.power_w, 1)
        sv: list[dict[str, Any]]
        if v16:
            sv = [
                {"value": str(e), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                {"value": str(p), "measurand": "Power.Active.Import", "unit": "W"},
            ]
        else:
            sv = [
                {
                    "value": e,
                    "measurand": "Energy.Active.Import.Register",
                    "unit_of_measure": {"unit": "Wh"},
                },
                {"value": p, "measurand": "Power.Active.Import", "unit_of_measure": {"unit": "W"}},
            ]
        return [{"timestamp": iso(_now()), "sampled_value": sv}]


class _Sim16(Cp16):
    def __init__(self, cp_id: str, ws: Any, sim: SimulatedCharger):
        super().__init__(cp_id, ws, response_timeout=10)
        self.sim = sim

    async def boot(self) -> str:
        r = await self.call(
            call16.BootNotification(charge_point_model="SimCharger", charge_point_vendor="Noaber")
        )
        self.sim.heartbeat_interval_s = float(r.interval)
        return str(r.status)

    async def heartbeat(self) -> None:
        await self.call(call16.Heartbeat())

    async def authorize(self) -> str:
        r = await self.call(call16.Authorize(id_tag=self.sim.id_token))
        return str(r.id_tag_info["status"])

    async def status(self, status: str) -> None:
        await self.call(
            call16.StatusNotification(
                connector_id=self.sim.connector_id, error_code="NoError", status=status
            )
        )

    async def start_transaction(self) -> None:
        r = await self.call(
            call16.StartTransaction(
                connector_id=self.sim.connector_id,
                id_tag=self.sim.id_token,
                meter_start=int(self.sim.energy_wh),
                timestamp=iso(_now()),
            )
        )
        if r.id_tag_info["status"] == "Accepted":
            self.sim.transaction_id = str(r.transaction_id)

    async def send_meter_values(self) -> None:
        await self.call(
            call16.MeterValues(
                connector_id=self.sim.connector_id,
                transaction_id=int(self.sim.transaction_id or 0),
                meter_value=self.sim.meter_value(v16=True),
            )
        )

    @on("SetChargingProfile")
    def on_set_profile(self, connector_id: int, cs_charging_profiles: dict):
        p = cs_charging_profiles
        sch = p["charging_schedule"]
        ok = self.sim.hold(
            p["charging_profile_purpose"],
            p["charging_profile_id"],
            float(sch["charging_schedule_period"][0]["limit"]),
            sch["charging_rate_unit"],
            sch.get("start_schedule"),
            sch.get("duration"),
            p.get("valid_to"),
        )
        return result16.SetChargingProfile(status="Accepted" if ok else "Rejected")

    @on("GetCompositeSchedule")
    def on_composite(self, connector_id: int, duration: int, charging_rate_unit: str = "W"):
        if not self.sim.composite_schedule:
            return result16.GetCompositeSchedule(status="Rejected")
        limit_w, _src = self.sim.limit_now()
        return result16.GetCompositeSchedule(
            status="Accepted",
            connector_id=connector_id,
            schedule_start=iso(_now()),
            charging_schedule={
                "duration": duration,
                "charging_rate_unit": charging_rate_unit,
                "charging_schedule_period": [
                    {
                        "start_period": 0,
                        "limit": round(limit_w / self.sim.w_per(charging_rate_unit), 1),
                    }
                ],
            },
        )

    @on("ClearChargingProfile")
    def on_clear(self, **kw: Any):
        self.sim.clear(kw.get("charging_profile_purpose"))
        return result16.ClearChargingProfile(status="Accepted")


class _Sim2x:
    sim: SimulatedCharger
    _c: Any
    _r: Any

    async def boot(self) -> str:
        r = await self.call(  # type: ignore[attr-defined]
            self._c.BootNotification(
                charging_station={"model": "SimCharger", "vendor_name": "Noaber"},
                reason="PowerUp",
            )
        )
        self.sim.heartbeat_interval_s = float(r.interval)
        return str(r.status)

    async def heartbeat(self) -> None:
        await self.call(self._c.Heartbeat())  # type: ignore[attr-defined]

    async def authorize(self) -> str:
        r = await self.call(  # type: ignore[attr-defined]
            self._c.Authorize(id_token={"id_token": self.sim.id_token, "type": "ISO14443"})
        )
        return str(r.id_token_info["status"])

    async def status(self, status: str) -> None:
        await self.call(  # type: ignore[attr-defined]
            self._c.StatusNotification(
                timestamp=iso(_now()),
                connector_status=status,
                evse_id=self.sim.connector_id,
                connector_id=1,
            )
        )

    async def start_transaction(self) -> None:
        tx = f"{self.sim.cp_id}-tx-1"
        r = await self.call(  # type: ignore[attr-defined]
            self._c.TransactionEvent(
                event_type="Started",
                timestamp=iso(_now()),
                trigger_reason="Authorized",
                seq_no=self.sim.next_seq(),
                transaction_info={"transaction_id": tx, "charging_state": "Charging"},
                id_token={"id_token": self.sim.id_token, "type": "ISO14443"},
                evse={"id": self.sim.connector_id, "connector_id": 1},
                meter_value=self.sim.meter_value(v16=False),
            )
        )
        if r.id_token_info and r.id_token_info["status"] == "Accepted":
            self.sim.transaction_id = tx

    async def send_meter_values(self) -> None:
        await self.call(  # type: ignore[attr-defined]
            self._c.TransactionEvent(
                event_type="Updated",
                timestamp=iso(_now()),
                trigger_reason="MeterValuePeriodic",
                seq_no=self.sim.next_seq(),
                transaction_info={"transaction_id": self.sim.transaction_id},
                meter_value=self.sim.meter_value(v16=False),
            )
        )

    @on("SetChargingProfile")
    def on_set_profile(self, evse_id: int, charging_profile: dict, **_: Any):
        p = charging_profile
        sch = p["charging_schedule"][0]
        period = sch["charging_schedule_period"][0]
        limit = period.get("limit", 0.0)
        if period.get("operation_mode") == "CentralSetpoint" and "setpoint" in period:
            limit = period["setpoint"]
        ok = self.sim.hold(
            p["charging_profile_purpose"],
            p["id"],
            float(limit),
            sch["charging_rate_unit"],
            sch.get("start_schedule"),
            sch.get("duration"),
            p.get("valid_to"),
        )
        return self._r.SetChargingProfile(status="Accepted" if ok else "Rejected")

    @on("GetCompositeSchedule")
    def on_composite(self, duration: int, evse_id: int, charging_rate_unit: str = "W", **_: Any):
        if not self.sim.composite_schedule:
            return self._r.GetCompositeSchedule(status="Rejected")
        limit_w, _src = self.sim.limit_now()
        value = round(limit_w / self.sim.w_per(charging_rate_unit), 1)
        period: dict[str, Any] = {"start_period": 0, "limit": max(value, 0.0)}
        if value < 0:
            period.update(operation_mode="CentralSetpoint", setpoint=value, discharge_limit=value)
        return self._r.GetCompositeSchedule(
            status="Accepted",
            schedule={
                "evse_id": evse_id,
                "duration": duration,
                "schedule_start": iso(_now()),
                "charging_rate_unit": charging_rate_unit,
                "charging_schedule_period": [period],
            },
        )

    @on("ClearChargingProfile")
    def on_clear(self, **kw: Any):
        crit = kw.get("charging_profile_criteria") or {}
        self.sim.clear(crit.get("charging_profile_purpose"))
        return self._r.ClearChargingProfile(status="Accepted")


class _Sim201(_Sim2x, Cp201):
    _c, _r = call201, result201

    def __init__(self, cp_id: str, ws: Any, sim: SimulatedCharger):
        Cp201.__init__(self, cp_id, ws, response_timeout=10)
        self.sim = sim


class _Sim21(_Sim2x, Cp21):
    _c, _r = call21, result21

    def __init__(self, cp_id: str, ws: Any, sim: SimulatedCharger):
        Cp21.__init__(self, cp_id, ws, response_timeout=10)
        self.sim = sim
