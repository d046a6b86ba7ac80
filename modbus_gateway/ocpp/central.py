"""The central system (CSMS): chargers connect over websockets, OCPP 1.6J, 2.0.1 or 2.1.

A charger connects to ``ws://host:port/<charge point id>`` with the subprotocol of its version
(``ocpp1.6``, ``ocpp2.0.1``, ``ocpp2.1``). What the central system does:

* **BootNotification**: ``Accepted`` only for a charge point configured for the site, with the
  version it is configured for; any other is ``Rejected`` and logged (the charger may retry).
  Right after acceptance the charger gets its **TxDefaultProfile** (stack level 0, no expiry,
  ``fallback_power_w``): what it does by itself when the controller's profile expires or the
  controller dies.
* **Authorize** and the id token of a transaction: ``Accepted`` only for the site's
  ``id_tokens``; any other ``Invalid`` (1.6: ``Invalid`` too), logged.
* **Heartbeat**, **StatusNotification**: the charger's clock and connector status are kept.
* **StartTransaction / StopTransaction** (1.6), **TransactionEvent** (2.0.1, 2.1): the active
  transaction per charge point; meter values they carry are samples too.
* **MeterValues**: ``Energy.Active.Import.Register`` [Wh], ``Power.Active.Import`` [W],
  ``SoC`` [%], ... become :class:`~modbus_gateway.spool.Sample` objects of the site channels
  the charge point's asset has (``channels``), handed to ``on_samples`` (the application
  sends them through the centre's checks into the sample store).

The plan goes out with :meth:`CentralSystem.apply`: a **TxProfile** (stack level 1, for the
active transaction) with one period, in W or A as the charger is configured, clamped to the
same limits as a Modbus setpoint (the charger's ``max_power_w``/``min_power_w``, its
``limits`` and the site's bounds the application passes in). Every TxProfile carries
``validTo`` and a schedule ``duration`` of ``profile_duration_s``: if no new profile arrives
the charger falls back by itself to its TxDefaultProfile. The result is ``ok`` only when the
charger answered ``Accepted`` and, if it reports a composite schedule
(``GetCompositeSchedule``), that schedule's limit now is what was sent. A negative
(discharge, V2G) setpoint is only sent over OCPP 2.1 (``operationMode`` ``CentralSetpoint``
with a ``dischargeLimit``); on 1.6 and 2.0.1 it is refused with :class:`WriteRefused`.

Every profile is logged like a Modbus write (:class:`~modbus_gateway.writes.WriteLogEntry` in
:attr:`CentralSystem.log`, the logger ``modbus_gateway.ocpp`` and optionally a JSON-lines file),
with who asked for it, the value requested and the value sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import logging
import math
import ssl
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import websockets
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v21 import ChargePoint as Cp21
from ocpp.v21 import call as call21
from ocpp.v21 import call_result as result21
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import InvalidHeader
from websockets.headers import build_www_authenticate_basic, parse_authorization_basic
from websockets.http11 import Request, Response

from energy.errors import NoaberError
from energy.ocppconfig import TlsConfig
from energy.security import DUMMY_HASH, verify_password
from modbus_gateway.driver import WriteRefused, WriteVerifyError
from modbus_gateway.ocpp.config import SUBPROTOCOLS, VERSION_OF, ChargePointConfig, OcppConfig
from modbus_gateway.spool import Sample
from modbus_gateway.writes import WriteLogEntry

log = logging.getLogger("modbus_gateway.ocpp")

#: Measurand -> factor to the stored unit per unit the charger may report.
MEASURAND_UNITS: dict[str, dict[str, float]] = {
    "Energy.Active.Import.Register": {"Wh": 1.0, "kWh": 1000.0},
    "Energy.Active.Export.Register": {"Wh": 1.0, "kWh": 1000.0},
    "Power.Active.Import": {"W": 1.0, "kW": 1000.0},
    "Power.Active.Export": {"W": 1.0, "kW": 1000.0},
    "SoC": {"Percent": 1.0, "%": 1.0},
    "Current.Import": {"A": 1.0},
    "Voltage": {"V": 1.0},
}
#: What a sampled value without a unit is in (the OCPP defaults).
DEFAULT_UNIT = {"Energy": "Wh", "Power": "W", "SoC": "Percent", "Current": "A", "Voltage": "V"}
TX_DEFAULT_PROFILE_ID = 1
TX_PROFILE_STACK_LEVEL = 1


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def server_ssl_context(tls: TlsConfig, base: Path, client_certs: bool) -> ssl.SSLContext:
    """The central system's TLS context: TLS 1.2 or later (OCPP 2.0.1 part 2 A00.FR.314),
    its certificate and key; with ``client_certs`` (profile 3) a client certificate signed
    by ``tls.client_ca_file`` is required.

    Raises
    ------
    NoaberError
        A file that is missing or not a matching certificate/key, naming it.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    cert, key = base / tls.cert_file, base / tls.key_file
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise NoaberError(
            f"ocpp.tls: cannot load cert_file {cert} with key_file {key}: {exc}"
        ) from None
    if client_certs:
        assert tls.client_ca_file is not None
        ca = base / tls.client_ca_file
        try:
            ctx.load_verify_locations(ca)
        except (OSError, ssl.SSLError) as exc:
            raise NoaberError(f"ocpp.tls: cannot load client_ca_file {ca}: {exc}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _client_certificate_problem(ws: ServerConnection, cp_id: str) -> str | None:
    """Why the connection's client certificate does not identify ``cp_id`` (None: it does)."""
    ssl_object = ws.transport.get_extra_info("ssl_object") if ws.transport else None
    cert = ssl_object.getpeercert() if ssl_object is not None else None
    if not cert:
        return "no client certificate"
    names = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    if cp_id not in names:
        return f"client certificate common name {', '.join(names) or 'none'} is not {cp_id!r}"
    return None


def profile_limit(power_w: float, lo_w: float, hi_w: float, w_per_unit: float) -> float:
    """The profile's limit for ``power_w`` [W] clamped to ``[lo_w, hi_w]``, in the profile's
    unit at its resolution (one decimal): rounded to the nearest step that stays within the
    limits (16.04 A max is 16.0 A, never 16.1)."""
    w = min(hi_w, max(lo_w, power_w))
    lo_u = math.ceil(lo_w / w_per_unit * 10 - 1e-9) / 10
    hi_u = math.floor(hi_w / w_per_unit * 10 + 1e-9) / 10
    if lo_u > hi_u:
        raise NoaberError(
            f"no profile limit at 0.1 resolution lies within {lo_w:g}..{hi_w:g} W "
            f"({w_per_unit:g} W per unit)"
        )
    return min(hi_u, max(lo_u, round(w / w_per_unit, 1)))


@dataclass(frozen=True, slots=True)
class ProfileResult:
    """One charging profile sent for a setpoint, and how the charger took it."""

    charge_point: str
    asset: str
    requested_w: float
    sent_w: float  # within the limits [W]
    limit: float  # in the profile's unit
    unit: str  # "W" or "A"
    valid_to: str
    result: str  # "ok", "ok (no composite schedule)", "failed: ...", "refused: ..."
    composite_limit: float | None = None

    @property
    def ok(self) -> bool:
        return self.result.startswith("ok")


@dataclass
class ChargerState:
    """What the central system knows of one configured charge point."""

    config: ChargePointConfig
    connected: bool = False
    accepted: bool = False
    default_profile_ok: bool = False
    status: str = "unknown"
    transaction_id: str | None = None
    id_token: str | None = None
    last_heartbeat: dt.datetime | None = None
    boots: int = 0
    handler: Any = None
    profile_ids: itertools.count = field(default_factory=lambda: itertools.count(100))
    last_profile: ProfileResult | None = None
    power_w: float | None = None  # the latest Power.Active.Import it reported [W, charging +]


class CentralSystem:
    """The OCPP central system of one site (see the module docstring).

    Parameters
    ----------
    config : OcppConfig
        Charge points and id tokens.
    on_samples : callable
        Receives the samples of each meter value message (``list[Sample]``).
    channels : mapping
        Charge point id -> measurand -> channel key (``Power.Active.Import`` ->
        ``dorpshuis/ev-1/power``); measurands without a channel are not stored.
    site_bounds : mapping
        Charge point id -> ``(lo, hi)`` [W] from the site (connection, asset's rated power):
        setpoints are clamped to these too.
    log_path : Path, optional
        JSON-lines audit file of every profile sent.
    boot_check : callable, optional
        ``boot_check(cp_id)`` at every BootNotification of a configured charger: a reason to
        reject it (the application's: its id is bound to another site), or None.
    on_rejected : callable, optional
        ``on_rejected(cp_id, why)`` after a boot is rejected (the application audits it).
    """

    def __init__(
        self,
        config: OcppConfig,
        on_samples: Callable[[list[Sample]], None],
        channels: Mapping[str, Mapping[str, str]] | None = None,
        site_bounds: Mapping[str, tuple[float, float]] | None = None,
        log_path: Path | str | None = None,
        response_timeout_s: float = 10.0,
        boot_check: Callable[[str], str | None] | None = None,
        on_rejected: Callable[[str, str], None] | None = None,
    ):
        self.config = config
        self.on_samples = on_samples
        self.channels = {k: dict(v) for k, v in (channels or {}).items()}
        self.site_bounds = dict(site_bounds or {})
        self.log_path = Path(log_path) if log_path else None
        self.response_timeout_s = response_timeout_s
        self.boot_check = boot_check
        self.on_rejected = on_rejected
        self.chargers = {cp.id: ChargerState(cp) for cp in config.charge_points}
        self.by_asset = {cp.asset: cp.id for cp in config.charge_points}
        self.log: deque[WriteLogEntry] = deque(maxlen=10_000)
        self.rejected: list[tuple[str, str]] = []  # (charge point id, why) of refused boots
        self.refused_tokens: list[tuple[str, str]] = []  # (charge point id, token)
        #: (charge point id, why) of websocket upgrades refused with 401 (profiles 1-3)
        self.refused_connections: list[tuple[str, str]] = []
        self.samples_seen = 0
        self._server: Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._tx_ids = itertools.count(1)

    # ------------------------------------------------------------------ server
    async def start(
        self, host: str = "127.0.0.1", port: int = 0, tls_base: Path | str | None = None
    ) -> int:
        """Listen for chargers; returns the bound port (``port=0``: a free one).

        With ``security_profile`` 2 or 3 it listens with TLS (``wss://``), its files relative
        to ``tls_base`` (the site file's directory; default the working directory); with 1
        or 2 every websocket upgrade needs Basic auth, with 3 a client certificate.

        Raises
        ------
        NoaberError
            A TLS file that cannot be read or does not fit, naming it.
        """
        profile = self.config.security_profile
        ctx = None
        if profile >= 2:
            assert self.config.tls is not None  # the config's validator
            ctx = server_ssl_context(self.config.tls, Path(tls_base or "."), profile == 3)
        elif host not in ("127.0.0.1", "::1", "localhost"):
            log.warning(
                "OCPP central system on %s without security profile: any charger that knows a "
                "charge point id can connect; use security_profile 1-3 outside a trusted network",
                host,
            )
        self._server = await serve(
            self._connection,
            host,
            port,
            subprotocols=list(SUBPROTOCOLS.values()),  # type: ignore[arg-type]
            process_request=self._authenticate if profile else None,
            ssl=ctx,
        )
        sock = next(iter(self._server.sockets))
        return int(sock.getsockname()[1])

    async def _authenticate(self, ws: ServerConnection, request: Request) -> Response | None:
        """The websocket upgrade of security profiles 1-3 (OCPP 2.0.1 part 2 A00.FR): Basic
        auth whose username is the charge point id of the URL and whose password matches its
        Argon2id hash (1, 2), or a client certificate whose common name is that id (3); any
        other upgrade is answered 401 and logged."""
        cp_id = request.path.rstrip("/").rsplit("/", 1)[-1]
        state = self.chargers.get(cp_id)
        if self.config.security_profile == 3:
            why = _client_certificate_problem(ws, cp_id)
            if why is None and state is not None:
                return None
            return self._unauthorized(ws, cp_id, why or "not a charge point of this site")
        header = request.headers.get("Authorization")
        if header is None:
            return self._unauthorized(ws, cp_id, "no credentials (Basic auth required)")
        try:
            username, password = parse_authorization_basic(header)
        except InvalidHeader:
            return self._unauthorized(ws, cp_id, "credentials are not Basic auth")
        known = state is not None and state.config.password_hash is not None
        stored = state.config.password_hash if known and state is not None else DUMMY_HASH
        # Argon2id takes tens of ms of CPU: off the event loop; an unknown id costs the same
        ok = await asyncio.to_thread(verify_password, str(stored), password)
        if not (ok and known and username == cp_id):
            why = "wrong password" if known and username == cp_id else "unknown charge point"
            if known and username != cp_id:
                why = f"username {username!r} is not the charge point id of the URL"
            return self._unauthorized(ws, cp_id, why)
        return None

    def _unauthorized(self, ws: ServerConnection, cp_id: str, why: str) -> Response:
        self.refused_connections.append((cp_id, why))
        log.warning("connection of %r refused (401): %s", cp_id, why)
        response = ws.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        if self.config.security_profile in (1, 2):
            response.headers["WWW-Authenticate"] = build_www_authenticate_basic("noaber ocpp")
        return response

    async def stop(self) -> None:
        """Close every charger's connection and stop listening (the chargers keep their
        profiles, which expire by themselves)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connection(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else "/"
        cp_id = path.rstrip("/").rsplit("/", 1)[-1]
        proto = ws.subprotocol
        if proto is None:
            log.warning("charger %r connected without an OCPP subprotocol: closed", cp_id)
            await ws.close(1002, "an OCPP subprotocol is required")
            return
        version = VERSION_OF[str(proto)]
        cls: Any = {"1.6": _Handler16, "2.0.1": _Handler201, "2.1": _Handler21}[version]
        handler = cls(cp_id, ws, self, version)
        state = self.chargers.get(cp_id)  # its handler is set by an accepted boot
        log.info("charger %r connected (%s)", cp_id, proto)
        try:
            await handler.start()
        except websockets.ConnectionClosed:
            pass
        finally:
            if state is not None and state.handler is handler:
                state.connected = False
                state.accepted = False
                state.handler = None
            log.info("charger %r disconnected", cp_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ what chargers ask
    def boot(self, cp_id: str, version: str, handler: Any) -> bool:
        """Accept a configured charger's boot with its version (it becomes the charge
        point's connection); reject any other, logged."""
        state = self.chargers.get(cp_id)
        if state is None:
            why = "not a charge point of this site"
        elif state.config.ocpp_version != version:
            why = f"configured for OCPP {state.config.ocpp_version}, connected with {version}"
        elif self.boot_check is not None and (refused := self._boot_check(cp_id)) is not None:
            why = refused
        else:
            state.accepted = state.connected = True
            state.handler = handler
            state.boots += 1
            log.info("boot of %r accepted (OCPP %s)", cp_id, version)
            return True
        self.rejected.append((cp_id, why))
        log.warning("boot of %r rejected: %s", cp_id, why)
        if self.on_rejected is not None:
            try:
                self.on_rejected(cp_id, why)
            except Exception as exc:  # the answer still goes out: Rejected
                log.error("boot of %r: recording the rejection failed: %s", cp_id, exc)
        return False

    def _boot_check(self, cp_id: str) -> str | None:
        assert self.boot_check is not None
        try:
            return self.boot_check(cp_id)
        except Exception as exc:  # cannot tell whom it belongs to: not accepted
            return f"its binding could not be checked ({exc})"

    def after_boot(self, cp_id: str) -> None:
        """After the BootNotification response went out: send an accepted charger its
        TxDefaultProfile (the library runs this once the response is sent)."""
        state = self.chargers.get(cp_id)
        if state is not None and state.accepted and state.handler is not None:
            self._spawn(self._send_default_profile(state))

    def token_ok(self, cp_id: str, token: str | None, handler: Any) -> bool:
        state = self.chargers.get(cp_id)
        ok = (
            state is not None
            and state.accepted
            and state.handler is handler
            and token in self.config.id_tokens
        )
        if not ok:
            self.refused_tokens.append((cp_id, str(token)))
            log.warning("id token %r at %r refused", token, cp_id)
        return ok

    def meter_values(self, cp_id: str, meter_value: list[dict[str, Any]], handler: Any) -> None:
        state = self.chargers.get(cp_id)
        if state is None or not state.accepted or state.handler is not handler:
            log.warning("meter values from %r, which is not accepted: ignored", cp_id)
            return
        chans = self.channels.get(cp_id, {})
        out: list[Sample] = []
        for mv in meter_value or []:
            ts_ns = int(parse_time(mv["timestamp"]).timestamp() * 1e9)
            for sv in mv.get("sampled_value") or []:
                measurand = sv.get("measurand", "Energy.Active.Import.Register")
                phase = sv.get("phase")
                key = chans.get(measurand)
                if key is None or phase not in (None, ""):
                    continue
                unit = sv.get("unit") or (sv.get("unit_of_measure") or {}).get("unit")
                unit = unit or DEFAULT_UNIT.get(measurand.split(".")[0], "")
                mult = (sv.get("unit_of_measure") or {}).get("multiplier", 0)
                factor = MEASURAND_UNITS.get(measurand, {}).get(unit)
                if factor is None:
                    log.warning("%s: %s in unit %r not understood: skipped", cp_id, measurand, unit)
                    continue
                try:
                    value = float(sv["value"]) * factor * 10.0 ** int(mult)
                except (TypeError, ValueError):
                    log.warning("%s: %s value %r is not a number", cp_id, measurand, sv["value"])
                    continue
                out.append(Sample(key, ts_ns, value, 0))
                if measurand == "Power.Active.Import":
                    state.power_w = value
        if out:
            self.samples_seen += len(out)
            self.on_samples(out)

    # ------------------------------------------------------------------ limits and profiles
    def limits_w(self, cp_id: str) -> tuple[float, float]:
        """The setpoint range [W]: the charger's own, its ``limits`` and the site's bounds."""
        cfg = self.chargers[cp_id].config
        lo, hi = cfg.min_power_w, cfg.max_power_w
        if cfg.limits.power_w_min is not None:
            lo = max(lo, cfg.limits.power_w_min)
        if cfg.limits.power_w_max is not None:
            hi = min(hi, cfg.limits.power_w_max)
        if cp_id in self.site_bounds:
            slo, shi = self.site_bounds[cp_id]
            lo, hi = max(lo, slo), min(hi, shi)
        if cfg.ocpp_version != "2.1":
            lo = max(lo, 0.0)
        if lo > hi:
            raise NoaberError(f"{cp_id}: the limits exclude every setpoint ({lo:g} > {hi:g} W)")
        return lo, hi

    def _audit(self, cp_id: str, what: str, value: float, by: str, result: str, req: float | None):
        entry = WriteLogEntry(time.time_ns(), cp_id, what, value, by, result, req)
        self.log.append(entry)
        level = logging.INFO if result.startswith("ok") else logging.WARNING
        log.log(level, "profile %s.%s = %s by %s: %s", cp_id, what, value, by, result)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(asdict(entry)) + "\n")

    async def _send_default_profile(self, state: ChargerState) -> None:
        """The charger's own fallback: a TxDefaultProfile with ``fallback_power_w``, no expiry."""
        cfg = state.config
        handler = state.handler
        if handler is None:
            return
        limit = round(cfg.fallback_power_w / cfg.w_per_unit(), 1)
        try:
            status = await handler.set_profile(
                profile_id=TX_DEFAULT_PROFILE_ID,
                purpose="TxDefaultProfile",
                stack_level=0,
                limit=limit,
                transaction_id=None,
                valid_to=None,
                duration=None,
            )
        except Exception as exc:  # a charger that does not answer stays without default
            status = f"no answer ({exc!r})"
        state.default_profile_ok = status == "Accepted"
        result = "ok" if state.default_profile_ok else f"failed: {status}"
        self._audit(
            cfg.id,
            "TxDefaultProfile",
            cfg.fallback_power_w,
            "csms (boot: fallback profile)",
            result,
            None,
        )

    async def apply(
        self,
        asset: str,
        power_w: float,
        requested_by: str,
        duration_s: int | None = None,
    ) -> ProfileResult:
        """Send a TxProfile for ``asset``'s charger: ``power_w`` [W, + = charging] within the
        limits, expiring after ``duration_s`` (default the charger's ``profile_duration_s``).

        Raises
        ------
        WriteRefused
            A discharge setpoint on OCPP 1.6 / 2.0.1, or a charger not connected and accepted.
        WriteVerifyError
            The charger did not answer ``Accepted``, or its composite schedule differs.
        """
        cp_id = self.by_asset.get(asset)
        if cp_id is None:
            raise NoaberError(
                f"no charge point drives asset {asset!r} (known: {', '.join(sorted(self.by_asset))})"
            )
        state = self.chargers[cp_id]
        cfg = state.config
        if not math.isfinite(power_w):
            raise NoaberError(f"setpoint for {asset!r} must be finite, got {power_w}")
        duration = int(duration_s if duration_s is not None else cfg.profile_duration_s)
        if power_w < 0 and cfg.ocpp_version != "2.1":
            msg = (
                f"{cp_id}: a discharge setpoint ({power_w:g} W) needs OCPP 2.1 (V2G); this "
                f"charger speaks OCPP {cfg.ocpp_version}, whose charging profiles cannot discharge"
            )
            self._audit(cp_id, "TxProfile", power_w, requested_by, f"refused: {msg}", power_w)
            raise WriteRefused(msg)
        if state.handler is None or not state.accepted:
            msg = f"{cp_id} is not connected and accepted (status {state.status})"
            self._audit(cp_id, "TxProfile", power_w, requested_by, f"refused: {msg}", power_w)
            raise WriteRefused(msg)
        lo, hi = self.limits_w(cp_id)
        limit = profile_limit(power_w, lo, hi, cfg.w_per_unit())
        sent_w = round(limit * cfg.w_per_unit(), 3)
        valid_to = iso(_now() + dt.timedelta(seconds=duration))
        pid = next(state.profile_ids)
        try:
            status = await state.handler.set_profile(
                profile_id=pid,
                purpose="TxProfile",
                stack_level=TX_PROFILE_STACK_LEVEL,
                limit=limit,
                transaction_id=state.transaction_id,
                valid_to=valid_to,
                duration=duration,
            )
            if status != "Accepted":
                raise WriteVerifyError(f"{cp_id}: SetChargingProfile answered {status}")
            composite = await state.handler.composite_limit()
            if composite is not None and abs(composite - limit) > 0.05 + 1e-9:
                raise WriteVerifyError(
                    f"{cp_id}: sent limit {limit:g} {cfg.rate_unit}, the composite schedule "
                    f"reports {composite:g} {cfg.rate_unit}"
                )
        except (WriteVerifyError, TimeoutError, websockets.ConnectionClosed, Exception) as exc:
            result = ProfileResult(
                cp_id, asset, power_w, sent_w, limit, cfg.rate_unit, valid_to, f"failed: {exc}"
            )
            state.last_profile = result
            self._audit(cp_id, "TxProfile", sent_w, requested_by, result.result, power_w)
            if isinstance(exc, WriteVerifyError):
                raise
            raise WriteVerifyError(f"{cp_id}: no answer to SetChargingProfile: {exc!r}") from exc
        text = "ok" if composite is not None else "ok (no composite schedule reported)"
        result = ProfileResult(
            cp_id, asset, power_w, sent_w, limit, cfg.rate_unit, valid_to, text, composite
        )
        state.last_profile = result
        self._audit(cp_id, "TxProfile", sent_w, requested_by, text, power_w)
        return result

    def ready(self, cp_id: str) -> bool:
        """The charge point is connected and its boot was accepted (profiles can go to it)."""
        state = self.chargers[cp_id]
        return state.handler is not None and state.accepted

    async def composite_limit(self, cp_id: str) -> float | None:
        """What the charger reports it applies now (``GetCompositeSchedule``), in its
        profile unit; None when it reports no composite schedule.

        Raises
        ------
        WriteRefused
            The charger is not connected and accepted.
        """
        state = self.chargers[cp_id]
        if state.handler is None or not state.accepted:
            raise WriteRefused(f"{cp_id} is not connected and accepted (status {state.status})")
        return await state.handler.composite_limit()

    async def clear_profile(self, cp_id: str, requested_by: str) -> str:
        """Clear one charger's TxProfiles: it goes back to its TxDefaultProfile (audited);
        returns the result (``ok``, ``failed: ...``, or ``not connected`` when nothing could be
        sent: its TxProfile then expires by itself at its ``validTo``)."""
        state = self.chargers[cp_id]
        if state.handler is None or not state.accepted:
            result = "not connected: its TxProfile expires by itself"
        else:
            try:
                status = await state.handler.clear_tx_profiles()
                result = "ok" if status == "Accepted" else f"failed: charger answered {status}"
            except Exception as exc:
                result = f"failed: {exc!r}"
        self._audit(cp_id, "ClearChargingProfile", 0.0, requested_by, result, None)
        return result

    async def clear_profiles(self, requested_by: str) -> None:
        """Clear every TxProfile (shutdown): the chargers go back to their TxDefaultProfile."""
        for state in self.chargers.values():
            if state.handler is None or not state.accepted:
                continue
            try:
                status = await state.handler.clear_tx_profiles()
                result = "ok" if status == "Accepted" else f"failed: charger answered {status}"
            except Exception as exc:
                result = f"failed: {exc!r}"
            self._audit(state.config.id, "ClearChargingProfile", 0.0, requested_by, result, None)

    def new_transaction_id(self) -> int:
        return next(self._tx_ids)


