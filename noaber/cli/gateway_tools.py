"""``noaber gateway profiles`` and ``noaber gateway write``: the installer's device library and
the bounded, audited commissioning write.

Registered on the ``gateway`` typer app by importing this module (one line in
:mod:`noaber.cli.gateway`).
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Annotated

import typer

from energy.errors import NoaberError
from noaber.cli.gateway import _setup_logging, gateway_app
from noaber.console import console

#: The longest a commissioning write of a ramped setpoint waits for the ramp to finish [s].
RAMP_WAIT_MAX_S = 120.0


@gateway_app.command("profiles")
def profiles(
    plain: Annotated[
        bool, typer.Option("--plain", help="Tab-separated lines instead of a table")
    ] = False,
) -> None:
    """Every shipped device profile with its kind, whether the gateway controls it, and the
    datasheet or register document it was written from."""
    from modbus_gateway.profiles import shipped_profiles

    profs = shipped_profiles()
    rows = []
    for name, p in sorted(profs.items()):
        control = "no"
        if p.control is not None:
            control = f"control ({p.control.failsafe.kind}, {p.control.failsafe.timeout_s:g} s)"
        writable = sum(1 for r in p.registers.values() if r.writable is not None)
        rows.append((name, p.kind, control, str(writable), " ".join(p.source.split())))
    if plain:
        for row in rows:
            typer.echo("\t".join(row))
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} device profiles")
    for col in ("profile", "kind", "control", "writable", "source"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _parse_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise NoaberError(f"VALUE must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise NoaberError(f"VALUE must be finite, got {text!r}")
    return value


@gateway_app.command("write")
def write(
    device: Annotated[str, typer.Argument(help="Device name in the site file")],
    register: Annotated[str, typer.Argument(help="Register name in the device's profile")],
    value: Annotated[
        str,
        typer.Argument(
            help="Value in engineering units (after scale and sign); a negative one after --: ... -- -1000"
        ),
    ],
    site: Annotated[Path, typer.Option(help="Site YAML with the device and its limits")],
    audit: Annotated[
        bool,
        typer.Option(
            "--audit/--no-audit",
            help="Record the write in the audit log (default; --no-audit only for a bench "
            "without a database)",
        ),
    ] = True,
) -> None:
    """Commissioning write of one register: only a register the profile marks writable,
    within its range, the site's limits (a power setpoint is clamped and ramped like any
    setpoint) and the watchdog-timeout rules; read back and compared; audited as
    ``device.write`` with the acting user (``noaber --as USER``)."""
    from modbus_gateway.config import load_config

    number = _parse_value(value)
    cfg = load_config(site)
    names = [d.name for d in cfg.devices]
    if device not in names:
        raise NoaberError(f"{site}: no device {device!r} (devices: {', '.join(names)})")
    prof = cfg.profiles[device]
    spec = prof.registers.get(register)
    if spec is None:
        raise NoaberError(
            f"profile {prof.name} of {device} has no register {register!r} "
            f"(writable: {', '.join(n for n, r in prof.registers.items() if r.writable) or 'none'})"
        )
    if spec.writable is None:
        raise NoaberError(f"register {register!r} of {prof.name} is not writable (read-only)")
    _setup_logging(None)
    sessions = _audit_sessions() if audit else None  # fail before writing, not after
    outcome = asyncio.run(_write(cfg, device, register, number))
    if sessions is not None:
        _record(sessions, site, device, register, number, outcome)
    if outcome["result"] != "ok":
        raise NoaberError(f"{device}.{register} = {number:g}: {outcome['result']}")
    msg = (
        f"{device}.{register}: was {outcome['before']}, wrote {outcome['written']:g} "
        f"{spec.unit}, read back {outcome['read_back']:g} {spec.unit}"
    )
    if outcome["written"] != number:
        msg += f" (asked {number:g}: {outcome['why']})"
    console.print(msg.replace("  ", " "), highlight=False)


async def _write(cfg, device: str, register: str, value: float) -> dict:
    """Resolve the device (SunSpec discovery), write through :class:`SafeWriter` (which reads
    back), finish a setpoint's ramp within its ramp rate; what happened, for the audit."""
    from modbus_gateway.driver import ModbusError
    from modbus_gateway.poller import Gateway
    from modbus_gateway.profiles import resolve_sunspec
    from modbus_gateway.sunspec import NotSunSpec, discover, model_bases
    from modbus_gateway.writes import RAMP_STEP_S, SafeWriter

    gw = Gateway(cfg)
    dev = gw.devices[device]
    out: dict = {"before": None, "written": None, "read_back": None, "why": "", "steps": []}
    writer = None
    try:
        if dev.profile.sunspec:
            bases = model_bases(await discover(dev.driver.link, dev.driver.unit_id))
            dev.driver.profile = resolve_sunspec(dev.profile, bases)
            if register not in dev.driver.profile.registers:
                raise NoaberError(f"{device}: the device has no SunSpec model for {register}")
        writer = SafeWriter(gw)
        before = (await dev.driver.read_values([register]))[register]
        out["before"] = before.value if before.quality == 0 else f"unreadable ({before.reason})"
        written = await writer.write_register(device, register, value, "gateway write (cli)")
        ctl = next(
            (c for c in writer.controls.values() if c.dev is dev and c.spec.setpoint == register),
            None,
        )
        if ctl is not None and ctl.target_w is not None and ctl.power_w != ctl.target_w:
            # a setpoint ramps: the rest goes out at the ramp rate, as the gateway sends it
            loop = asyncio.get_running_loop()
            deadline = loop.time() + RAMP_WAIT_MAX_S
            while ctl.power_w != ctl.target_w and loop.time() < deadline:
                await asyncio.sleep(RAMP_STEP_S)
                await writer.keepalive_once()
            written = writer._to_register(ctl, ctl.written_w if ctl.written_w is not None else 0)
            if ctl.power_w != ctl.target_w:
                out["why"] = f"ramp not finished within {RAMP_WAIT_MAX_S:g} s"
        if ctl is not None and ctl.target_w is not None:
            asked_w = writer._from_register(ctl, value)
            if ctl.target_w != asked_w:
                out["why"] = out["why"] or "clamped to the profile's and the site's limits"
        back = (await dev.driver.read_values([register]))[register]
        if back.quality != 0:
            raise NoaberError(f"read-back of {device}.{register} failed: {back.reason}")
        out.update(written=float(written), read_back=float(back.value), result="ok")  # type: ignore[arg-type]
    except (NoaberError, ModbusError, NotSunSpec) as exc:
        kind = "refused" if type(exc).__name__ == "WriteRefused" else "failed"
        out["result"] = f"{kind}: {exc}"
    finally:
        if writer is not None:
            out["steps"] = [
                {"value": e.value, "result": e.result, "by": e.requested_by}
                for e in writer.log
                if e.device == device
            ]
        gw.close()
    return out


def _audit_sessions():
    """The audit database, checked before anything is written to the device."""
    from sqlalchemy import text

    from energy.db import make_engine, session_factory, upgrade
    from energy.settings import get_settings

    engine = make_engine(get_settings().sqlalchemy_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        raise NoaberError(
            f"the audit log is not reachable ({type(exc).__name__}); nothing was written "
            "(--no-audit only for a bench without a database)"
        ) from None
    return session_factory(engine)


def _record(sessions, site: Path, device: str, register: str, value: float, outcome: dict):
    """One ``device.write`` entry: the register, what was asked, written and read back."""
    from energy.audit import record
    from energy.db import transaction
    from noaber.cli.audit import actor

    detail = {
        "site_file": site.name,
        "register": register,
        "requested": value,
        "before": outcome["before"],
        "written": outcome["written"],
        "read_back": outcome["read_back"],
        "result": outcome["result"][:300],
        "writes": outcome["steps"][:50],
    }
    with transaction(sessions) as session:
        record(session, actor(), "device.write", f"{site.stem}/{device}", detail)
