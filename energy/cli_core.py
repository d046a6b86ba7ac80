"""Core commands of ``noaber``: ``serve``, ``demo``, ``site import``, ``user add``.

Registered on the root app by :func:`register` (see ``energy.cli.COMMAND_MODULES``). This
module is part of the composition root: it may import the API and the domain packages.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated

import typer

from energy.console import console, progress
from energy.settings import load_settings

site_app = typer.Typer(help="Site descriptions (YAML): validate and import.", no_args_is_help=True)
user_app = typer.Typer(help="Users of the API and pages.", no_args_is_help=True)
control_app = typer.Typer(
    help="Closed loop: the optimizer's MPC drives the site's devices through the gateway.",
    no_args_is_help=True,
)

#: Modules of the domain packages that add a step to the demo with
#: ``demo_step(ctx: energy.demo.DemoContext) -> None``, run in this order after the core.
DOMAIN_DEMO_STEPS = (
    ("gateway", "modbus_gateway.demo"),
    ("optimizer", "optimizer.demo"),
    ("settlement", "settlement.demo"),
    ("meetkoffer", "meetkoffer.demo"),
)


def domain_demo_steps() -> list[tuple[str, object]]:
    """``(name, demo_step)`` of every domain package that ships a ``demo.py``."""
    steps: list[tuple[str, object]] = []
    for name, module in DOMAIN_DEMO_STEPS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:  # the package has no demo step (yet)
                continue
            raise
        steps.append((name, mod.demo_step))
    return steps


def _serve(app: object, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info")  # type: ignore[arg-type]


def serve(
    host: Annotated[str | None, typer.Option(help="Interface (default NOABER_API_HOST)")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port (default NOABER_API_PORT)")
    ] = None,
) -> None:
    """Migrate the database and serve the API and pages (uvicorn)."""
    from energy.api import create_app
    from energy.db import make_engine, upgrade

    settings = load_settings()
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    h, p = host or settings.api_host, settings.api_port if port is None else port
    console.print(
        f"Noaber API on http://{h}:{p}/ (docs: /docs), database {settings.sqlalchemy_url}"
    )
    _serve(create_app(settings, engine), h, p)


def demo(
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Build the demo and exit (for tests)")
    ] = False,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port of the demo server")] = 8000,
    host: Annotated[str, typer.Option(help="Interface of the demo server")] = "127.0.0.1",
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Demo data directory (rebuilt every run); default <data dir>/demo"),
    ] = None,
) -> None:
    """Build the demo (dorpshuis + factory, a week of data) and serve its dashboard."""
    from energy.demo import DEMO_SITE, build_demo, check_dir, demo_settings, logins_table

    settings = load_settings()
    target = (data_dir or settings.data_dir / "demo").resolve()
    demo_settings(target, settings)  # refuses outside local mode
    check_dir(target)  # refuses a directory the demo did not make
    extra = domain_demo_steps()
    names = ["core", "samples", "readings", *[n for n, _ in extra]]
    with progress() as bar:
        task = bar.add_task("building the demo", total=len(names))

        def on_step(name: str) -> None:
            done = names.index(name) if name in names else 0
            bar.update(task, completed=done, description=f"demo: {name}")

        ctx = build_demo(target, settings, extra_steps=extra, on_step=on_step)  # type: ignore[arg-type]
        bar.update(task, completed=len(names), description="demo built")
    console.print(f"demo data in {ctx.data_dir} ({ctx.settings.sqlalchemy_url})")
    for note in ctx.notes:
        console.print(note)
    url = f"http://{host}:{port}/"
    from rich.table import Table

    table = Table(title="demo logins (demo-only passwords)")
    for col in ("username", "password", "role", "who"):
        table.add_column(col)
    for row in logins_table(ctx.logins):
        table.add_row(*row)
    console.print(table)
    console.print(f"dashboard: {url}sites/{DEMO_SITE}/dashboard   API docs: {url}docs")
    if no_serve:
        return
    from energy.api import create_app

    console.print(f"serving on {url} (Ctrl-C to stop)")
    _serve(create_app(ctx.settings, ctx.engine), host, port)


def site_import(
    file: Annotated[Path, typer.Argument(help="Site description (YAML)", exists=False)],
) -> None:
    """Validate a site description and import it (idempotent; a bad file changes nothing)."""
    from energy.db import make_engine, session_factory, upgrade
    from energy.siteconfig import import_site_file

    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such file")
    settings = load_settings()
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    res = import_site_file(file, session_factory(engine))
    if not res.changed:
        console.print(f"site {res.site!r}: already up to date ({settings.sqlalchemy_url})")
        return
    parts = [f"{n} {k} created" for k, n in sorted(res.created.items())]
    parts += [f"{n} {k} updated" for k, n in sorted(res.updated.items())]
    console.print(f"site {res.site!r}: {', '.join(parts)} ({settings.sqlalchemy_url})")


def user_add(
    username: Annotated[str, typer.Argument(help="Login name (3-100 of a-z 0-9 . _ @ -)")],
    role: Annotated[str, typer.Option(help="operator, site_manager, firm or member")],
    member: Annotated[
        str | None, typer.Option(help="Member ref the firm/member user acts for")
    ] = None,
    site: Annotated[
        list[str] | None, typer.Option(help="Site a site_manager manages (repeatable)")
    ] = None,
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="NOABER_NEW_USER_PASSWORD",
            help="Password (prompted if not given; or NOABER_NEW_USER_PASSWORD)",
        ),
    ] = "",
) -> None:
    """Create a user (password stored as an Argon2id hash only)."""
    from energy.db import make_engine, session_factory, transaction, upgrade
    from energy.users import create_user

    settings = load_settings()
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    with transaction(session_factory(engine)) as session:
        user = create_user(session, username, password, role, member, site or ())
        desc = f"user {user.username!r} ({user.role.value})"
    console.print(f"created {desc} in {settings.sqlalchemy_url}")


def control_run(
    site_file: Annotated[Path, typer.Argument(help="Site YAML (devices and assets), imported")],
    prices: Annotated[Path | None, typer.Option(help="Price CSV covering every horizon")] = None,
    price_series: Annotated[
        str | None,
        typer.Option(
            help="Instead of --prices: stored series 'IMPORT,EXPORT' (noaber prices import)"
        ),
    ] = None,
    sessions: Annotated[
        Path | None, typer.Option(help="EV sessions YAML {ev: [{arrival, ...}]}, re-read per step")
    ] = None,
    steps: Annotated[int, typer.Option(min=1, max=1_000_000, help="Control steps, then stop")] = 96,
    step_seconds: Annotated[
        float, typer.Option(min=0.5, max=86_400, help="Seconds between re-plans")
    ] = 900.0,
    horizon_hours: Annotated[float, typer.Option(min=1, max=168, help="Horizon [h]")] = 24.0,
    cloud_factor: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="PV share of clear sky")
    ] = 1.0,
    store: Annotated[bool, typer.Option(help="Store every plan in the database")] = True,
    spool: Annotated[Path | None, typer.Option(help="Gateway spool file (SQLite)")] = None,
) -> None:
    """Poll SITE's devices and re-plan every step; battery and charger setpoints go through
    the gateway's safe writes. A failed plan hands the devices back to their safe default;
    Ctrl-C/SIGTERM and the end restore every safe default."""
    from energy.control import run_site, summary_line
    from energy.errors import NoaberError
    from optimizer.sitestore import parse_price_series

    if (prices is None) == (price_series is None):
        raise NoaberError("give exactly one of --prices CSV or --price-series IMPORT,EXPORT")
    run = run_site(
        site_file,
        prices,
        sessions,
        steps,
        step_seconds,
        horizon_hours,
        cloud_factor,
        store,
        spool,
        price_series=parse_price_series(price_series),
    )
    console.print(summary_line(run))
    if run.status.last_ok is False:
        raise NoaberError(f"the last planning step failed: {run.status.last_error}")


def register(app: typer.Typer) -> None:
    """Add the core commands to the root ``noaber`` app."""
    app.command("serve")(serve)
    app.command("demo")(demo)
    site_app.command("import")(site_import)
    user_app.command("add")(user_add)
    app.add_typer(site_app, name="site")
    app.add_typer(user_app, name="user")
    control_app.command("run")(control_run)
    app.add_typer(control_app, name="control")
