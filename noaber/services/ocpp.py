"""The OCPP central system of a site, wired to the centre: samples through its checks into the
sample store, the plan's setpoints as charging profiles, audited.

``noaber ocpp serve --site site.yaml`` (:mod:`noaber.cli.ocpp`) runs it::

    site = load_ocpp_site("site.yaml")                  # the ocpp: section, validated
    service = OcppService(site, engine, store, spool_path=data_dir / "ocpp-spool.sqlite")
    port = await service.start("127.0.0.1", 9000)       # chargers connect to ws://host:port/<id>
    await service.apply("ev-charger-1", 7400, requested_by="mpc")   # a TxProfile, read back
    await service.stop()                                # TxProfiles cleared, last flush

Meter values become samples of the channels the charge point's asset has in the site
description (``power`` <- ``Power.Active.Import``, ``energy_import`` <-
``Energy.Active.Import.Register``, ``energy_export``, ``soc``, ``current``, ``voltage``) and go
the same way as a Modbus gateway's: :class:`~modbus_gateway.spool.StoreAndForward` (spooled
when the store is down) to :class:`~noaber.services.ingest.CentreSink` under the central
system's gateway identity (``ocpp-<site>``, bound to the site; created on first start, audited),
so the plausible ranges, the time window, quarantine and dead letters apply.

A setpoint is clamped to the charger's limits and the site's bounds: the connection
(``grid_import_limit_kw``, ``grid_export_limit_kw``) and the asset's rated power
(``params.max_charge_kw``, ``params.max_discharge_kw``), as a Modbus setpoint is. Every profile
is in the central system's write log (JSON lines, like the Modbus write log) and the audit log
(``device.setpoint``, as a Modbus setpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select

from energy.audit import Actor, record
from energy.chargepoints import bound_site
from energy.db import session_factory
from energy.errors import NoaberError, ValidationError
from energy.gateways import Gateway, GatewaySite, add_gateway, check_gateway_name
from energy.models import Site
from energy.ocppconfig import check_site_ocpp
from energy.rawstore import AnySampleStore
from energy.siteconfig import SiteDocument, load_site_file
from modbus_gateway.driver import WriteRefused, WriteVerifyError
from modbus_gateway.mqtt import Received
from modbus_gateway.ocpp.central import CentralSystem, ProfileResult
from modbus_gateway.ocpp.config import OcppConfig
from modbus_gateway.spool import Sample, StoreAndForward
from noaber.services.ingest import CentreSink

log = logging.getLogger("noaber.services.ocpp")

#: The password hash of the central system's gateway identity: no broker login matches it
#: (it sends in-process, never over MQTT).
NO_BROKER_LOGIN = "!ocpp-central-system"


@dataclass
class OcppSite:
    """A site's OCPP configuration with what the service derives from the site description."""

    doc: SiteDocument
    config: OcppConfig
    source: str
    #: charge point id -> measurand -> channel key
    channels: dict[str, dict[str, str]] = field(default_factory=dict)
    #: channel key -> sign (the channel's sign convention)
    signs: dict[str, int] = field(default_factory=dict)
    #: charge point id -> (lo, hi) [W] from the site's connection and the asset's rating
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def gateway(self) -> str:
        return self.config.gateway or f"ocpp-{self.doc.site.name}"


def ocpp_site(doc: SiteDocument, source: str) -> OcppSite:
    """Validate ``doc``'s ``ocpp:`` section against the rest of the site description
    (:func:`energy.ocppconfig.check_site_ocpp`, as the site import does) and its gateway name.

    Raises
    ------
    ValidationError
        No ``ocpp:`` section, a charge point driving an unknown asset or one without a
        channel for its meter values, a bad gateway name; naming the path.
    """
    checked = check_site_ocpp(doc, source)
    out = OcppSite(doc, checked.config, source, checked.channels, checked.signs, checked.bounds)
    try:
        check_gateway_name(out.gateway)
    except NoaberError as exc:
        raise ValidationError(str(exc), source, "ocpp.gateway") from None
    return out


def load_ocpp_site(path: Path | str) -> OcppSite:
    """Read a site description file and validate its ``ocpp:`` section."""
    return ocpp_site(load_site_file(path), str(path))


def ensure_identity(engine: Engine, site: OcppSite, actor: Actor) -> None:
    """The central system's gateway identity, bound to the site (created and audited once).

    Raises
    ------
    NoaberError
        The site is not imported, or the name is a gateway bound to other sites only.
    """
    name, site_name = site.gateway, site.doc.site.name
    with session_factory(engine).begin() as session:
        if session.scalar(select(Site.id).where(Site.name == site_name)) is None:
            raise NoaberError(f"no site {site_name!r} (import it first: noaber site import FILE)")
        gw = session.scalar(select(Gateway).where(Gateway.name == name))
        if gw is None:
            add_gateway(session, name, [site_name], NO_BROKER_LOGIN)
            record(session, actor, "gateway.add", name, {"sites": [site_name], "kind": "ocpp"})
            return
        bound = session.scalars(
            select(Site.name)
            .join(GatewaySite, GatewaySite.site_id == Site.id)
            .where(GatewaySite.gateway_id == gw.id)
        ).all()
        if site_name not in bound or gw.disabled:
            raise NoaberError(
                f"gateway {name!r} exists but is {'disabled' if gw.disabled else 'not bound'} "
                f"for site {site_name!r} (bound: {', '.join(bound) or 'none'}); set "
                "ocpp.gateway to another name"
            )


