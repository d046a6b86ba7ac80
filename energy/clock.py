"""The clock and the local time zone, free of NumPy and pandas (the edge gateway imports it).

:mod:`energy.timegrid` uses ``LOCAL_TZ`` for its local-calendar functions and offers it too.
"""

from __future__ import annotations

import datetime as dt

LOCAL_TZ = "Europe/Amsterdam"
"""The local time zone where no site is at hand (a site has its own ``timezone``)."""
UTC = dt.UTC


def utc_now() -> dt.datetime:
    """The current time, timezone-aware in UTC."""
    return dt.datetime.now(UTC)


def local_time_of_day_s(tz: str = LOCAL_TZ, now: dt.datetime | None = None) -> int:
    """Seconds since local midnight on the wall clock of ``tz`` (the phase of a daily curve)."""
    from zoneinfo import ZoneInfo

    t = (now or utc_now()).astimezone(ZoneInfo(tz))
    return t.hour * 3600 + t.minute * 60 + t.second
