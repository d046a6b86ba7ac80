"""``noaber gateway run|consume|read|scan`` and ``noaber simulate``.

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
        broker = _broker(mqtt, settings.mqtt_url, "--mqtt-from-env")
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
            counters = service.counters()
            service.close()
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


def _broker(arg: str | None, env_url: str | None, what: str):
    """The broker of ``--mqtt`` or else ``NOABER_MQTT_URL``; a one-line error without either."""
    from modbus_gateway.mqtt import parse_broker_url

    url = arg if arg is not None else env_url
    if not url:
        raise NoaberError(
            f"no MQTT broker for {what}: pass --mqtt mqtt://USER:PASSWORD@HOST:PORT "
            "or set NOABER_MQTT_URL"
        )
    try:
        return parse_broker_url(url)
    except ValueError as exc:
        source = "--mqtt" if arg is not None else "NOABER_MQTT_URL"
        raise NoaberError(f"{source}: {exc}") from None


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
    dead_letter: Annotated[
        Path | None,
        typer.Option(
            help="JSONL file for samples that cannot be stored "
            "(default: DATA_DIR/mqtt-dead-letter.jsonl)"
        ),
    ] = None,
    connect_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for the broker at start")
    ] = 10.0,
) -> None:
    """Centre: store the gateways' MQTT sample batches in the energy store, exactly once.

    Channel keys are mapped to channel ids from the database; a key it does not know (after
    one reload of the map) goes to the dead-letter file with a logged error, and the rest of
    the batch is stored and acknowledged.
    """
    import threading

    from energy.settings import load_settings
    from noaber.services.ingest import Ingest

    settings = load_settings()
    broker = _broker(mqtt, settings.mqtt_url, "noaber gateway consume")
    _setup_logging(None)
    ingest = Ingest(
        settings,
        broker,
        topic=topic,
        client_id=client_id,
        dead_letter=dead_letter,
        intervals_every_s=intervals_every,
    )
    topic = ingest.topic
    ingest.start(connect_timeout)
    err_console.print(
        f"consuming {topic} from {broker} into {ingest.store.root} "
        f"({len(ingest.sink.channel_ids)} channels known); "
        + ("SIGTERM/Ctrl-C stops" if max_seconds is None else f"for {max_seconds:g} s")
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
) -> None:
    """One-shot read of a device with a profile: every register, decoded, with its quality."""
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

    async def main():
        link = Link.tcp(host, port, timeout)
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
    for col in ("register", "address", "value", "unit", "quality"):
        table.add_column(col)
    for name in names:
        if name not in values:
            table.add_row(name, "—", "—", "", "model absent")
            continue
        d = values[name]
        spec = p.registers[name]
        table.add_row(name, str(spec.address), _fmt(d.value, d.quality), spec.unit, d.quality.name)
    console.print(table)


@gateway_app.command("scan")
def scan(
    target: Annotated[str, typer.Argument(metavar="HOST[:PORT]", help="Modbus TCP device")],
    unit: Annotated[int, typer.Option(min=1, max=247, help="Unit id")] = 1,
    timeout: Annotated[float, typer.Option(help="Timeout per request [s]")] = 2.0,
) -> None:
    """SunSpec discovery: find "SunS" (40000, 50000, 0) and list the model blocks."""
    from rich.table import Table

    from modbus_gateway.driver import Link, ModbusError
    from modbus_gateway.sunspec import NotSunSpec, discover

    host, port = _host_port(target)
    _setup_logging(None)

    async def main():
        link = Link.tcp(host, port, timeout)
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
