"""User-facing errors: one clear line that names what and where."""

from __future__ import annotations


class NoaberError(Exception):
    """An error a user can act on; the CLI prints it as one line, the API as 4xx."""


class ValidationError(NoaberError, ValueError):
    """Input that does not satisfy the rules: names the source, the location and the value.

    Parameters
    ----------
    message : str
        What is wrong.
    source : str, optional
        The file or payload, e.g. ``site.yaml``.
    location : str, optional
        Where in it: a document path (``assets[2].power_kw``) or ``line 17``.
    line : int, optional
        The 1-based line in the source, where known (a YAML syntax error gives it).
    """

    def __init__(
        self,
        message: str,
        source: str | None = None,
        location: str | None = None,
        line: int | None = None,
    ):
        self.message = message
        self.source = source
        self.location = location
        self.line = line
        where = ":".join(p for p in (source, location) if p)
        super().__init__(f"{where}: {message}" if where else message)


class NotFoundError(NoaberError, LookupError):
    """A named thing (site, channel, member, …) does not exist."""
