"""``noaber audit``: the operator's view of the audit log of people's actions.

Who acts on the command line is the OS user running ``noaber``, or the user named with the
root option ``noaber --as USER ...`` (or ``NOABER_AS``), e.g. an operator working through a
shared service account. :func:`actor` gives it to every audited command.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Annotated

import typer

from energy.audit import Actor, cli_actor
from noaber.console import console

audit_app = typer.Typer(
    help="The audit log of people's actions (append-only).", no_args_is_help=True
)

_AS: dict[str, str | None] = {"user": None}


def set_actor(as_user: str | None) -> None:
    """Remember ``--as USER`` of this invocation (None: the OS user)."""
    _AS["user"] = as_user


def actor() -> Actor:
    """The actor of the running command: ``--as``, then ``NOABER_AS``, then the OS user."""
    return cli_actor(_AS["user"] or os.environ.get("NOABER_AS") or None)


def _sessions():
    from energy.db import make_engine, session_factory, upgrade
    from energy.settings import load_settings

    engine = make_engine(load_settings().sqlalchemy_url)
    upgrade(engine)
    return session_factory(engine)


def _utc(value: str | None, what: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--{what} must be an ISO date or time, got {value!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def audit_list(
    actor_name: Annotated[str | None, typer.Option("--actor", help="Only this user")] = None,
    action: Annotated[
        str | None, typer.Option(help="Action, or a prefix ending in '.' (settlement.)")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Only this target (member ref, run id)")
    ] = None,
    since: Annotated[str | None, typer.Option(help="From (ISO; UTC if no offset)")] = None,
    until: Annotated[str | None, typer.Option(help="Before (ISO; UTC if no offset)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 200,
    plain: Annotated[bool, typer.Option(help="Tab-separated lines (for grep and scripts)")] = False,
) -> None:
    """List audit entries, newest first (time in UTC)."""
    from rich.table import Table

    from energy.audit import entries

    with _sessions()() as session:
        rows = entries(
            session,
            actor=actor_name,
            action=action,
            target=target,
            since=_utc(since, "since"),
            until=_utc(until, "until"),
            limit=limit,
        )
        lines = [
            (
                str(e.seq),
                e.at.strftime("%Y-%m-%d %H:%M:%S"),
                e.actor,
                e.via,
                e.action,
                e.target,
                ", ".join(f"{k}={v}" for k, v in e.detail.items()),
            )
            for e in rows
        ]
    if plain:
        for line in lines:
            typer.echo("\t".join(line))
    else:
        table = Table("seq", "at (UTC)", "actor", "via", "action", "target", "detail")
        for line in lines:
            table.add_row(*line)
        console.print(table)
    console.print(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}")


def audit_verify() -> None:
    """Recompute the audit log's hash chain; exit 1 if an entry was edited or removed."""
    from energy.audit import verify
    from energy.errors import NoaberError

    with _sessions()() as session:
        n, problems = verify(session)
    if problems:
        lines = "; ".join(f"seq {p.seq}: {p.reason}" for p in problems[:10])
        raise NoaberError(f"audit log broken in {len(problems)} place(s): {lines}")
    console.print(f"audit log ok: {n} entries, hash chain intact")


def register(app: typer.Typer) -> None:
    """Add ``audit list`` and ``audit verify``."""
    audit_app.command("list")(audit_list)
    audit_app.command("verify")(audit_verify)
    app.add_typer(audit_app, name="audit")
