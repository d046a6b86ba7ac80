"""``noaber prices``: price series per ISP in the store."""

from __future__ import annotations

from pathlib import Path

import typer

from noaber.console import console

prices_app = typer.Typer(
    help="Price series per ISP (day-ahead market, all-in tariffs).", no_args_is_help=True
)


@prices_app.command("import")
def prices_import(
    series: str = typer.Argument(..., help="Series name, e.g. epex-nl-day-ahead"),
    file: Path = typer.Argument(..., help="CSV with timestamp, price_eur_per_kwh"),
) -> None:
    """Import prices per ISP (idempotent; a file with a bad row changes nothing)."""
    from energy.audit import record
    from energy.db import make_engine, session_factory, upgrade
    from energy.prices import parse_price_csv, store_prices
    from energy.settings import load_settings
    from noaber.cli.audit import actor

    prices = parse_price_csv(file)
    engine = make_engine(load_settings().sqlalchemy_url)
    upgrade(engine)
    with session_factory(engine).begin() as session:
        n = store_prices(session, series, prices)
        first, last = prices.index[0].isoformat(), prices.index[-1].isoformat()
        record(session, actor(), "tariff.import", series, {"isps": n, "from": first, "to": last})
    console.print(
        f"{series}: {n} ISPs from {prices.index[0].isoformat()} to {prices.index[-1].isoformat()}"
    )


@prices_app.command("list")
def prices_list() -> None:
    """List the stored price series."""
    from energy.db import make_engine, session_factory, upgrade
    from energy.prices import list_series
    from energy.settings import load_settings

    engine = make_engine(load_settings().sqlalchemy_url)
    upgrade(engine)
    with session_factory(engine)() as session:
        rows = list_series(session)
    if not rows:
        console.print("no price series stored (noaber prices import SERIES FILE)")
    for name, n, first, last in rows:
        console.print(f"{name}: {n} ISPs, {first.isoformat()} .. {last.isoformat()}")


def register(app: typer.Typer) -> None:
    """Add ``prices`` to the root app."""
    app.add_typer(prices_app, name="prices")
