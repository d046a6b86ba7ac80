"""``noaber gateway run|consume|add|list|dead-letters|quarantine|read|scan`` and ``noaber simulate``.

Registered on the root app by :func:`register` (``noaber.cli.COMMAND_MODULES``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import signal
from pathlib import Path
from typing import Annotated

import typer

from energy.clock import local_time_of_day_s
from energy.errors import NoaberError, ValidationError
from noaber.console import console, err_console

gateway_app = typer.Typer(
    help="Modbus gateway: poll the devices of a site, one-shot reads, SunSpec discovery.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``gateway`` (run/read/scan) and ``simulate`` to the root app."""
    app.add_typer(gateway_app, name="gateway")
    app.command("simulate")(simulate)


def _setup_logging(log_file: Path | None) -> None:
    """Gateway logs (write audit, spooling, errors) to ``log_file`` or stderr; pymodbus quiet.

    pymodbus logs every timeout as an error; the gateway already records each failure in its
    status and quality flags, so pymodbus is limited to critical messages.
    """
    import logging

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    root = logging.getLogger("modbus_gateway")
    root.setLevel(logging.INFO)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler()
        handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for old in [h for h in root.handlers if getattr(h, "_noaber_gateway", False)]:
        root.removeHandler(old)  # one handler, however often a command runs in a process
        old.close()
    handler._noaber_gateway = True  # type: ignore[attr-defined]
    root.addHandler(handler)


def _host_port(target: str, default_port: int = 502) -> tuple[str, int]:
    host, _, port = target.rpartition(":") if ":" in target else (target, "", "")
    if not host:
        host, port = target, ""
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise NoaberError(f"expected HOST[:PORT], got {target!r}") from None


def _fmt(value: object, quality: int) -> str:
    from energy.samples import Quality

    q = Quality(quality)
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return f"— ({q.name.lower()})"
    text = f"{value:.6g}"
    return text if q == Quality.GOOD else f"{text} ({q.name.lower()})"


def _live_table(service):
    from rich.table import Table

    counters = service.counters()
    title = f"Noaber gateway — {dt.datetime.now().strftime('%H:%M:%S')}"
    title += f" — delivered {counters.samples_delivered}, spooled {counters.samples_spooled}"
    table = Table(title=title)
    for col in ("device", "status", "polls", "on time", "last values", "error"):
        table.add_column(col, overflow="fold")
    for row in service.gateway.status_rows():
        values = ", ".join(f"{k}={_fmt(v, q)}" for k, (v, q) in list(row["values"].items())[:6])
        table.add_row(
            row["device"],
            row["status"],
            str(row["polls"]),
            f"{row['on_time_pct']:.1f} %",
            values,
            str(row["error"])[:80],
        )
    return table


def _store_sink(cfg, channels: list[str]):
    """The energy store of the settings, with channel ids looked up by key in the database."""
    from sqlalchemy import select
    from sqlalchemy.exc import DBAPIError

    from energy.db import make_engine
    from energy.models import Channel
    from energy.samples import SampleStore
    from energy.settings import get_settings
    from modbus_gateway.spool import SampleStoreSink

    settings = get_settings()
    engine = make_engine(settings.sqlalchemy_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(Channel.key, Channel.id).where(Channel.key.in_(channels))
            ).all()
    except DBAPIError as exc:
        raise NoaberError(
            f"database {settings.database_for_display} is not ready ({exc.orig}); run "
            "noaber db upgrade and noaber site import FILE, or use --no-store"
        ) from None
    finally:
        engine.dispose()
    ids = {k: i for k, i in rows}
    missing = sorted(set(channels) - set(ids))
    if missing:
        raise NoaberError(
            f"channels not in the database: {', '.join(missing[:5])}"
            f"{' …' if len(missing) > 5 else ''} (import the site: noaber site import FILE)"
        )
    return SampleStoreSink(SampleStore(settings.samples_dir), ids), settings.data_dir


