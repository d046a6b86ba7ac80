"""Log configuration of every ``noaber`` process: text or JSON lines, secrets redacted.

``NOABER_LOG_FORMAT=json`` makes each record one JSON object on stderr (``time`` in UTC ISO
8601, ``level``, ``logger``, ``message`` and any ``extra`` fields), for a log shipper;
``text`` (the default) is one plain line. Either way :class:`RedactSecrets` replaces the
password of any URL in a message (``postgresql://noaber:***@db/noaber``,
``redis://:***@redis:6379/0``) before it is written, so a library that logs its connection
URL prints no secret.
"""

from __future__ import annotations

import logging
import re
import sys
import time

from pythonjsonlogger.json import JsonFormatter

from energy.settings import Settings

#: ``scheme://user:password@`` -> ``scheme://user:***@`` (up to the last ``@`` before a
#: space, as :func:`energy.settings.redact_database_url` does for a URL alone).
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)[^\s]*@")
_HANDLER_NAME = "noaber"


def redact(text: str) -> str:
    """``text`` with every URL password replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\1***@", text)


class RedactSecrets(logging.Filter):
    """Redacts URL passwords in the formatted message (and drops the arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


#: The loggers this configuration serves: Noaber's own (``noaber.*``: jobs, scheduler,
#: metrics, ingest) at the configured level, and the job queue engine's from WARNING up.
#: (The gateway and the closed loop keep their own handlers, see noaber/cli/gateway.py.)
LOGGERS = {"noaber": None, "dramatiq": logging.WARNING}


def configure_logging(settings: Settings) -> logging.Handler:
    """Install the one stderr handler of this process on :data:`LOGGERS` (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    formatter: logging.Formatter
    if settings.log_format == "json":
        formatter = JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            datefmt="%Y-%m-%dT%H:%M:%SZ",
        )
    else:
        formatter = logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%SZ"
        )
    formatter.converter = time.gmtime  # UTC, as every time Noaber shows a machine
    handler.setFormatter(formatter)
    handler.addFilter(RedactSecrets())
    for name, level in LOGGERS.items():
        lg = logging.getLogger(name)
        for old in [h for h in lg.handlers if h.get_name() == _HANDLER_NAME]:
            lg.removeHandler(old)
        lg.addHandler(handler)
        lg.setLevel(level if level is not None else settings.log_level)
    return handler
