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
    sessions = session_factory(engine)
    res = import_site_file(file, sessions)
    if res.changed:
        _audit_site(sessions, res)
    if not res.changed:
        console.print(f"site {res.site!r}: already up to date ({settings.database_for_display})")
        return
    parts = [f"{n} {k} created" for k, n in sorted(res.created.items())]
    parts += [f"{n} {k} updated" for k, n in sorted(res.updated.items())]
    console.print(f"site {res.site!r}: {', '.join(parts)} ({settings.database_for_display})")


def _audit_site(sessions, res) -> None:
    """Record who imported the site, with its grid limits as stored now."""
    from sqlalchemy import select

    from energy.audit import record
    from energy.db import transaction
    from energy.models import Site
    from noaber.cli.audit import actor

    with transaction(sessions) as session:
        site = session.scalar(select(Site).where(Site.name == res.site))
        detail: dict[str, object] = {"created": dict(res.created), "updated": dict(res.updated)}
        if site is not None:
            detail["grid_import_limit_kw"] = site.grid_import_limit_kw
            detail["grid_export_limit_kw"] = site.grid_export_limit_kw
        record(session, actor(), "site.import", res.site, detail)


def register(app: typer.Typer) -> None:
    """Add ``site import`` to the root app."""
    site_app.command("import")(site_import)
    app.add_typer(site_app, name="site")