@gateway_app.command("run")
def run(
    site: Annotated[Path, typer.Argument(help="Site YAML with a devices: section")],
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C)")
    ] = None,
    store: Annotated[
        bool, typer.Option("--store/--no-store", help="Write samples to the energy store")
    ] = True,
    spool: Annotated[Path | None, typer.Option(help="Spool file (SQLite)")] = None,
    live: Annotated[bool, typer.Option("--live/--no-live", help="Show a live table")] = True,
    flush_interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between sample batches to the store")
    ] = 5.0,
    mqtt: Annotated[
        str | None,
        typer.Option(
            metavar="URL|HOST[:PORT]",
            help="Publish sample batches to this MQTT broker (edge gateway) instead of the "
            "store: mqtt://USER:PASSWORD@HOST:PORT or HOST[:PORT]",
        ),
    ] = None,
    mqtt_from_env: Annotated[
        bool,
        typer.Option(
            "--mqtt-from-env",
            help="Publish to the broker of NOABER_MQTT_URL (like --mqtt, but the password "
            "stays out of the process list)",
        ),
    ] = False,
    ack_wait: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="At the end, wait up to this many seconds for the centre's acknowledgement "
            "of the last batches (MQTT)",
        ),
    ] = 5.0,
    gateway_name: Annotated[
        str | None,
        typer.Option(
            "--gateway",
            help="Gateway name in the MQTT topic and client id (default: the site's name in "
            "SITE, else SITE's file name)",
        ),
    ] = None,
) -> None:
    """Poll every device of SITE, with a live table of devices, last values and quality."""
    from modbus_gateway.config import load_config
    from modbus_gateway.service import GatewayService
    from modbus_gateway.spool import MemorySink, SampleSink

    cfg = load_config(site)
    channels = [c for d in cfg.devices for c in cfg.channel_map(d).values()]
    sink: SampleSink
    if mqtt is not None and mqtt_from_env:
        raise NoaberError("give either --mqtt URL or --mqtt-from-env, not both")
    if mqtt is not None or mqtt_from_env:
        from energy.settings import load_settings
        from modbus_gateway.mqtt import MqttSampleSink

        settings = load_settings()
        broker = _broker(mqtt, settings.mqtt_url, "--mqtt-from-env", settings)
        name = _gateway_name(site, gateway_name)
        sink, data_dir = MqttSampleSink.from_url(broker, name), settings.data_dir
    elif store:
        sink, data_dir = _store_sink(cfg, channels)
    else:
        sink, data_dir = MemorySink(), Path(".")
    spool_path = spool or Path(cfg.spool_path or data_dir / "gateway-spool.sqlite")
    _setup_logging(Path(spool_path).with_name("gateway.log") if live else None)

    async def main() -> None:
        service = GatewayService(
            cfg,
            sink,
            spool_path,
            flush_interval_s=flush_interval,
            write_log_path=Path(spool_path).with_name("gateway-writes.jsonl"),
        )
        task = asyncio.create_task(service.run(duration))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # stop cleanly: safe defaults, last flush
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, service.stop)
        try:
            if live:
                from rich.live import Live

                with Live(_live_table(service), console=console, refresh_per_second=2) as lv:
                    while not task.done():
                        await asyncio.wait({task}, timeout=0.5)
                        lv.update(_live_table(service))
            await task
        finally:
            service.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 15)
            # the centre's acknowledgements of the last batches (what is not acknowledged
            # stays in the spool and goes again at the next start)
            with contextlib.suppress(Exception):
                await service.forwarder.settle(ack_wait)
            counters = service.counters()
            service.close()
            close = getattr(sink, "close", None)
            if close is not None:
                close()
        console.print(
            f"{counters.total_polls} polls, {counters.samples_delivered} samples delivered, "
            f"{counters.samples_spooled} waiting in {spool_path}"
        )

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def _gateway_name(site: Path, override: str | None) -> str:
    """``override``, else ``site.name`` of a site description, else the file name's stem.

    The name is a topic level (``noaber/<name>/samples``) and part of the MQTT client id, so
    two sites must not share it; a mounted ``/config/site.yaml`` takes the site's own name.
    """
    import re

    from energy.yamlio import load_yaml_file

    name = override
    if name is None:
        with contextlib.suppress(ValidationError):
            doc = load_yaml_file(site, "site file")
            if isinstance(doc, dict) and isinstance(doc.get("site"), dict):
                name = doc["site"].get("name")
    name = str(name) if name else site.stem
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", name):
        raise NoaberError(
            f"gateway name {name!r}: use letters, digits and _ . : - only (it is an MQTT topic "
            "level); pass --gateway NAME"
        )
    return name


