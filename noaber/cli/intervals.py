"""``noaber intervals``: 15-minute interval readings from raw samples."""

from __future__ import annotations

import typer

from noaber.console import console, progress

intervals_app = typer.Typer(
    help="15-minute interval readings from raw samples.", no_args_is_help=True
)


@intervals_app.command("update")
def intervals_update(
    channel: list[int] = typer.Option(
        None, "--channel", help="Channel id (repeatable; default: all)"
    ),
    full: bool = typer.Option(False, "--full", help="Recompute everything, not only what is new"),
) -> None:
    """Turn new (or late) raw samples into 15-minute interval readings, incrementally.

    Derived channels (the site file's ``derived:`` formulas, e.g. the building load from the
    meters) are recomputed where their inputs changed; an ISP with an input missing stays
    missing, and the first such ISP is printed with the reason."""
    from rich.markup import escape
    from sqlalchemy import select

    from energy.db import make_engine, session_factory, upgrade
    from energy.models import Channel
    from energy.pipeline import update_many
    from energy.rawstore import open_sample_store
    from energy.settings import load_settings

    settings = load_settings()
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    store = open_sample_store(settings, engine)
    ids = list(channel) if channel else store.channels()
    with session_factory(engine)() as session:
        with progress() as bar:
            bar.add_task("intervals", total=None)
            reports = update_many(store, session, ids, full=full)
        measured = [r for r in reports if not r.derived]
        derived = [r for r in reports if r.derived]
        keys = dict(
            session.execute(
                select(Channel.id, Channel.key).where(
                    Channel.id.in_([r.channel_id for r in derived])
                )
            ).all()
        )
    total = sum(r.isps_written for r in measured)
    console.print(f"{len(ids)} channel(s), {total} interval readings written")
    for r in derived:
        line = f"derived {keys.get(r.channel_id, r.channel_id)}: {r.isps_written} ISPs written"
        if r.missing_isps:
            line += f", {r.missing_isps} missing (first {r.first_missing})"
        console.print(escape(line), highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``intervals`` to the root app."""
    app.add_typer(intervals_app, name="intervals")