# ---------------------------------------------------------------------- per version


class _Common:
    """What the version handlers share (mixed into the library's ChargePoint classes)."""

    central: CentralSystem
    version: str
    id: str

    def _state(self) -> ChargerState | None:
        """The charge point's state if this connection is its accepted one."""
        state = self.central.chargers.get(self.id)
        return state if state is not None and state.handler is self else None

    def _cfg(self) -> ChargePointConfig:
        state = self._state()
        assert state is not None
        return state.config


class _Handler16(_Common, Cp16):
    def __init__(self, cp_id: str, ws: Any, central: CentralSystem, version: str):
        Cp16.__init__(self, cp_id, ws, response_timeout=central.response_timeout_s)
        self.central, self.version = central, version

    @on("BootNotification")
    def on_boot(self, charge_point_vendor: str, charge_point_model: str, **_: Any):
        ok = self.central.boot(self.id, self.version, self)
        return result16.BootNotification(
            current_time=iso(_now()),
            interval=self.central.config.heartbeat_interval_s,
            status="Accepted" if ok else "Rejected",
        )

    @after("BootNotification")
    def after_boot(self, **_: Any) -> None:
        self.central.after_boot(self.id)

    @on("Heartbeat")
    def on_heartbeat(self):
        state = self._state()
        if state is not None:
            state.last_heartbeat = _now()
        return result16.Heartbeat(current_time=iso(_now()))

    @on("StatusNotification")
    def on_status(self, connector_id: int, error_code: str, status: str, **_: Any):
        state = self._state()
        if state is not None and connector_id == state.config.connector_id:
            state.status = status
        return result16.StatusNotification()

    @on("Authorize")
    def on_authorize(self, id_tag: str):
        ok = self.central.token_ok(self.id, id_tag, self)
        return result16.Authorize(id_tag_info={"status": "Accepted" if ok else "Invalid"})

    @on("StartTransaction")
    def on_start(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_: Any):
        ok = self.central.token_ok(self.id, id_tag, self)
        tx = self.central.new_transaction_id()
        state = self._state()
        if ok and state is not None:
            state.transaction_id, state.id_token = str(tx), id_tag
        return result16.StartTransaction(
            transaction_id=tx, id_tag_info={"status": "Accepted" if ok else "Invalid"}
        )

    @on("StopTransaction")
    def on_stop(self, meter_stop: int, timestamp: str, transaction_id: int, **kw: Any):
        state = self._state()
        if state is not None and state.transaction_id == str(transaction_id):
            state.transaction_id = None
        if kw.get("transaction_data"):
            self.central.meter_values(self.id, kw["transaction_data"], self)
        return result16.StopTransaction()

    @on("MeterValues")
    def on_meter_values(self, connector_id: int, meter_value: list, **_: Any):
        self.central.meter_values(self.id, meter_value, self)
        return result16.MeterValues()

    async def set_profile(self, profile_id, purpose, stack_level, limit, transaction_id,
                          valid_to, duration) -> str:  # fmt: skip
        cfg = self._cfg()
        schedule: dict[str, Any] = {
            "charging_rate_unit": cfg.rate_unit,
            "charging_schedule_period": [{"start_period": 0, "limit": limit}],
        }
        profile: dict[str, Any] = {
            "charging_profile_id": profile_id,
            "stack_level": stack_level,
            "charging_profile_purpose": purpose,
            "charging_profile_kind": "Relative" if duration is None else "Absolute",
            "charging_schedule": schedule,
        }
        if duration is not None:  # from now, for duration: then the charger falls back
            schedule["duration"] = duration
            schedule["start_schedule"] = iso(_now())
        if valid_to is not None:
            profile["valid_to"] = valid_to
        if transaction_id is not None and purpose == "TxProfile":
            profile["transaction_id"] = int(transaction_id)
        connector = cfg.connector_id if purpose == "TxProfile" else 0
        resp = await self.call(
            call16.SetChargingProfile(connector_id=connector, cs_charging_profiles=profile)
        )
        return str(resp.status)

    async def composite_limit(self) -> float | None:
        cfg = self._cfg()
        resp = await self.call(
            call16.GetCompositeSchedule(
                connector_id=cfg.connector_id, duration=60, charging_rate_unit=cfg.rate_unit
            )
        )
        if resp.status != "Accepted" or not resp.charging_schedule:
            return None
        periods = resp.charging_schedule["charging_schedule_period"]
        return float(periods[0]["limit"])

    async def clear_tx_profiles(self) -> str:
        resp = await self.call(call16.ClearChargingProfile(charging_profile_purpose="TxProfile"))
        return str(resp.status)


