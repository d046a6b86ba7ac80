"""``noaber site``: site descriptions (YAML), validated and imported."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from energy.settings import load_settings
from noaber.console import console

site_app = typer.Typer(help="Site descriptions (YAML): validate and import.", no_args_is_help=True)


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
        console.print(f"site {res.site!r}: already up to date ({settings.database_for_display})")
        return
    parts = [f"{n} {k} created" for k, n in sorted(res.created.items())]
    parts += [f"{n} {k} updated" for k, n in sorted(res.updated.items())]
    console.print(f"site {res.site!r}: {', '.join(parts)} ({settings.database_for_display})")


def register(app: typer.Typer) -> None:
    """Add ``site import`` to the root app."""
    site_app.command("import")(site_import)
    app.add_typer(site_app, name="site")