def _broker(arg: str | None, env_url: str | None, what: str, settings=None):
    """The broker of ``--mqtt`` or else ``NOABER_MQTT_URL``; a one-line error without either.

    An ``mqtts://`` URL is TLS, with ``settings``' CA and client certificate files
    (``NOABER_MQTT_CA_FILE``, ``NOABER_MQTT_CERT_FILE``, ``NOABER_MQTT_KEY_FILE``)."""
    from modbus_gateway.mqtt import parse_broker_url

    url = arg if arg is not None else env_url
    if not url:
        raise NoaberError(
            f"no MQTT broker for {what}: pass --mqtt mqtt://USER:PASSWORD@HOST:PORT "
            "or set NOABER_MQTT_URL"
        )
    try:
        broker = parse_broker_url(url)
    except ValueError as exc:
        source = "--mqtt" if arg is not None else "NOABER_MQTT_URL"
        raise NoaberError(f"{source}: {exc}") from None
    if settings is None:
        return broker
    try:
        return broker.with_tls_files(
            settings.mqtt_ca_file, settings.mqtt_cert_file, settings.mqtt_key_file
        )
    except ValueError as exc:
        raise NoaberError(f"NOABER_MQTT_CA_FILE/CERT_FILE/KEY_FILE: {exc}") from None


@gateway_app.command("consume")
def consume(
    mqtt: Annotated[
        str | None,
        typer.Option(
            metavar="URL|HOST[:PORT]",
            help="Broker: mqtt://USER:PASSWORD@HOST:PORT or HOST[:PORT] (default: NOABER_MQTT_URL)",
        ),
    ] = None,
    max_seconds: Annotated[
        float | None,
        typer.Option(min=0.0, help="Stop after this many seconds (default: until SIGTERM/Ctrl-C)"),
    ] = None,
    intervals_every: Annotated[
        float | None,
        typer.Option(
            min=0.5,
            help="Also update the 15-minute interval readings of the written channels "
            "every this many seconds (and once at the end)",
        ),
    ] = None,
    topic: Annotated[
        str | None, typer.Option(help="Topic filter (default: every gateway, noaber/+/samples)")
    ] = None,
    client_id: Annotated[
        str | None,
        typer.Option(help="MQTT client id: names the persistent session (default noaber-store)"),
    ] = None,
    connect_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for the broker at start")
    ] = 10.0,
    max_age_days: Annotated[
        float,
        typer.Option(min=0.01, help="Samples older than this are refused (retention window)"),
    ] = 35.0,
    max_future: Annotated[
        float, typer.Option(min=0.0, help="Samples more than this many seconds ahead are refused")
    ] = 300.0,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Serve this process's metrics (samples ingested, dead "
            "letters) on HOST:PORT/metrics",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Interface of the metrics port (0.0.0.0 in a container network)")
    ] = "127.0.0.1",
    share: Annotated[
        str | None,
        typer.Option(
            metavar="GROUP",
            help="Share the subscription with the other workers of GROUP (MQTT 5 "
            "$share/GROUP/...): run several consume processes, each with its own --client-id",
        ),
    ] = None,
    max_batches: Annotated[
        int, typer.Option(min=1, max=10_000, help="Batches stored together in one transaction")
    ] = 64,
) -> None:
    """Centre: store the gateways' MQTT sample batches in the energy store, exactly once.

    A sample is stored only from a registered gateway (noaber gateway add) for a channel of
    a site it is bound to, within the channel's plausible range and time window; anything
    else goes to the dead-letter store with the reason (noaber gateway dead-letters). A
    different value for a stored (channel, ts) is quarantined (noaber gateway quarantine).
    Each stored batch is acknowledged to its gateway, which then deletes it from its spool.
    """
    import threading

    from energy.settings import load_settings
    from noaber.services.ingest import Ingest

    settings = load_settings()
    broker = _broker(mqtt, settings.mqtt_url, "noaber gateway consume", settings)
    _setup_logging(None)
    ingest = Ingest(
        settings,
        broker,
        topic=topic,
        client_id=client_id,
        intervals_every_s=intervals_every,
        max_age_s=max_age_days * 86_400,
        max_future_s=max_future,
        share=share,
        max_batches=max_batches,
    )
    topic = ingest.topic
    if metrics_port is not None:
        from noaber.services.metrics import serve

        port = serve(metrics_port, metrics_host)
        err_console.print(f"metrics on http://{metrics_host}:{port}/metrics")
    ingest.start(connect_timeout)
    err_console.print(
        f"consuming {topic} from {broker} into "
        + (
            f"PostgreSQL {settings.database_for_display}"
            if ingest.store.kind == "postgresql"
            else str(ingest.store.root)
        )
        + " "
        f"({len(ingest.sink.channel_ids)} channels, {len(ingest.sink.bindings)} gateways "
        "known); " + ("SIGTERM/Ctrl-C stops" if max_seconds is None else f"for {max_seconds:g} s")
    )
    stop = threading.Event()
    handlers = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not in the main thread: no handlers
            handlers[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        report = ingest.run(stop, max_seconds)
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)
    console.print(report.line())


