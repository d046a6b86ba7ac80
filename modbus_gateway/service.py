"""The whole gateway as one service: polling, store-and-forward and safe writes.

What a composition root (``noaber gateway run``, the demo, an API process with the optimizer's
MPC loop) starts::

    service = GatewayService(load_config("site.yaml"), SampleStoreSink(store, channel_ids),
                             spool_path=data_dir / "gateway-spool.sqlite")
    task = asyncio.create_task(service.run())          # service.stop() ends it
    charger = service.devices()["charger-1"]           # a capability view per device
    await charger.write(-3000.0, requested_by="mpc")   # PowerControl: clamped, read back
    counters = service.counters()                      # polls, statuses, samples forwarded

The views (:mod:`modbus_gateway.capabilities`) are how a composition root reaches a device;
what a device means by its setpoint (a Victron ESS's grid setpoint) stays behind them.

On the way out the writer restores every safe default and the forwarder flushes (what the
store does not take stays in the spool for the next start).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

from modbus_gateway.capabilities import Device, device
from modbus_gateway.config import GatewayConfig
from modbus_gateway.poller import Clock, Gateway, RetryPolicy
from modbus_gateway.spool import SampleSink, StoreAndForward
from modbus_gateway.writes import SafeWriter


@dataclass(frozen=True, slots=True)
class GatewayCounters:
    """What the gateway has done so far: polls and status per device, samples forwarded."""

    polls: dict[str, int]  # device -> polls
    statuses: dict[str, str]  # device -> "starting", "ok", "degraded", "no reply", ...
    samples_delivered: int  # taken by the sink
    samples_spooled: int  # waiting in the spool

    @property
    def total_polls(self) -> int:
        return sum(self.polls.values())


class GatewayService:
    """Gateway + :class:`StoreAndForward` + :class:`SafeWriter`, run and stopped together.

    Parameters
    ----------
    config : GatewayConfig
        Devices and buses.
    sink : SampleSink
        The energy store (e.g. :class:`~modbus_gateway.spool.SampleStoreSink`).
    spool_path : Path
        SQLite spool for samples the store could not take.
    flush_interval_s : float
        How often batches go to the store [s].
    schedule_timeout_s : float
        No setpoint for this long hands control back to the device [s].
    """

    def __init__(
        self,
        config: GatewayConfig,
        sink: SampleSink,
        spool_path: Path | str,
        flush_interval_s: float = 5.0,
        schedule_timeout_s: float = 900.0,
        write_log_path: Path | str | None = None,
        clock: Clock | None = None,
        policy: RetryPolicy | None = None,
    ):
        check = getattr(sink, "check", None)
        self.forwarder = StoreAndForward(sink, spool_path)
        self.gateway = Gateway(config, self.forwarder.put, clock=clock, policy=policy)
        if check is not None:
            check(self.gateway.channels)
        self.writer = SafeWriter(
            self.gateway, schedule_timeout_s=schedule_timeout_s, log_path=write_log_path
        )
        self._devices = {n: device(self.gateway, self.writer, n) for n in self.gateway.devices}
        self.flush_interval_s = flush_interval_s
        self._stop = asyncio.Event()

    def devices(self) -> dict[str, Device]:
        """Device name -> its capability view (:mod:`modbus_gateway.capabilities`): a
        :class:`~modbus_gateway.capabilities.Meter`, ``Battery``, ``PowerControl``, ..."""
        return dict(self._devices)

    def counters(self) -> GatewayCounters:
        """Polls and status per device and the samples delivered and spooled so far."""
        devs = self.gateway.devices.values()
        return GatewayCounters(
            {d.name: d.polls for d in devs},
            {d.name: d.status for d in devs},
            self.forwarder.delivered,
            len(self.forwarder.spool),
        )

    async def run(self, duration_s: float | None = None) -> None:
        """Poll, forward and keep watchdogs alive until :meth:`stop` or ``duration_s``."""
        self._stop.clear()
        tasks = [
            asyncio.create_task(self.forwarder.run(self.flush_interval_s, self._stop)),
            asyncio.create_task(self.writer.run(self._stop)),
        ]
        poll = asyncio.create_task(self.gateway.run(duration_s))
        stopper = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({poll, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.gateway.stop()
            self._stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(poll, 10)
            await asyncio.gather(*tasks, return_exceptions=True)  # safe defaults, last flush
            # a poll under way at the stop ends after that flush: its samples go out too
            await self.forwarder.flush()
            stopper.cancel()
            self.gateway.close()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Close the spool (after :meth:`run` returned)."""
        self.forwarder.close()
