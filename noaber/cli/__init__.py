"""The ``noaber`` command line (Typer): one module per command group.

Every command has ``--help``. Errors a user can act on are printed as one line without a
traceback and exit with status 1 (2 for usage errors, as Typer does). Each module adds its
commands to the root app with ``register(app)``; imports of the heavy parts (the solver, the
API, pandas) happen inside the commands, so ``noaber --help`` stays quick.
"""

from __future__ import annotations

import os
import sys

import typer

from energy.errors import NoaberError
from noaber.cli import (
    audit,
    control,
    db,
    gateway,
    homeassistant,
    intervals,
    jobs,
    meetkoffer,
    member,
    ocpp,
    optimize,
    prices,
    serve,
    settle,
    site,
    user,
)
from noaber.console import err_console

app = typer.Typer(
    name="noaber",
    help="Noaber: local solar, batteries and V2G for Drenthe's dorpshuizen, and the Meetkoffer.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

#: The command groups, in the order ``noaber --help`` lists them.
COMMAND_MODULES = (
    serve,
    db,
    site,
    user,
    member,
    intervals,
    prices,
    gateway,
    ocpp,
    homeassistant,
    optimize,
    control,
    settle,
    jobs,
    meetkoffer,
    audit,
)


@app.callback()
def _root(
    as_user: str | None = typer.Option(
        None,
        "--as",
        envvar="NOABER_AS",
        help="The user you act as, for the audit log (default: the OS user)",
    ),
) -> None:
    """Noaber: local solar, batteries and V2G for Drenthe's dorpshuizen, and the Meetkoffer."""
    audit.set_actor(as_user)
    _configure_logging()


def _configure_logging() -> None:
    """Text or JSON log lines (``NOABER_LOG_FORMAT``), URL passwords redacted; an invalid
    environment is reported by the command that reads the settings, not here."""
    from energy.settings import Settings, get_settings
    from noaber.services.logs import configure_logging

    try:
        settings = get_settings()
    except Exception:
        settings = Settings.model_construct(
            log_format="json" if os.environ.get("NOABER_LOG_FORMAT") == "json" else "text",
            log_level="INFO",
        )
    configure_logging(settings)


for _module in COMMAND_MODULES:
    _module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``noaber`` console script."""
    try:
        app(args=argv, standalone_mode=True)
    except NoaberError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(1)
    except (ValueError, OSError) as exc:  # validation and file errors: one line, no traceback
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(1)
