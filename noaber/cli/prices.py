"""``noaber prices``: price series per ISP in the store (CSV import, ENTSO-E fetch)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from energy.errors import NoaberError
from noaber.console import console

prices_app = typer.Typer(
    help="Price series per ISP (day-ahead market, all-in tariffs).", no_args_is_help=True
)


def _store(session, series: str, prices, replace: bool, action: str, detail: dict):
    """Store the new ISPs of ``prices``; changed ones only with ``replace`` (audited)."""
    from noaber.cli.audit import actor
    from noaber.services.prices import store_audited

    return store_audited(session, actor(), series, prices, replace, action, detail)


def _report(series: str, what: str, n: int, diff, replace: bool, tz: str) -> None:
    console.print(
        f"{series}: {n} ISPs {what}, {len(diff.new)} new, {diff.unchanged} unchanged"
        + (f", {len(diff.changed)} replaced" if replace and diff.changed else ""),
        highlight=False,
    )
    if diff.changed and not replace:
        raise NoaberError(
            f"{series}: {len(diff.changed)} price(s) differ from the stored ones and were kept "
            f"as stored ({diff.changed_text(tz)}); the rest is stored. Check the source, then "
            "pass --replace to correct them (audited)"
        )


@prices_app.command("import")
def prices_import(
    series: str = typer.Argument(..., help="Series name, e.g. epex-nl-day-ahead"),
    file: Path = typer.Argument(..., help="CSV with timestamp, price_eur_per_kwh"),
    replace: bool = typer.Option(
        False, "--replace", help="Replace stored prices that differ (an audited correction)"
    ),
) -> None:
    """Import prices per ISP (idempotent; a file with a bad row changes nothing; a price that
    differs from the stored one is reported and kept unless --replace)."""
    from energy.db import make_engine, session_factory, upgrade
    from energy.prices import parse_price_csv
    from energy.settings import load_settings

    prices = parse_price_csv(file)
    settings = load_settings()
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    with session_factory(engine).begin() as session:
        diff = _store(session, series, prices, replace, "tariff.import", {"file": file.name})
    _report(
        series,
        f"from {prices.index[0].isoformat()} to {prices.index[-1].isoformat()}",
        len(prices),
        diff,
        replace,
        settings.timezone,
    )


def _parse_day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"--day must be a date YYYY-MM-DD, got {text!r}") from None


@prices_app.command("fetch")
def prices_fetch(
    zone: Annotated[str, typer.Option(help="ENTSO-E bidding zone, e.g. NL")] = "NL",
    day: Annotated[
        str | None,
        typer.Option(help="Local delivery day YYYY-MM-DD (default: tomorrow in the zone)"),
    ] = None,
    series: Annotated[
        str | None,
        typer.Option(help="Series to store in (default: entsoe-<zone>-day-ahead)"),
    ] = None,
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Replace stored prices that differ (an audited correction)"),
    ] = False,
    timeout_s: Annotated[float, typer.Option(help="HTTP timeout per request [s]")] = 60.0,
) -> None:
    """Fetch one day of day-ahead prices from the ENTSO-E Transparency Platform.

    Needs NOABER_ENTSOE_TOKEN. PT15M and PT60M products are both read (an hourly price holds
    for its four ISPs); a 23- or 25-hour local day has 92 or 100 ISPs. Re-fetching a day
    stores nothing twice; a price that changed is reported and kept unless --replace.
    """
    import pandas as pd

    from energy.db import make_engine, session_factory, upgrade
    from energy.prices import entsoe_area, entsoe_series_name, fetch_day_ahead
    from energy.settings import load_settings
    from noaber.cli.audit import actor
    from noaber.services.prices import store_fetched

    settings = load_settings()
    _, tz = entsoe_area(zone)
    the_day = (
        _parse_day(day)
        if day is not None
        else (pd.Timestamp.now(tz=tz).normalize() + pd.Timedelta(days=1)).date()
    )
    name = series or entsoe_series_name(zone)
    token = settings.entsoe_token.get_secret_value() if settings.entsoe_token else ""
    got = fetch_day_ahead(token, zone, the_day, session=_http_session(), timeout_s=timeout_s)
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    with session_factory(engine).begin() as session:
        diff = store_fetched(session, actor(), got, name, replace)
    _report(
        name,
        f"of {got.zone} {got.day.isoformat()} ({', '.join(got.resolutions)}, ENTSO-E "
        f"document {got.document or '?'} revision {got.revision or '?'})",
        len(got.prices),
        diff,
        replace,
        tz,
    )


def _http_session():
    """The ``requests`` session the ENTSO-E client sends through (None: entsoe-py makes its
    own); the tests replace it with one that serves recorded answers."""
    return None


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
