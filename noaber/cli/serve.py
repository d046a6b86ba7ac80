"""``noaber serve``, ``noaber demo`` and ``noaber version``."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from pathlib import Path
from typing import Annotated

import typer

from energy.errors import NoaberError
from energy.settings import load_settings
from noaber.console import console, progress


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; port 0 takes a free one (see ``getsockname``).

    With ``TCP_NODELAY``, which the accepted connections inherit: asyncio sets it only on
    sockets it made itself, and without it uvicorn's two writes of a small response (headers,
    then body) wait for the client's delayed ACK, about 40 ms per request on a kept-alive
    connection.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:
        raise NoaberError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _warn_if_exposed(host: str, mode: str) -> None:
    """One line on stderr when local mode (its own secret, maybe demo users) listens beyond
    this machine."""
    if mode == "local" and not _is_loopback(host):
        typer.echo(
            f"warning: local mode is listening on {host}, reachable from other machines; "
            "use 127.0.0.1 unless that is what you want (a deployment runs in production mode)",
            err=True,
        )


def _serve(app: object, sock: socket.socket) -> None:
    """Serve ``app`` with uvicorn on the bound ``sock`` (so the port printed is the port used)."""
    import uvicorn

    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, host=host, port=port, log_level="info")  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn has shut down cleanly
        server.run(sockets=[sock])
    if not server.started:  # as uvicorn.run: a failed startup exits with uvicorn's code 3
        raise SystemExit(3)


def serve(
    host: Annotated[str | None, typer.Option(help="Interface (default NOABER_API_HOST)")] = None,
    port: Annotated[
        int | None,
        typer.Option(
            min=0, max=65535, help="Port (default NOABER_API_PORT; 0: a free one, printed)"
        ),
    ] = None,
) -> None:
    """Migrate the database and serve the API and pages (uvicorn)."""
    from energy.db import make_engine, upgrade
    from noaber.api import create_app

    settings = load_settings()
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    h = host or settings.api_host
    sock = _bind(h, settings.api_port if port is None else port)
    _warn_if_exposed(h, settings.mode)
    p = sock.getsockname()[1]
    console.print(
        f"Noaber API on http://{h}:{p}/ (docs: /docs), database {settings.database_for_display}"
    )
    _serve(create_app(settings, engine), sock)


def demo(
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Build the demo and exit (for tests)")
    ] = False,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port of the demo server (0: a free one, printed)")
    ] = 8000,
    host: Annotated[str, typer.Option(help="Interface of the demo server")] = "127.0.0.1",
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Demo data directory (rebuilt every run); default <data dir>/demo"),
    ] = None,
) -> None:
    """Build the demo (dorpshuis + factory, a week of data) and serve its dashboard."""
    from noaber.services.demo import (
        CORE_STEPS,
        DEMO_SITE,
        DOMAIN_STEPS,
        build_demo,
        check_dir,
        demo_settings,
        logins_table,
    )

    settings = load_settings()
    target = (data_dir or settings.data_dir / "demo").resolve()
    demo_settings(target, settings)  # refuses outside local mode
    check_dir(target)  # refuses a directory the demo did not make
    extra = DOMAIN_STEPS
    names = [*(n for n, _ in CORE_STEPS), *(n for n, _ in extra)]
    with progress() as bar:
        task = bar.add_task("building the demo", total=len(names))

        def on_step(name: str) -> None:
            done = names.index(name) if name in names else 0
            bar.update(task, completed=done, description=f"demo: {name}")

        ctx = build_demo(target, settings, extra_steps=extra, on_step=on_step)
        bar.update(task, completed=len(names), description="demo built")
    console.print(f"demo data in {ctx.data_dir} ({ctx.settings.database_for_display})")
    for note in ctx.notes:
        console.print(note)
    sock = None if no_serve else _bind(host, port)
    if sock is not None:
        _warn_if_exposed(host, ctx.settings.mode)
    url = f"http://{host}:{port if sock is None else sock.getsockname()[1]}/"
    from rich.table import Table

    table = Table(title="demo logins (demo-only passwords)")
    for col in ("username", "password", "role", "who"):
        table.add_column(col)
    for row in logins_table(ctx.logins):
        table.add_row(*row)
    console.print(table)
    console.print(f"dashboard: {url}sites/{DEMO_SITE}/dashboard   API docs: {url}docs")
    if sock is None:
        return
    from noaber.api import create_app

    console.print(f"serving on {url} (Ctrl-C to stop)")
    _serve(create_app(ctx.settings, ctx.engine), sock)


def version() -> None:
    """Print the Noaber version."""
    from energy import __version__

    console.print(f"noaber {__version__}")


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``demo`` and ``version`` to the root app."""
    app.command("serve")(serve)
    app.command("demo")(demo)
    app.command("version")(version)
