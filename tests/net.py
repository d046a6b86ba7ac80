"""Ports without races and readiness checks instead of fixed sleeps (a suite that holds under load).

Ports. A server that can bind port 0 does so and reports the port it got: ``SimServer.port``,
uvicorn handed a bound socket (``tests/browser.py``), ``noaber serve --port 0`` (prints its
URL), ``noaber simulate`` on devices with ``port: 0`` (prints its table). A program that
cannot (Mosquitto) gets :func:`pick_port`, a port outside the kernel's ephemeral range (so no
outgoing connection takes it by accident, even while a test restarts that program on it); its
starter retries on "address in use". :func:`refusing_port` is a port that refuses connections
for as long as a test needs one.

Readiness. :func:`wait_until` / :func:`until` poll a condition until a deadline; the helpers
below wait for a TCP listener, an HTTP answer, a line in a log file, an established connection
or a process's signal handler. Timeouts are generous and multiplied by
``NOABER_TEST_TIMEOUT_FACTOR`` (default 1) on a slower machine.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TIMEOUT_FACTOR = float(os.environ.get("NOABER_TEST_TIMEOUT_FACTOR") or 1.0)
#: The lowest port :func:`pick_port` hands out (below it: well-known and registered services).
PICK_PORT_MIN = 20_000


def scaled(seconds: float) -> float:
    """``seconds`` times :data:`TIMEOUT_FACTOR`."""
    return seconds * TIMEOUT_FACTOR


def _pauses(
    cond: Callable[[], object],
    what: str,
    timeout_s: float = 30.0,
    interval_s: float = 0.05,
    proc: subprocess.Popen | None = None,
) -> Iterator[float]:
    """The pauses of a wait for ``cond``; fails after ``timeout_s`` (scaled) or once ``proc``
    (a process the condition depends on) has exited."""
    limit = scaled(timeout_s)
    deadline = time.monotonic() + limit
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:.0f} s waiting for {what}")
        yield interval_s


def wait_until(cond: Callable[[], object], what: str, **limits: Any) -> None:
    """Poll ``cond`` until it is true (``limits``: timeout_s, interval_s, proc of :func:`_pauses`)."""
    for pause in _pauses(cond, what, **limits):
        time.sleep(pause)


async def until(cond: Callable[[], object], what: str, **limits: Any) -> None:
    """:func:`wait_until` for a coroutine: the event loop runs while it waits."""
    for pause in _pauses(cond, what, **limits):
        await asyncio.sleep(pause)


# ------------------------------------------------------------------------------- ports


def _ephemeral_range() -> tuple[int, int]:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="ascii")
        low, high = (int(x) for x in text.split())
        return low, high
    except (OSError, ValueError):
        return 32_768, 60_999  # the Linux default


def _binds(port: int, host: str) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def pick_port(host: str = "127.0.0.1") -> int:
    """A port free now and outside the ephemeral range, for a program that cannot bind port 0.

    The kernel never gives such a port to an outgoing connection, so it stays free between this
    check and the program's own bind, and while the program is stopped and started again on it,
    unless another test picks the same one at that moment: retry on "address in use".
    """
    low, _ = _ephemeral_range()
    if low - PICK_PORT_MIN < 1000:  # no room below the ephemeral range: let the kernel choose
        with socket.socket() as s:
            s.bind((host, 0))
            return int(s.getsockname()[1])
    rng = random.SystemRandom()
    for _ in range(200):  # bounded
        port = rng.randrange(PICK_PORT_MIN, low)
        if _binds(port, host):
            return port
    raise AssertionError(f"no free port in {PICK_PORT_MIN}-{low - 1}")


@contextmanager
def refusing_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port that refuses connections while the block runs (bound, never listening)."""
    with socket.socket() as s:
        s.bind((host, 0))
        yield int(s.getsockname()[1])


# --------------------------------------------------------------------------- readiness


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket() as s:
        s.settimeout(2.0)
        return s.connect_ex((host, port)) == 0


def wait_for_tcp(
    port: int,
    host: str = "127.0.0.1",
    timeout_s: float = 30.0,
    proc: subprocess.Popen | None = None,
) -> None:
    """Wait until ``host:port`` accepts a TCP connection."""
    wait_until(
        lambda: tcp_open(port, host), f"a listener on {host}:{port}", timeout_s=timeout_s, proc=proc
    )


def wait_for_http(url: str, timeout_s: float = 60.0, proc: subprocess.Popen | None = None) -> bytes:
    """Wait until ``GET url`` answers 2xx; return the body."""
    body: list[bytes] = []

    def answered() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                body.append(resp.read())
        except OSError:
            return False
        return True

    wait_until(answered, f"an answer from {url}", timeout_s=timeout_s, interval_s=0.1, proc=proc)
    return body[0]


def tcp_established(port: int) -> bool:
    """Whether a TCP connection to local port ``port`` is established (``/proc/net/tcp``)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                return True
    return False


def handles_signal(pid: int, sig: int = signal.SIGTERM) -> bool:
    """Whether process ``pid`` has installed a handler for ``sig`` (``SigCgt`` in its status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return False
    caught = re.search(r"^SigCgt:\s*([0-9a-f]+)$", status, re.MULTILINE)
    return caught is not None and bool(int(caught.group(1), 16) >> (sig - 1) & 1)


def wait_for_signal_handler(
    proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 60.0
) -> None:
    """Wait until ``proc`` handles ``sig`` itself, so that sending it now stops it cleanly."""
    wait_until(
        lambda: handles_signal(proc.pid, sig), f"a {sig!r} handler", timeout_s=timeout_s, proc=proc
    )


def wait_for_line(
    path: Path,
    pattern: str,
    timeout_s: float = 30.0,
    proc: subprocess.Popen | None = None,
    start: int = 0,
    count: int = 1,
) -> list[re.Match[str]]:
    """Wait until ``path`` (a log a process writes) holds ``count`` matches of ``pattern`` (a
    multi-line regex) after character ``start``; return them."""
    found: list[re.Match[str]] = []

    def seen() -> bool:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")[start:]
        except FileNotFoundError:
            return False
        found[:] = list(re.finditer(pattern, text, re.MULTILINE))
        return len(found) >= count

    try:
        wait_until(seen, f"{pattern!r} in {path.name}", timeout_s=timeout_s, proc=proc)
    except AssertionError as exc:
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        raise AssertionError(f"{exc}; {path.name} says:\n{text[-3000:]}") from None
    return found
