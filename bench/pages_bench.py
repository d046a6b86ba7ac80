"""Page benchmark: the dashboard, schedule and statement pages of the demo under 8 users.

    python bench/pages_bench.py            # 8 users, 40 rounds each
    python bench/pages_bench.py --quick    # 8 users, 4 rounds (run from a test)

Builds the demo (``noaber demo --no-serve``'s steps) into a temporary directory, serves its
app with uvicorn on 127.0.0.1 (a socket bound to port 0 as ``noaber serve`` binds) in a thread, and drives it with a
real HTTP client (``httpx.AsyncClient``): ``--users`` clients, each logged in through the
login form with its own cookie (the operator and the dorpshuis manager in turn), request
the pages one after the other, all clients at once. Per page it prints p50/p95 [ms] and the
p95 as a ratio to the baseline measured in the same run: ``/health`` on the same server
(routing, the middleware, one database query), so the ratio says what a page costs above
the server's floor on this machine. Target (issue 16): p95 <= 150 ms per page at 8 users.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import uvicorn

from energy.settings import Settings
from noaber.api import create_app
from noaber.cli.serve import _bind as bind
from noaber.services.demo import DOMAIN_STEPS
from noaber.services.demo.builder import DEMO_LOGINS, DEMO_SITE, build_demo

TARGET_P95_MS = 150.0
#: The pages measured (label, path) and the baseline.
PAGES = (
    ("dashboard", f"/sites/{DEMO_SITE}/dashboard"),
    ("schedule", f"/schedules/sites/{DEMO_SITE}"),
    ("statement", f"/sites/{DEMO_SITE}/statement"),
)
BASELINE = ("baseline /health", "/health")
#: Who the clients log in as, in turn (both may open every measured page).
USERS = [login for login in DEMO_LOGINS if login.role in ("operator", "site_manager")]


def serve(app, sock: socket.socket) -> tuple[uvicorn.Server, threading.Thread]:
    """uvicorn serving ``app`` on ``sock`` in a thread; returns once it accepts requests."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(2000):  # readiness: the server's own flag, at most ~20 s
        if server.started:
            return server, thread
        if not thread.is_alive():
            raise SystemExit("uvicorn stopped before it started")
        time.sleep(0.01)
    raise SystemExit("uvicorn did not start within 20 s")


async def login(client: httpx.AsyncClient, i: int) -> None:
    who = USERS[i % len(USERS)]
    r = await client.post("/login", data={"username": who.username, "password": who.password})
    if r.status_code != 303 or "noaber_token" not in client.cookies:
        raise SystemExit(f"login of {who.username} failed: {r.status_code} {r.text[:200]}")


async def user_run(client: httpx.AsyncClient, rounds: int, times: dict[str, list[float]]) -> None:
    for _ in range(rounds):
        for label, path in (BASELINE, *PAGES):
            t0 = time.perf_counter()
            r = await client.get(path, headers={"Accept": "text/html"})
            dt_ms = (time.perf_counter() - t0) * 1000.0
            if r.status_code != 200:
                raise SystemExit(f"{path}: {r.status_code} {r.text[:300]}")
            times[label].append(dt_ms)


async def drive(base_url: str, users: int, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {label: [] for label, _ in (BASELINE, *PAGES)}
    limits = httpx.Limits(max_connections=1)
    clients = [
        httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0, follow_redirects=False)
        for _ in range(users)
    ]
    try:
        # the first login alone: it makes <data_dir>/secret_key, and concurrent first
        # logins can read that file before it is written (energy.settings.data_dir_secret)
        await login(clients[0], 0)
        await asyncio.gather(*(login(c, i) for i, c in enumerate(clients) if i))
        # one warm-up round each (first renders fill caches and import lazily loaded modules)
        warm: dict[str, list[float]] = {label: [] for label in times}
        await asyncio.gather(*(user_run(c, 1, warm) for c in clients))
        await asyncio.gather(*(user_run(c, rounds, times) for c in clients))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 rounds per user (a smoke run)")
    ap.add_argument("--users", type=int, default=8, help="concurrent logged-in users")
    ap.add_argument("--rounds", type=int, default=None, help="requests of each page per user")
    args = ap.parse_args()
    rounds = args.rounds or (4 if args.quick else 40)
    with tempfile.TemporaryDirectory(prefix="noaber-pages-bench-") as tmp:
        t0 = time.perf_counter()
        ctx = build_demo(Path(tmp) / "demo", Settings(mode="local"), extra_steps=DOMAIN_STEPS)
        print(
            f"demo built in {time.perf_counter() - t0:.1f} s ({ctx.settings.database_for_display})"
        )
        app = create_app(ctx.settings, ctx.engine)
        sock = bind("127.0.0.1", 0)  # as `noaber serve` binds (TCP_NODELAY)
        port = sock.getsockname()[1]
        server, thread = serve(app, sock)
        try:
            t1 = time.perf_counter()
            times = asyncio.run(drive(f"http://127.0.0.1:{port}", args.users, rounds))
            wall = time.perf_counter() - t1
        finally:
            server.should_exit = True
            thread.join(timeout=30)
            ctx.engine.dispose()
    n = sum(len(v) for v in times.values())
    print(
        f"{args.users} users x {rounds} rounds x {len(PAGES) + 1} routes: {n} requests in "
        f"{wall:.1f} s ({n / wall:.0f} requests/s) on 127.0.0.1:{port}"
    )
    base = np.asarray(times[BASELINE[0]])
    base_p50, base_p95 = np.percentile(base, 50), np.percentile(base, 95)
    print(f"{BASELINE[0]:<18} p50 {base_p50:7.1f} ms   p95 {base_p95:7.1f} ms")
    slow = []
    for label, _path in PAGES:
        a = np.asarray(times[label])
        p50, p95 = np.percentile(a, 50), np.percentile(a, 95)
        print(
            f"{label:<18} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   "
            f"ratio p95 / baseline p95 {p95 / base_p95:6.1f}   "
            f"{'ok' if p95 <= TARGET_P95_MS else 'SLOWER THAN'} p95 <= {TARGET_P95_MS:.0f} ms"
        )
        if p95 > TARGET_P95_MS:
            slow.append(label)
    print(
        f"target p95 <= {TARGET_P95_MS:.0f} ms: {'met' if not slow else 'missed by ' + ', '.join(slow)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