class _Handler2x(_Common):
    """OCPP 2.0.1 and 2.1 (same messages for what the central system uses)."""

    _c: Any
    _r: Any

    @on("BootNotification")
    def on_boot(self, charging_station: dict, reason: str, **_: Any):
        ok = self.central.boot(self.id, self.version, self)
        return self._r.BootNotification(
            current_time=iso(_now()),
            interval=self.central.config.heartbeat_interval_s,
            status="Accepted" if ok else "Rejected",
        )

    @after("BootNotification")
    def after_boot(self, **_: Any) -> None:
        self.central.after_boot(self.id)

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any):
        state = self._state()
        if state is not None:
            state.last_heartbeat = _now()
        return self._r.Heartbeat(current_time=iso(_now()))

    @on("StatusNotification")
    def on_status(self, timestamp: str, connector_status: str, evse_id: int, connector_id: int,
                  **_: Any):  # fmt: skip
        state = self._state()
        if state is not None and evse_id == state.config.connector_id:
            state.status = connector_status
        return self._r.StatusNotification()

    @on("Authorize")
    def on_authorize(self, id_token: dict, **_: Any):
        ok = self.central.token_ok(self.id, id_token.get("id_token"), self)
        return self._r.Authorize(id_token_info={"status": "Accepted" if ok else "Invalid"})

    @on("TransactionEvent")
    def on_transaction_event(self, event_type: str, timestamp: str, trigger_reason: str,
                             seq_no: int, transaction_info: dict, **kw: Any):  # fmt: skip
        state = self._state()
        info: dict[str, Any] | None = None
        if kw.get("id_token") is not None:
            ok = self.central.token_ok(self.id, kw["id_token"].get("id_token"), self)
            info = {"status": "Accepted" if ok else "Invalid"}
            if ok and state is not None:
                state.id_token = kw["id_token"].get("id_token")
                state.transaction_id = transaction_info["transaction_id"]
        elif state is not None and event_type != "Ended" and state.id_token is not None:
            state.transaction_id = transaction_info["transaction_id"]
        if event_type == "Ended" and state is not None:
            state.transaction_id = None
        if kw.get("meter_value"):
            self.central.meter_values(self.id, kw["meter_value"], self)
        return self._r.TransactionEvent(id_token_info=info)

    @on("MeterValues")
    def on_meter_values(self, evse_id: int, meter_value: list, **_: Any):
        self.central.meter_values(self.id, meter_value, self)
        return self._r.MeterValues()

    @on("NotifyEVChargingNeeds")
    def on_needs(self, **_: Any):
        return self._r.NotifyEVChargingNeeds(status="Accepted")

    def _period(self, limit: float) -> dict[str, Any]:
        return {"start_period": 0, "limit": limit}

    async def set_profile(self, profile_id, purpose, stack_level, limit, transaction_id,
                          valid_to, duration) -> str:  # fmt: skip
        cfg = self._cfg()
        schedule: dict[str, Any] = {
            "id": profile_id,
            "charging_rate_unit": cfg.rate_unit,
            "charging_schedule_period": [self._period(limit)],
        }
        profile: dict[str, Any] = {
            "id": profile_id,
            "stack_level": stack_level,
            "charging_profile_purpose": purpose,
            "charging_profile_kind": "Relative" if duration is None else "Absolute",
            "charging_schedule": [schedule],
        }
        if duration is not None:  # from now, for duration: then the charger falls back
            schedule["duration"] = duration
            schedule["start_schedule"] = iso(_now())
        if valid_to is not None:
            profile["valid_to"] = valid_to
        if transaction_id is not None and purpose == "TxProfile":
            profile["transaction_id"] = str(transaction_id)
        evse = cfg.connector_id if purpose == "TxProfile" else 0
        resp = await self.call(self._c.SetChargingProfile(evse_id=evse, charging_profile=profile))  # type: ignore[attr-defined]
        return str(resp.status)

    async def composite_limit(self) -> float | None:
        cfg = self._cfg()
        resp = await self.call(  # type: ignore[attr-defined]
            self._c.GetCompositeSchedule(
                duration=60, evse_id=cfg.connector_id, charging_rate_unit=cfg.rate_unit
            )
        )
        if resp.status != "Accepted" or not resp.schedule:
            return None
        period = resp.schedule["charging_schedule_period"][0]
        if period.get("operation_mode") == "CentralSetpoint" and "setpoint" in period:
            return float(period["setpoint"])
        return float(period["limit"])

    async def clear_tx_profiles(self) -> str:
        resp = await self.call(  # type: ignore[attr-defined]
            self._c.ClearChargingProfile(
                charging_profile_criteria={"charging_profile_purpose": "TxProfile"}
            )
        )
        return str(resp.status)


class _Handler201(_Handler2x, Cp201):
    _c, _r = call201, result201

    def __init__(self, cp_id: str, ws: Any, central: CentralSystem, version: str):
        Cp201.__init__(self, cp_id, ws, response_timeout=central.response_timeout_s)
        self.central, self.version = central, version


class _Handler21(_Handler2x, Cp21):
    """OCPP 2.1: a negative limit is a discharge (V2G) setpoint."""

    _c, _r = call21, result21

    def __init__(self, cp_id: str, ws: Any, central: CentralSystem, version: str):
        Cp21.__init__(self, cp_id, ws, response_timeout=central.response_timeout_s)
        self.central, self.version = central, version

    def _period(self, limit: float) -> dict[str, Any]:
        if limit >= 0:
            return {"start_period": 0, "limit": limit}
        return {
            "start_period": 0,
            "operation_mode": "CentralSetpoint",
            "setpoint": limit,
            "discharge_limit": limit,
            "limit": 0.0,
        }
