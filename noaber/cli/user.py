"""``noaber user``: users of the API and pages."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from energy.settings import Settings, load_settings
from noaber.console import console

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

user_app = typer.Typer(help="Users of the API and pages.", no_args_is_help=True)


@contextmanager
def _user_transaction() -> Iterator[tuple[Settings, Session]]:
    """The settings and one transaction on the (migrated) database they name."""
    from energy.db import make_engine, session_factory, transaction, upgrade

    settings = load_settings()
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    with transaction(session_factory(engine)) as session:
        yield settings, session


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
    from energy.users import create_user

    with _user_transaction() as (settings, session):
        user = create_user(session, username, password, role, member, site or ())
        desc = f"user {user.username!r} ({user.role.value})"
    console.print(f"created {desc} in {settings.database_for_display}")


def _new_password_option() -> Any:
    return typer.Option(
        prompt="New password",
        hide_input=True,
        confirmation_prompt=True,
        envvar="NOABER_NEW_USER_PASSWORD",
        help="New password (prompted; or NOABER_NEW_USER_PASSWORD)",
    )


def user_reset_password(
    username: Annotated[str, typer.Argument(help="The user whose password is reset")],
    password: Annotated[str, _new_password_option()] = "",
) -> None:
    """Set a user's password, revoke all their tokens and clear their failed logins (in the
    running server too when NOABER_RATE_LIMIT_STORAGE is shared, e.g. Redis)."""
    from energy.users import find_user, reset_password
    from noaber.api.throttle import LoginThrottle

    with _user_transaction() as (settings, session):
        reset_password(session, find_user(session, username), password)
    LoginThrottle(settings.rate_limit_storage).forget_user(username)
    console.print(f"password of {username!r} reset; their tokens are revoked")


def user_change_password(
    username: Annotated[str, typer.Argument(help="Your username")],
    current: Annotated[
        str,
        typer.Option(
            prompt="Current password",
            hide_input=True,
            envvar="NOABER_CURRENT_PASSWORD",
            help="Current password (prompted; or NOABER_CURRENT_PASSWORD)",
        ),
    ] = "",
    password: Annotated[str, _new_password_option()] = "",
) -> None:
    """Change a password knowing the current one; revokes all tokens of the user."""
    from energy.users import change_password, find_user

    with _user_transaction() as (_settings, session):
        change_password(session, find_user(session, username), current, password)
    console.print(f"password of {username!r} changed; their tokens are revoked")


def user_reset_totp(
    username: Annotated[str, typer.Argument(help="The user whose second factor is removed")],
) -> None:
    """Remove a user's TOTP second factor (a lost phone); they may enrol again."""
    from energy.users import find_user, reset_totp

    with _user_transaction() as (_settings, session):
        reset_totp(session, find_user(session, username))
    console.print(f"second factor of {username!r} removed")


def register(app: typer.Typer) -> None:
    """Add ``user add``, ``change-password``, ``reset-password`` and ``reset-totp``."""
    user_app.command("add")(user_add)
    user_app.command("change-password")(user_change_password)
    user_app.command("reset-password")(user_reset_password)
    user_app.command("reset-totp")(user_reset_totp)
    app.add_typer(user_app, name="user")
