"""The ``noaber`` command line (Typer): the composition root for terminal use.

Every command has ``--help``. Errors a user can act on are printed as one line without a
traceback and exit with status 1 (2 for usage errors, as Typer does).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from energy.console import console, err_console
from energy.errors import NoaberError

app = typer.Typer(
    name="noaber",
    help="Noaber: local solar, batteries and V2G for Drenthe's dorpshuizen, and the Meetkoffer.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="The SQL store: schema migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _engine():
    from energy.db import make_engine
    from energy.settings import load_settings

    return make_engine(load_settings().sqlalchemy_url)


@db_app.command("upgrade")
def db_upgrade(
    revision: str = typer.Argument("heads", help="Target revision (default: all heads)"),
) -> None:
    """Create or migrate the database to the latest schema (idempotent)."""
    from energy.db import current_revisions, upgrade
    from energy.settings import load_settings

    engine = _engine()
    upgrade(engine, revision)
    console.print(
        f"database at {', '.join(sorted(current_revisions(engine)))}: {load_settings().sqlalchemy_url}"
    )


intervals_app = typer.Typer(
    help="15-minute interval readings from raw samples.", no_args_is_help=True
)
app.add_typer(intervals_app, name="intervals")


@intervals_app.command("update")
def intervals_update(
    channel: list[int] = typer.Option(
        None, "--channel", help="Channel id (repeatable; default: all)"
    ),
    full: bool = typer.Option(False, "--full", help="Recompute everything, not only what is new"),
) -> None:
    """Turn new (or late) raw samples into 15-minute interval readings, incrementally."""
    from energy.db import session_factory, upgrade
    from energy.pipeline import update_all
    from energy.samples import SampleStore
    from energy.settings import load_settings

    settings = load_settings()
    engine = _engine()
    upgrade(engine)
    store = SampleStore(settings.samples_dir)
    ids = list(channel) if channel else store.channels()
    total_isps = 0
    with session_factory(engine)() as session:
        from energy.console import progress

        with progress() as bar:
            task = bar.add_task("intervals", total=len(ids))
            for cid in ids:
                for report in update_all(store, session, [cid], full=full):
                    total_isps += report.isps_written
                bar.advance(task)
    console.print(f"{len(ids)} channel(s), {total_isps} interval readings written")


prices_app = typer.Typer(
    help="Price series per ISP (day-ahead market, all-in tariffs).", no_args_is_help=True
)
app.add_typer(prices_app, name="prices")


@prices_app.command("import")
def prices_import(
    series: str = typer.Argument(..., help="Series name, e.g. epex-nl-day-ahead"),
    file: Path = typer.Argument(..., help="CSV with timestamp, price_eur_per_kwh"),
) -> None:
    """Import prices per ISP (idempotent; a file with a bad row changes nothing)."""
    from energy.db import session_factory, upgrade
    from energy.prices import parse_price_csv, store_prices

    prices = parse_price_csv(file)
    engine = _engine()
    upgrade(engine)
    with session_factory(engine).begin() as session:
        n = store_prices(session, series, prices)
    console.print(
        f"{series}: {n} ISPs from {prices.index[0].isoformat()} to {prices.index[-1].isoformat()}"
    )


@prices_app.command("list")
def prices_list() -> None:
    """List the stored price series."""
    from energy.db import session_factory, upgrade
    from energy.prices import list_series

    engine = _engine()
    upgrade(engine)
    with session_factory(engine)() as session:
        rows = list_series(session)
    if not rows:
        console.print("no price series stored (noaber prices import SERIES FILE)")
    for name, n, first, last in rows:
        console.print(f"{name}: {n} ISPs, {first.isoformat()} .. {last.isoformat()}")


@app.command("version")
def version() -> None:
    """Print the Noaber version."""
    from energy import __version__

    console.print(f"noaber {__version__}")


# --- sub-applications of the foundation and the domain packages ---
#: Modules that add their commands with ``register(app: typer.Typer) -> None``.
COMMAND_MODULES = (
    "energy.cli_core",
    "modbus_gateway.cli",
    "optimizer.cli",
    "settlement.cli",
    "meetkoffer.cli",
)


def _mount() -> None:
    import importlib

    for module in COMMAND_MODULES:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:  # a package whose commands are not built yet
                continue
            raise
        mod.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``noaber`` console script."""
    _mount()
    try:
        app(args=argv, standalone_mode=True)
    except NoaberError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(1)
    except (ValueError, OSError) as exc:  # validation and file errors: one line, no traceback
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
