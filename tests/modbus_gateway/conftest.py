"""Fixtures: simulated devices served by pymodbus on 127.0.0.1 (port 0: a free port), the
same in a ``noaber simulate`` subprocess (:func:`start_simulate`), and Mosquitto
(:class:`Mosquitto`)."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import yaml

from modbus_gateway.config import FaultSpec, GatewayConfig, parse_config
from modbus_gateway.profiles import shipped_profiles
from modbus_gateway.simulator import SimServer, SimulatedDevice
from tests.net import pick_port, wait_for_line, wait_for_tcp


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


def start_simulate(doc: dict, site: Path, duration_s: float = 60) -> tuple[subprocess.Popen, Path]:
    """``noaber simulate`` for the devices of ``doc``, each on a port of its own choosing.

    The simulator binds port 0 for every device and prints the port it got; once all listen,
    ``site`` holds ``doc`` with those ports (for the gateway) and the process is returned with
    its log (stdout and stderr). The caller stops the process.
    """
    names = [d["name"] for d in doc["devices"]]
    sim = site.with_name(f"{site.stem}-simulated.yaml")  # devices only: a site allows no port 0
    sim.write_text(
        yaml.safe_dump({"devices": [{**d, "port": 0} for d in doc["devices"]]}), encoding="utf-8"
    )
    log = sim.with_suffix(".log")
    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}  # one table row per line
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "noaber.cli",
                "simulate",
                str(sim),
                "--duration",
                str(duration_s),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        rows = [rf"^\W*{re.escape(n)}\s.*?127\.0\.0\.1:(\d+)" for n in names]
        ports = {
            n: int(wait_for_line(log, row, 60, proc)[0].group(1)) for n, row in zip(names, rows)
        }
        for port in ports.values():
            wait_for_tcp(port, proc=proc)
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    devices = [{**d, "port": ports[d["name"]]} for d in doc["devices"]]
    site.write_text(
        yaml.safe_dump({**doc, "devices": devices}, allow_unicode=True), encoding="utf-8"
    )
    return proc, log


class Mosquitto:
    """A Mosquitto on 127.0.0.1 that can be stopped and started again on the same port.

    The port comes from :func:`tests.net.pick_port` (outside the ephemeral range, so it stays
    free while the broker is down); a first start retries another port on "address in use".
    ``conf`` is the rest of its configuration; its log is ``workdir/mosquitto.log``.
    """

    def __init__(self, exe: str, workdir: Path, conf: str):
        self.exe = exe
        self.workdir = workdir
        self.conf = conf + ("user root\n" if os.geteuid() == 0 else "")
        # started as root, mosquitto would switch to user "mosquitto" and could not read or
        # write the files of the test's directory
        self.log = workdir / "mosquitto.log"
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None

    def start(self, attempts: int = 5) -> None:
        for _ in range(attempts if self.port is None else 1):  # bounded
            port = self.port or pick_port()
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(f"listener {port} 127.0.0.1\n{self.conf}", encoding="utf-8")
            start = len(self.log.read_text(encoding="utf-8")) if self.log.exists() else 0
            with self.log.open("a", encoding="utf-8") as out:
                proc = subprocess.Popen(
                    [self.exe, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT
                )
            try:
                wait_for_line(self.log, r"mosquitto version \S+ running", 30, proc, start)
                wait_for_tcp(port, proc=proc)
            except AssertionError:
                proc.kill()
                proc.wait(10)
                in_use = "Address already in use" in self.log.read_text(encoding="utf-8")[start:]
                if in_use and self.port is None:
                    continue
                raise
            self.port, self.proc = port, proc
            return
        raise AssertionError(f"mosquitto found no free port in {attempts} attempts")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