class CentreBatches:
    """A :class:`~modbus_gateway.spool.SampleSink` that hands each batch to the centre's
    checks as the central system's gateway identity (what it refuses is dead-lettered
    or quarantined there, with the reason)."""

    def __init__(self, centre: CentreSink, gateway: str):
        self.centre = centre
        self.gateway = gateway
        self.stored = 0
        self.refused = 0
        self.quarantined = 0

    def write(self, samples: Sequence[Sample]) -> None:
        gw = self.gateway
        batch = Received(f"noaber/{gw}/samples", gw, gw, f"ocpp:{uuid.uuid4().hex}", list(samples))
        out = self.centre.write_batch(batch)
        self.stored += out.stored
        self.refused += out.dead_lettered
        self.quarantined += out.quarantined


class OcppService:
    """The central system of one site, its samples to the centre, its profiles audited."""

    def __init__(
        self,
        site: OcppSite,
        engine: Engine,
        store: AnySampleStore,
        spool_path: Path | str,
        actor: Actor,
        log_path: Path | str | None = None,
        flush_interval_s: float = 1.0,
        centre: CentreSink | None = None,
    ):
        self.site = site
        self.engine = engine
        self.actor = actor
        ensure_identity(engine, site, actor)
        self.batches = CentreBatches(centre or CentreSink(store, engine), site.gateway)
        self.forwarder = StoreAndForward(self.batches, spool_path)
        self.central = CentralSystem(
            site.config,
            self._samples,
            site.channels,
            site.bounds,
            log_path=log_path,
            boot_check=self._bound_elsewhere,
            on_rejected=self._audit_rejected,
        )
        self.flush_interval_s = flush_interval_s
        self._stop = asyncio.Event()
        self._flusher: asyncio.Task | None = None

    def _bound_elsewhere(self, cp_id: str) -> str | None:
        """Why a configured charger may not boot here: its id is bound to another site
        (:mod:`energy.chargepoints`, by the site import); None when it may."""
        with session_factory(self.engine)() as session:
            bound = bound_site(session, cp_id)
        here = self.site.doc.site.name
        if bound is not None and bound != here:
            return f"charge point id bound to site {bound!r}, not {here!r}"
        return None

    def _audit_rejected(self, cp_id: str, why: str) -> None:
        """A boot rejected because its id is bound to another site goes to the audit log
        (``ocpp.boot_rejected``); other rejections (unknown ids, retries) are logged only."""
        if "bound to site" not in why:
            return
        with session_factory(self.engine).begin() as session:
            record(
                session,
                self.actor,
                "ocpp.boot_rejected",
                f"{self.site.doc.site.name}/{cp_id}",
                {"charge_point": cp_id, "why": why},
            )

    def _samples(self, samples: list[Sample]) -> None:
        signs = self.site.signs
        self.forwarder.put(
            [
                s
                if signs.get(s.channel, 1) == 1
                else Sample(s.channel, s.ts_ns, -s.value, s.quality)
                for s in samples
            ]
        )

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen for the site's chargers and forward their samples; returns the bound port."""
        self._stop.clear()
        self._flusher = asyncio.create_task(self.forwarder.run(self.flush_interval_s, self._stop))
        # TLS files (security profiles 2, 3) relative to the site file
        return await self.central.start(host, port, Path(self.site.source).parent)

    async def apply(self, asset: str, power_w: float, requested_by: str,
                    duration_s: int | None = None) -> ProfileResult:  # fmt: skip
        """Send ``asset``'s charger a TxProfile within the limits; audited either way.

        Raises :class:`WriteRefused` (a discharge on 1.6/2.0.1, a charger not connected) or
        :class:`WriteVerifyError` (not ``Accepted``, or the composite schedule differs).
        """
        try:
            result = await self.central.apply(asset, power_w, requested_by, duration_s)
        except (WriteRefused, WriteVerifyError) as exc:
            self._audit(asset, power_w, requested_by, None, f"{type(exc).__name__}: {exc}")
            raise
        self._audit(asset, power_w, requested_by, result, result.result)
        return result

    async def release(self, asset: str, requested_by: str) -> str:
        """Clear ``asset``'s TxProfile: its charger goes back to its TxDefaultProfile (in the
        write log); returns the result (:meth:`CentralSystem.clear_profile`)."""
        cp_id = self.site.config.by_asset_id().get(asset)
        if cp_id is None:
            raise NoaberError(f"no charge point drives asset {asset!r}")
        return await self.central.clear_profile(cp_id, requested_by)

    def _audit(self, asset: str, power_w: float, by: str, r: ProfileResult | None, result: str):
        """One ``device.setpoint`` audit entry, as a Modbus setpoint gets (``read_back``: the
        charger answered Accepted and its composite schedule reports the limit sent)."""
        with session_factory(self.engine).begin() as session:
            record(
                session,
                self.actor,
                "device.setpoint",
                f"{self.site.doc.site.name}/{asset}",
                {
                    "control": "ocpp",
                    "requested_w": round(float(power_w), 1),
                    "written_w": None if r is None else round(r.sent_w, 1),
                    # the charger reports the limit back (its composite schedule), not only
                    # "Accepted"
                    "read_back": r is not None and r.ok and r.composite_limit is not None,
                    "by": by,
                    "charge_point": self.site.config.by_asset_id().get(asset),
                    "limit": None if r is None else r.limit,
                    "unit": None if r is None else r.unit,
                    "valid_to": None if r is None else r.valid_to,
                    "result": result,
                },
            )

    async def stop(self, clear_profiles: bool = True) -> None:
        """Clear the TxProfiles (the chargers go to their TxDefaultProfile), close the
        connections, flush the samples."""
        if clear_profiles:
            await self.central.clear_profiles("csms (shutdown)")
        await self.central.stop()
        self._stop.set()
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        await self.forwarder.flush()

    def close(self) -> None:
        self.forwarder.close()
