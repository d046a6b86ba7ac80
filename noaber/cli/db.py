"""``noaber db``: the SQL store's schema migrations."""

from __future__ import annotations

import typer

from noaber.console import console

db_app = typer.Typer(help="The SQL store: schema migrations.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(
    revision: str = typer.Argument("heads", help="Target revision (default: all heads)"),
) -> None:
    """Create or migrate the database to the latest schema (idempotent)."""
    from energy.db import current_revisions, make_engine, upgrade
    from energy.settings import load_settings

    settings = load_settings()
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine, revision)
    heads = ", ".join(sorted(current_revisions(engine)))
    console.print(f"database at {heads}: {settings.database_for_display}")


def register(app: typer.Typer) -> None:
    """Add ``db`` to the root app."""
    app.add_typer(db_app, name="db")