def _sessions():
    from energy.db import make_engine, session_factory
    from energy.settings import load_settings

    return session_factory(make_engine(load_settings().sqlalchemy_url))


def _broker_file(given: Path | None, name: str) -> Path:
    from energy.settings import load_settings

    return given if given is not None else load_settings().data_dir / "mosquitto" / name


@gateway_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Gateway name: its MQTT user and topic level")],
    site: Annotated[list[str], typer.Option("--site", help="Site the gateway serves (repeatable)")],
    password_file: Annotated[
        Path | None,
        typer.Option(
            envvar="NOABER_MQTT_PASSWORD_FILE",
            help="Mosquitto password_file to add the gateway to "
            "(default: DATA_DIR/mosquitto/passwords)",
        ),
    ] = None,
    acl_file: Annotated[
        Path | None,
        typer.Option(
            envvar="NOABER_MQTT_ACL_FILE",
            help="Mosquitto acl_file to add the gateway's topics to "
            "(default: DATA_DIR/mosquitto/acl)",
        ),
    ] = None,
    centre_user: Annotated[
        str, typer.Option(help="The centre's (ingest's) broker user, given read access")
    ] = "noaber",
    mosquitto_pid_file: Annotated[
        Path | None,
        typer.Option(
            envvar="NOABER_MQTT_PID_FILE",
            help="The running Mosquitto's pid_file: send it SIGHUP so it re-reads the "
            "password file and ACL (the new gateway can connect without a restart)",
        ),
    ] = None,
) -> None:
    """Register a gateway: its own broker credentials (the password is shown once; only its
    hash is stored), its password-file and ACL entries (publish noaber/NAME/samples, read
    noaber/NAME/ack) and its binding to the site(s); audited. With --mosquitto-pid-file the
    running broker is told to reload them (SIGHUP)."""
    from energy.audit import record
    from energy.gateways import add_gateway
    from modbus_gateway.broker_auth import (
        acl_block,
        mosquitto_hash,
        new_password,
        reload_mosquitto,
        set_acl_entry,
        set_password_entry,
    )
    from noaber.cli.audit import actor

    pw_path, acl_path = _broker_file(password_file, "passwords"), _broker_file(acl_file, "acl")
    password = new_password()
    hashed = mosquitto_hash(password)
    with _sessions().begin() as session:
        gw = add_gateway(session, name, site, hashed)
        record(
            session,
            actor(),
            "gateway.add",
            name,
            {"sites": list(dict.fromkeys(site)), "acl_file": str(acl_path)},
        )
        set_password_entry(pw_path, name, hashed)
        set_acl_entry(acl_path, name, acl_block(name, "sites " + ", ".join(site)), centre_user)
        gw_id = gw.id
    console.print(
        f"gateway {name} (id {gw_id}) added for site(s) {', '.join(site)}; broker entries in "
        f"{pw_path} and {acl_path}"
        + (
            ""
            if mosquitto_pid_file is not None
            else " (reload Mosquitto: --mosquitto-pid-file, kill -HUP its pid, or docker "
            "compose kill -s HUP mqtt)"
        )
    )
    console.print("its MQTT password, shown only now (give it to the gateway as NOABER_MQTT_URL):")
    console.print(f"mqtt://{name}:{password}@HOST:1883", soft_wrap=True, highlight=False)
    if mosquitto_pid_file is not None:
        try:
            pid = reload_mosquitto(mosquitto_pid_file)
        except ValueError as exc:
            raise NoaberError(
                f"gateway {name} is added and its broker entries are written, but {exc}; "
                "reload Mosquitto by hand (kill -HUP its pid, or docker compose kill -s HUP mqtt)"
            ) from None
        console.print(f"Mosquitto (pid {pid}) told to reload its password file and ACL (SIGHUP)")


