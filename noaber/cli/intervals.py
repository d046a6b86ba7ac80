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
    """Turn new (or late) raw samples into 15-minute interval readings, incrementally."""
    from energy.db import make_engine, session_factory, upgrade
    from energy.pipeline import update_many
    from energy.samples import SampleStore
    from energy.settings import load_settings

    settings = load_settings()
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    store = SampleStore(settings.samples_dir)
    ids = list(channel) if channel else store.channels()
    total_isps = 0
    with session_factory(engine)() as session, progress() as bar:
        task = bar.add_task("intervals", total=len(ids))
        for cid in ids:
            for report in update_many(store, session, [cid], full=full):
                total_isps += report.isps_written
            bar.advance(task)
    console.print(f"{len(ids)} channel(s), {total_isps} interval readings written")


def register(app: typer.Typer) -> None:
    """Add ``intervals`` to the root app."""
    app.add_typer(intervals_app, name="intervals")
