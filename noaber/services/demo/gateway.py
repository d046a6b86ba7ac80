"""The gateway in the demo: simulators on free 127.0.0.1 ports polled through the real gateway.

:func:`run_demo` is what ``noaber demo`` calls (via :func:`demo_step`):
it starts a simulator for every device of a site description, points the gateway at the ports
the simulators got, polls for ``duration_s`` seconds, commands one V2G discharge setpoint
through the charger's :class:`~modbus_gateway.capabilities.PowerControl` view (safe default
restored at the end) and delivers the samples through store-and-forward to the given :class:`~energy.samples.SampleStore`.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from energy.clock import local_time_of_day_s
from energy.errors import NoaberError
from energy.samples import SampleStore
from modbus_gateway.capabilities import PowerControl
from modbus_gateway.config import GatewayConfig, load_config
from modbus_gateway.service import GatewayService
from modbus_gateway.simulator import serve_config
from modbus_gateway.spool import SampleStoreSink

#: The demo's site description; its devices are simulated.
DEMO_SITE_FILE = Path(__file__).resolve().parent / "data" / "demo_site.yaml"


@dataclass
class DemoResult:
    """What a demo run did."""

    polls: int
    samples_delivered: int
    samples_spooled: int
    channels: list[str]
    setpoints: list[tuple[str, float, str]] = field(default_factory=list)  # device, W, by
    statuses: dict[str, str] = field(default_factory=dict)


def _local_config(cfg: GatewayConfig) -> GatewayConfig:
    """The same devices on 127.0.0.1 with port 0 (the simulators pick free ports)."""
    devices = []
    for d in cfg.devices:
        role = d.sim_role
        if role == "grid" and "pv" in d.name:
            role = "pv"
        devices.append(
            d.model_copy(
                update={"host": "127.0.0.1", "port": 0, "transport": "tcp", "sim_role": role}
            )
        )
    return cfg.model_copy(update={"devices": devices, "buses": {}})


async def run_demo_async(
    duration_s: float,
    sample_store: SampleStore,
    channel_ids: dict[str, int],
    site_file: Path | str = DEMO_SITE_FILE,
    spool_path: Path | str | None = None,
    setpoint: tuple[str, float] | None = None,
) -> DemoResult:
    """Serve simulators for ``site_file``, poll them through the gateway, store the samples.

    Parameters
    ----------
    duration_s : float
        How long to poll [s].
    sample_store : SampleStore
        The energy store that receives the samples.
    channel_ids : dict
        Channel key (``<site>/<asset>/<quantity>``) -> channel id; channels without an id
        are not polled.
    setpoint : (asset, power_w), optional
        A setpoint to command during the run (default: the first charger discharges 3000 W).
    """
    cfg = _local_config(load_config(site_file))
    # keep only channels the store knows
    cfg.site_channels = {
        dev: {r: k for r, k in regs.items() if k in channel_ids}
        for dev, regs in cfg.site_channels.items()
    }
    # the simulated PV follows the local clock: no midday sun in a demo built at night
    servers, sims = await serve_config(cfg, time_of_day_s=local_time_of_day_s())
    port_of = {
        name: next(s.port for s in servers if sim in s.devices.values())
        for name, sim in sims.items()
    }
    devices = [d.model_copy(update={"port": port_of[d.name]}) for d in cfg.devices]
    cfg = cfg.model_copy(update={"devices": devices})
    channels = [c for d in cfg.devices for c in cfg.channel_map(d).values()]
    tmp = None
    if spool_path is None:
        tmp = tempfile.TemporaryDirectory(prefix="noaber-gw-")
        spool_path = Path(tmp.name) / "spool.sqlite"
    result = DemoResult(0, 0, 0, channels)
    try:
        service = GatewayService(cfg, SampleStoreSink(sample_store, channel_ids), spool_path)
        controls = {v.asset: v for v in service.devices().values() if isinstance(v, PowerControl)}
        task = asyncio.create_task(service.run(duration_s))
        target = setpoint
        if target is None and controls:
            chargers = [a for a, c in controls.items() if c.kind == "charger"]
            target = (chargers or sorted(controls))[0], -3000.0
        if target is not None:
            control = controls.get(target[0])
            if control is None:
                raise NoaberError(
                    f"no controllable asset {target[0]!r} (known: {', '.join(sorted(controls))})"
                )
            await asyncio.sleep(min(1.0, duration_s / 3))
            written = await control.write(target[1], requested_by="noaber demo")
            result.setpoints.append((target[0], written.written_w, "noaber demo"))
        await task
        counters = service.counters()
        result.polls = counters.total_polls
        result.statuses = counters.statuses
        result.samples_delivered = counters.samples_delivered
        result.samples_spooled = counters.samples_spooled
        service.close()
    finally:
        for s in servers:
            await s.stop()
        if tmp is not None:
            tmp.cleanup()
    return result


def run_demo(
    duration_s: float,
    sample_store: SampleStore,
    channel_ids: dict[str, int],
    site_file: Path | str = DEMO_SITE_FILE,
) -> DemoResult:
    """Blocking wrapper of :func:`run_demo_async` (starts its own event loop)."""
    return asyncio.run(run_demo_async(duration_s, sample_store, channel_ids, site_file))


def demo_step(ctx: Any) -> None:
    """The gateway step of ``noaber demo`` (``noaber.services.demo.DemoContext``: store, channels, notes)."""
    res = run_demo(4.0, ctx.store, ctx.channels)
    ctx.notes.append(
        f"gateway: {res.polls} polls of {len(res.statuses)} simulated devices over Modbus TCP, "
        f"{res.samples_delivered} samples stored"
        + "".join(f"; setpoint {a} = {w:.0f} W by {by}" for a, w, by in res.setpoints)
    )
