"""Shared parts of the headless-Chromium tests: a live server, a loopback-only page, login.

Debian's ``chromium`` is driven by Python Playwright (never a downloaded browser). Every page
is guarded so that a request leaving 127.0.0.1 is aborted and reported.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tests.conftest import need, need_executable
from tests.net import wait_until

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-gpu",
]


@contextmanager
def live_server(app: Any, start_timeout_s: float = 30.0) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread on a free 127.0.0.1 port; yields its base URL.

    The socket is bound here (port 0) and handed to uvicorn, so the port cannot be taken in
    between; the URL is yielded once uvicorn has started.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: server.started or not thread.is_alive(), "uvicorn", timeout_s=start_timeout_s
        )
        assert thread.is_alive(), "uvicorn thread died"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def loopback_page(timeout_ms: int = 30_000) -> Iterator[tuple[Any, list[str]]]:
    """A Chromium page whose requests outside 127.0.0.1 are aborted and listed.

    Yields ``(page, outside)``; assert ``not outside`` after using the page.
    """
    need(
        Path("/usr/bin/chromium").exists(), "Debian chromium is not installed at /usr/bin/chromium"
    )
    chromium = need_executable("chromium")
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()

            def guard(route: Any) -> None:
                if urlparse(route.request.url).hostname != "127.0.0.1":
                    outside.append(route.request.url)
                    route.abort()
                else:
                    route.continue_()

            page.route("**/*", guard)
            page.set_default_timeout(timeout_ms)
            yield page, outside
        finally:
            browser.close()


def login(page: Any, base: str, username: str, password: str) -> None:
    """Sign in through the real login form."""
    page.goto(f"{base}/")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-submit")
    page.wait_for_load_state()
