"""``noaber gateway run`` killed with SIGKILL while its broker is away loses nothing it polled:
each poll is in the spool (on disk) before anything is sent, and the next start delivers it
once the broker and the centre are back (the centre's acknowledgement empties the spool)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modbus_gateway.mqtt import MqttSampleConsumer
from modbus_gateway.spool import MemorySink
from tests.conftest import need_executable
from tests.modbus_gateway.conftest import Mosquitto, start_simulate
from tests.net import scaled, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _spool_rows(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return [(c, t) for c, t in db.execute("SELECT channel, ts_ns FROM spool ORDER BY seq")]
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        db.close()


def _gateway(site: Path, port: int, spool: Path, tmp_path: Path, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOABER_")}
    env.update(NOABER_MODE="local", NOABER_DATA_DIR=str(tmp_path / "data"))
    return subprocess.Popen(
        [sys.executable, "-m", "noaber.cli", "gateway", "run", str(site),
         "--mqtt", f"127.0.0.1:{port}", "--gateway", "edge-k", "--no-live",
         "--spool", str(spool), *extra],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.slow  # three processes started cold: about 25 s under load
def test_sigkill_during_a_broker_outage_loses_nothing_polled(tmp_path):
    broker = Mosquitto(need_executable("mosquitto"), tmp_path, "allow_anonymous true\n")
    broker.start()
    port = broker.port
    assert port is not None
    broker.stop()  # the site's broker is away
    site = tmp_path / "edge-site.yaml"
    doc = {"devices": [{"name": "grid", "profile": "eastron_sdm630", "poll_interval_s": 0.2}]}
    sim, _ = start_simulate(doc, site)
    spool = tmp_path / "spool.sqlite"
    try:
        # a flush only every 60 s: what is polled must reach the disk without one
        proc = _gateway(site, port, spool, tmp_path, "--flush-interval", "60")
        try:
            wait_until(lambda: len({t for _, t in _spool_rows(spool)}) >= 10, "ten polls spooled",
                       timeout_s=60, proc=proc)  # fmt: skip
            time.sleep(0.5)
            killed_at = time.time_ns()
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        polled = _spool_rows(spool)
        last = max(t for _, t in polled)
        assert killed_at - last < 1_000_000_000, "the last second of polls was not on disk"
        assert len(polled) == len(set(polled))

        # broker and centre back; the gateway starts again on the same spool
        broker.start()
        got = MemorySink()
        centre = MqttSampleConsumer(
            "127.0.0.1", port, got, topic="noaber/edge-k/samples", client_id="t-kill"
        )
        centre.start()
        try:
            again = _gateway(site, port, spool, tmp_path, "--flush-interval", "0.5",
                             "--duration", "2")  # fmt: skip
            out, err = again.communicate(timeout=scaled(90))
            assert again.returncode == 0, err
        finally:
            centre.stop()
        assert set(polled) <= set(got.samples), "polled before the kill, never stored"
        assert "0 waiting" in out, out  # every batch acknowledged by the centre
        assert _spool_rows(spool) == []
    finally:
        sim.terminate()
        sim.wait(10)
        broker.stop()
