"""Fixtures: simulated devices served by pymodbus on 127.0.0.1 (port 0: a free port)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable

import pytest

from modbus_gateway.config import FaultSpec, GatewayConfig, parse_config
from modbus_gateway.profiles import shipped_profiles
from modbus_gateway.simulator import SimServer, SimulatedDevice


class FakeClock:
    """A monotonic clock the test moves by hand (for ramps and timeouts)."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s

    def monotonic(self) -> float:
        return self.t

    def time_ns(self) -> int:
        return int(self.t * 1e9)

    async def sleep(self, s: float) -> None:
        self.t += s


@pytest.fixture
async def serve() -> AsyncIterator[Callable]:
    """``await serve(profile_name, unit_id=None, faults=(), clock=None) -> (server, device)``."""
    servers: list[SimServer] = []

    async def _serve(name: str, unit_id: int | None = None, faults=(), clock=None, seed=1):
        prof = shipped_profiles()[name]
        kwargs = {"clock": clock} if clock is not None else {}
        dev = SimulatedDevice(
            prof, rng=random.Random(seed), faults=[FaultSpec(**f) for f in faults], **kwargs
        )
        srv = await SimServer({unit_id or prof.default_unit_id: dev}).start()
        servers.append(srv)
        return srv, dev

    yield _serve
    for s in servers:
        await s.stop()


def config_for(devices: list[dict], **extra) -> GatewayConfig:
    """A validated gateway config from device dicts (defaults for a fast test)."""
    devs = []
    for d in devices:
        d = {"poll_interval_s": 0.2, "timeout_s": 0.3, **d}
        devs.append(d)
    return parse_config({"devices": devs, **extra}, "test-site.yaml")