@gateway_app.command("list")
def list_gateways() -> None:
    """Registered gateways and the sites each may send samples for."""
    from rich.table import Table
    from sqlalchemy import select

    from energy.gateways import Gateway

    table = Table(title="Gateways")
    for col in ("gateway", "sites", "created (UTC)", "disabled"):
        table.add_column(col)
    with _sessions()() as session:
        for gw in session.scalars(select(Gateway).order_by(Gateway.name)):
            table.add_row(
                gw.name,
                ", ".join(sorted(gs.site.name for gs in gw.sites)),
                gw.created_at.strftime("%Y-%m-%d %H:%M"),
                "yes" if gw.disabled else "",
            )
    console.print(table)


@gateway_app.command("dead-letters")
def list_dead_letters(
    reason: Annotated[str | None, typer.Option(help="Only this reason")] = None,
    gateway: Annotated[str | None, typer.Option(help="Only this gateway")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
) -> None:
    """What the centre refused to store, newest first, with the reason and the first problem."""
    from rich.table import Table

    from energy.gateways import dead_letters

    table = Table(title="Dead letters (newest first)")
    for col in ("id", "received (UTC)", "gateway", "reason", "samples", "detail"):
        table.add_column(col, overflow="fold")
    with _sessions()() as session:
        rows = dead_letters(session, reason=reason, gateway=gateway, limit=limit)
        for d in rows:
            table.add_row(
                str(d.id),
                d.received_at.strftime("%Y-%m-%d %H:%M:%S"),
                d.gateway,
                d.reason,
                str(len(d.samples)) if d.payload is None else "payload",
                d.detail[:300],
            )
    console.print(table)


@gateway_app.command("quarantine")
def quarantine(
    accept: Annotated[
        int | None,
        typer.Option(help="Accept quarantined sample ID: it replaces the stored value (audited)"),
    ] = None,
    reject: Annotated[
        int | None, typer.Option(help="Reject quarantined sample ID: the stored value stays")
    ] = None,
    status: Annotated[str, typer.Option(help="open, accepted, rejected or all")] = "open",
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
) -> None:
    """Samples whose (channel, ts) already held another value: list, or accept/reject one."""
    from rich.table import Table

    from energy.gateways import open_quarantine
    from energy.rawstore import open_sample_store
    from energy.settings import load_settings
    from noaber.cli.audit import actor
    from noaber.services.ingest import resolve_quarantine

    if accept is not None and reject is not None:
        raise NoaberError("give either --accept ID or --reject ID, not both")
    if accept is not None or reject is not None:
        qid = accept if accept is not None else reject
        assert qid is not None
        q = resolve_quarantine(
            _sessions(),
            open_sample_store(load_settings()),
            qid,
            accept is not None,
            actor(),
        )
        console.print(f"quarantined sample {qid} {q.status}: {q.channel.key} at ts {q.ts_ns}")
        return
    if status not in {"open", "accepted", "rejected", "all"}:
        raise NoaberError(f"--status must be open, accepted, rejected or all, got {status!r}")
    table = Table(title=f"Quarantined samples ({status})")
    for col in ("id", "received (UTC)", "gateway", "channel", "ts (UTC)", "stored", "offered"):
        table.add_column(col, overflow="fold")
    with _sessions()() as session:
        rows = open_quarantine(session, status=None if status == "all" else status, limit=limit)
        for q in rows:
            when = dt.datetime.fromtimestamp(q.ts_ns / 1e9, dt.UTC).isoformat(timespec="seconds")
            table.add_row(
                str(q.id),
                q.received_at.strftime("%Y-%m-%d %H:%M:%S"),
                q.gateway,
                q.channel.key,
                when,
                f"{q.stored_value} (q{q.stored_quality})",
                f"{q.value} (q{q.quality})",
            )
    console.print(table)


@gateway_app.command("read")
def read(
    target: Annotated[str, typer.Argument(metavar="HOST[:PORT]", help="Modbus TCP device")],
    profile: Annotated[str, typer.Option(help="Profile name or YAML path")],
    unit: Annotated[
        int | None, typer.Option(min=1, max=247, help="Unit id (default: profile's)")
    ] = None,
    register: Annotated[
        list[str] | None, typer.Option(help="Only these registers (repeatable)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Timeout per request [s]")] = 2.0,
    framer: Annotated[
        str, typer.Option(help="socket (Modbus TCP) or rtu (RTU over TCP: a serial converter)")
    ] = "socket",
) -> None:
    """One-shot read of a device with a profile: every register (coils and discrete inputs
    too), decoded, with its quality."""
    from rich.table import Table

    from modbus_gateway.driver import Driver, Link, ModbusError
    from modbus_gateway.profiles import get_profile, resolve_sunspec
    from modbus_gateway.sunspec import NotSunSpec, discover, model_bases

    host, port = _host_port(target)
    _setup_logging(None)
    prof = get_profile(profile, Path.cwd())
    unit_id = unit or prof.default_unit_id
    names = register or [n for n, r in prof.registers.items() if r.type != "sunssf"]
    unknown = [n for n in names if n not in prof.registers]
    if unknown:
        raise NoaberError(f"profile {prof.name} has no register(s) {', '.join(unknown)}")

    _check_framer(framer)

    async def main():
        link = Link.tcp(host, port, timeout, framer)
        try:
            p = prof
            if prof.sunspec:
                p = resolve_sunspec(prof, model_bases(await discover(link, unit_id)))
            return p, await Driver(link, unit_id, p).read_values(
                [n for n in names if n in p.registers]
            )
        finally:
            link.close()

    try:
        p, values = asyncio.run(main())
    except (ModbusError, NotSunSpec) as exc:
        raise NoaberError(f"{host}:{port} unit {unit_id}: {exc}") from None
    table = Table(title=f"{prof.name} at {host}:{port} unit {unit_id}")
    for col in ("register", "fc", "address", "value", "unit", "quality"):
        table.add_column(col)
    for name in names:
        if name not in values:
            table.add_row(name, "—", "—", "—", "", "model absent")
            continue
        d = values[name]
        spec = p.registers[name]
        table.add_row(
            name,
            str(spec.function),
            str(spec.address),
            _fmt(d.value, d.quality),
            spec.unit,
            d.quality.name,
        )
    console.print(table)


def _check_framer(framer: str) -> None:
    if framer not in {"socket", "rtu"}:
        raise NoaberError(f"--framer must be socket or rtu, got {framer!r}")


def _unit_range(text: str) -> list[int]:
    """``1-247`` or ``1,2,10-12`` -> unit ids (1..247)."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise NoaberError(f"--units: expected e.g. 1-247 or 1,2,5-9, got {text!r}") from None
        if not 1 <= a <= b <= 247:
            raise NoaberError(f"--units: unit ids are 1..247 (low-high), got {part.strip()!r}")
        out.extend(range(a, b + 1))
    return sorted(set(out))


async def scan_units(link, units: list[int], on_unit=None) -> list[tuple[int, str]]:
    """Which unit ids answer: one holding-register read of address 0 per id, bounded by the
    link's timeout. A normal reply or a Modbus exception (illegal address/function, busy)
    means a device is there; silence, 0x0A/0x0B from a gateway, means none."""
    from modbus_gateway.driver import (
        GATEWAY_PATH_UNAVAILABLE,
        GATEWAY_TARGET_NO_RESPONSE,
        DeviceTimeout,
        ExceptionReply,
        LinkDown,
        ModbusError,
    )

    found: list[tuple[int, str]] = []
    for u in units:
        try:
            await link.read(u, 3, 0, 1)
            found.append((u, "answers"))
        except ExceptionReply as exc:
            if exc.code not in (GATEWAY_PATH_UNAVAILABLE, GATEWAY_TARGET_NO_RESPONSE):
                found.append((u, f"answers (exception {exc.code})"))
        except LinkDown:
            raise
        except (DeviceTimeout, ModbusError):
            pass
        if on_unit is not None:
            on_unit(u, len(found))
    return found


@gateway_app.command("scan")
def scan(
    target: Annotated[str, typer.Argument(metavar="HOST[:PORT]", help="Modbus TCP device")],
    unit: Annotated[int, typer.Option(min=1, max=247, help="Unit id")] = 1,
    timeout: Annotated[float, typer.Option(help="Timeout per request [s]")] = 2.0,
    framer: Annotated[
        str, typer.Option(help="socket (Modbus TCP) or rtu (RTU over TCP: a serial converter)")
    ] = "socket",
    units: Annotated[
        str | None,
        typer.Option(
            help="Bus scan instead of SunSpec discovery: which of these unit ids answer "
            "(e.g. 1-247), --timeout per id"
        ),
    ] = None,
) -> None:
    """SunSpec discovery: find "SunS" (40000, 50000, 0) and list the model blocks; with
    --units, which unit ids on the bus answer."""
    from rich.table import Table

    from modbus_gateway.driver import Link, ModbusError
    from modbus_gateway.sunspec import NotSunSpec, discover

    host, port = _host_port(target)
    _check_framer(framer)
    _setup_logging(None)
    if units is not None:
        _bus_scan(host, port, timeout, framer, _unit_range(units))
        return

    async def main():
        link = Link.tcp(host, port, timeout, framer)
        try:
            models = await discover(link, unit)
            common = None
            for m in models:
                if m.model_id == 1 and m.length >= 64:
                    regs = await link.read(unit, 3, m.data_address, 64)
                    common = [
                        b"".join(w.to_bytes(2, "big") for w in regs[o : o + 16])
                        .split(b"\0")[0]
                        .decode(errors="replace")
                        for o in (0, 16, 48)
                    ]
            return models, common
        finally:
            link.close()

    try:
        models, common = asyncio.run(main())
    except (ModbusError, NotSunSpec) as exc:
        raise NoaberError(f"{host}:{port} unit {unit}: {exc}") from None
    if common:
        console.print(f"SunSpec device: {common[0]} {common[1]}, serial {common[2]}")
    table = Table(title=f"SunSpec models at {host}:{port} unit {unit}")
    for col in ("model", "address", "length"):
        table.add_column(col)
    for m in models:
        table.add_row(str(m.model_id), str(m.data_address - 2), str(m.length))
    console.print(table)


def _bus_scan(host: str, port: int, timeout: float, framer: str, ids: list[int]) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from modbus_gateway.driver import Link, LinkDown

    async def main():
        link = Link.tcp(host, port, timeout, framer)
        try:
            with Progress(
                TextColumn("scanning unit ids"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[found]} found"),
                console=err_console,
            ) as progress:
                task = progress.add_task("scan", total=len(ids), found=0)

                def step(_u: int, found: int) -> None:
                    progress.update(task, advance=1, found=found)

                return await scan_units(link, ids, step)
        finally:
            link.close()

    try:
        hits = asyncio.run(main())
    except LinkDown as exc:
        raise NoaberError(f"{host}:{port}: {exc}") from None
    table = Table(title=f"Unit ids answering at {host}:{port} ({len(hits)} of {len(ids)})")
    for col in ("unit", "reply"):
        table.add_column(col)
    for u, what in hits:
        table.add_row(str(u), what)
    console.print(table)


def simulate(
    site: Annotated[Path, typer.Argument(help="Site YAML with a devices: section")],
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C)")
    ] = None,
) -> None:
    """Serve simulated Modbus devices for SITE on 127.0.0.1 (faults from each device's config)."""
    from rich.table import Table

    from modbus_gateway.config import load_config
    from modbus_gateway.simulator import serve_config

    cfg = load_config(site)
    _setup_logging(None)
    for d in cfg.devices:
        if d.transport == "tcp" and d.host not in {"127.0.0.1", "localhost"}:
            raise NoaberError(f"device {d.name}: the simulator serves only 127.0.0.1, not {d.host}")
    tod = local_time_of_day_s()  # the simulated PV follows the local clock

    async def main() -> None:
        servers, devices = await serve_config(cfg, time_of_day_s=tod)
        table = Table(title="Simulated devices")
        for col in ("device", "profile", "address", "unit", "faults"):
            table.add_column(col)
        for d in cfg.devices:
            srv = next(s for s in servers if devices[d.name] in s.devices.values())
            where = srv.serial_port or f"127.0.0.1:{srv.port}"
            faults = ", ".join(f.kind for f in d.faults) or "—"
            table.add_row(d.name, cfg.profiles[d.name].name, where, str(cfg.unit_id(d)), faults)
        console.print(table)
        err_console.print("serving; Ctrl-C stops" if duration is None else f"serving {duration} s")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
        finally:
            for s in servers:
                await s.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


from noaber.cli import gateway_tools  # noqa: E402, F401  (gateway profiles, gateway write)
