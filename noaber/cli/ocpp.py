"""``noaber ocpp serve|check|simulate|hash-password``: the OCPP central system of a site and a test charger.

Registered on the root app by :func:`register` (``noaber.cli.COMMAND_MODULES``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Annotated

import typer

from noaber.console import console, err_console

ocpp_app = typer.Typer(
    help="OCPP chargers (1.6J, 2.0.1, 2.1): the central system and a charge-point simulator.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``ocpp`` (serve/check/simulate) to the root app."""
    app.add_typer(ocpp_app, name="ocpp")


@ocpp_app.command("check")
def check(
    site: Annotated[
        Path, typer.Option("--site", help="Site description YAML with an ocpp: section")
    ],
) -> None:
    """Validate SITE's ocpp: section (charge points, id tokens) against its assets."""
    from noaber.services.ocpp import load_ocpp_site

    s = load_ocpp_site(site)
    for cp in s.config.charge_points:
        lo, hi = s.bounds[cp.id]
        chans = ", ".join(f"{m} -> {k}" for m, k in s.channels[cp.id].items())
        console.print(
            f"{cp.id}: OCPP {cp.ocpp_version}, drives {cp.asset}, profiles in {cp.rate_unit}, "
            f"{max(lo, cp.min_power_w):g}..{min(hi, cp.max_power_w):g} W, fallback "
            f"{cp.fallback_power_w:g} W; {chans}",
            highlight=False,
        )
    console.print(
        f"{len(s.config.charge_points)} charge point(s), {len(s.config.id_tokens)} id token(s)"
    )


@ocpp_app.command("serve")
def serve(
    site: Annotated[
        Path, typer.Option("--site", help="Site description YAML with an ocpp: section")
    ],
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: a free one)")] = 9000,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C)")
    ] = None,
    spool: Annotated[Path | None, typer.Option(help="Spool file (SQLite)")] = None,
) -> None:
    """Accept SITE's chargers at ws://HOST:PORT/<charge point id>; meter values into the store.

    Only charge points of SITE's ocpp: section boot (others are Rejected, logged); only its
    id tokens are accepted. On stop the chargers' TxProfiles are cleared: they fall back to
    their TxDefaultProfile (fallback_power_w).
    """
    import logging

    from energy.db import make_engine
    from energy.rawstore import open_sample_store
    from energy.settings import load_settings
    from noaber.cli.audit import actor
    from noaber.services.ocpp import OcppService, load_ocpp_site

    s = load_ocpp_site(site)
    settings = load_settings()
    engine = make_engine(settings.sqlalchemy_url)
    store = open_sample_store(settings, engine)
    spool_path = spool or settings.data_dir / f"ocpp-{s.doc.site.name}-spool.sqlite"
    logging.getLogger("modbus_gateway.ocpp").setLevel(logging.INFO)

    async def main() -> None:
        service = OcppService(
            s,
            engine,
            store,
            spool_path,
            actor(),
            log_path=Path(spool_path).with_name(f"ocpp-{s.doc.site.name}-profiles.jsonl"),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        bound = await service.start(host, port)
        err_console.print(
            f"OCPP central system of {s.doc.site.name} on "
            f"{'wss' if s.config.security_profile >= 2 else 'ws'}://{host}:{bound}/<charge point id> "
            f"(security profile {s.config.security_profile}) "
            f"({', '.join(cp.id for cp in s.config.charge_points)})",
            soft_wrap=True,
        )
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
        finally:
            await service.stop()
            waiting = len(service.forwarder.spool)
            service.close()
        b = service.batches
        console.print(
            f"{service.central.samples_seen} samples received, {b.stored} stored, "
            f"{b.refused} dead-lettered, {b.quarantined} quarantined, "
            f"{waiting} waiting in {spool_path}",
            soft_wrap=True,
        )

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@ocpp_app.command("hash-password")
def hash_password_command(
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Read the password from standard input (one line)")
    ] = False,
) -> None:
    """Print the Argon2id hash of a charger's Basic auth password (security profiles 1 and 2)
    for its ``password_hash:`` in the site file's ocpp: section; the password itself is
    never stored. 16 to 40 characters (OCPP 2.0.1 BasicAuthPassword)."""
    import sys

    from energy.errors import NoaberError
    from energy.ocppconfig import check_basic_auth_password
    from energy.security import hash_password

    if stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        check_basic_auth_password(password)
    except ValueError as exc:
        raise NoaberError(str(exc)) from None
    typer.echo(hash_password(password))


@ocpp_app.command("simulate")
def simulate(
    url: Annotated[str, typer.Option(help="The central system, e.g. ws://127.0.0.1:9000")],
    charge_point: Annotated[str, typer.Option("--id", help="Charge point id")],
    version: Annotated[str, typer.Option(help="OCPP version: 1.6, 2.0.1 or 2.1")] = "2.0.1",
    token: Annotated[str, typer.Option(help="Id token (RFID) it authorises with")] = "04A1B2C3D4",
    max_power: Annotated[float, typer.Option(min=1, help="The car's maximum power [W]")] = 11_000,
    meter_interval: Annotated[
        float, typer.Option(min=0.05, help="Seconds between meter values")
    ] = 5.0,
    duration: Annotated[float, typer.Option(min=0.1, help="Seconds to run")] = 60.0,
    password: Annotated[
        str | None,
        typer.Option(
            envvar="NOABER_OCPP_PASSWORD",
            help="Basic auth password (security profiles 1, 2); also from NOABER_OCPP_PASSWORD",
        ),
    ] = None,
    ca: Annotated[
        Path | None, typer.Option(help="CA certificate to trust for wss:// (profiles 2, 3)")
    ] = None,
    cert: Annotated[
        Path | None, typer.Option(help="Client certificate (profile 3), with --key")
    ] = None,
    key: Annotated[Path | None, typer.Option(help="The client certificate's key")] = None,
) -> None:
    """A charger: boots, authorises, charges along its charging profiles, sends meter values."""
    from energy.errors import NoaberError
    from modbus_gateway.ocpp.config import SUBPROTOCOLS
    from modbus_gateway.ocpp.sim import SimulatedCharger

    if version not in SUBPROTOCOLS:
        raise NoaberError(f"--version {version!r}: use one of {', '.join(SUBPROTOCOLS)}")
    ctx = None
    if url.startswith("wss://"):
        import ssl

        ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
        if (cert is None) != (key is None):
            raise NoaberError("give --cert and --key together (a client certificate)")
        if cert is not None and key is not None:
            ctx.load_cert_chain(cert, key)
    sim = SimulatedCharger(
        url,
        charge_point,
        version,
        token,
        max_power,
        meter_interval_s=meter_interval,
        password=password,
        ssl_context=ctx,
    )

    async def main() -> None:
        task = asyncio.create_task(sim.run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), duration)
        sim.stop()
        await task

    try:
        asyncio.run(main())
    except OSError as exc:
        raise NoaberError(f"cannot reach {url}: {exc}") from None
    console.print(
        f"{charge_point}: boot {sim.boot_status}, token {sim.auth_status}, transaction "
        f"{sim.transaction_id}, {sim.meter_messages} meter values, {sim.energy_wh:.1f} Wh, "
        f"now {sim.power_w:g} W ({sim.source})",
        highlight=False,
        soft_wrap=True,
    )
    if sim.boot_status != "Accepted" or sim.auth_status != "Accepted":
        raise typer.Exit(1)
