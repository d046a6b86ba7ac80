"""``noaber user``: users of the API and pages."""

from __future__ import annotations

from typing import Annotated

import typer

from energy.settings import load_settings
from noaber.console import console

user_app = typer.Typer(help="Users of the API and pages.", no_args_is_help=True)


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


def register(app: typer.Typer) -> None:
    """Add ``user add`` to the root app."""
    user_app.command("add")(user_add)
    app.add_typer(user_app, name="user")
