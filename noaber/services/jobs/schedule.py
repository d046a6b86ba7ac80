"""The scheduler of the periodic jobs (``noaber scheduler``), with an injected clock.

Each tick asks :func:`due_jobs` what is due at ``now`` and submits it under its idempotent
key, so however often it ticks (and however many schedulers run) a slot gets one job:

- ``replan`` of every site with a battery or an EV, for the 15-minute ISP that holds
  ``now`` (key ``replan:<site>:<ISP start>``, horizon ``replan_horizon_hours``). A slot the
  scheduler was down for is not planned afterwards: a plan for a past start is no use.
- ``nightly`` from :data:`NIGHTLY_AT` local time: the next local day's plans for every site
  (key ``nightly:<day>``).
- ``settle`` from day :data:`SETTLE_DAY` of a month at :data:`SETTLE_AT` local time: the
  previous month of every community file in ``communities_dir`` (key
  ``settle:<community>:<YYYY-MM>``).
- ``prices_fetch`` when ``NOABER_ENTSOE_TOKEN`` is set: the zone's (``NOABER_ENTSOE_ZONE``)
  day-ahead prices of today, and from :data:`PRICES_FETCH_FROM` local time of tomorrow
  (published around 12:45), while the series ``entsoe-<zone>-day-ahead`` lacks an ISP of
  that day; one job per day and local hour (key ``prices:<zone>:<day>:<HH>``), so a day
  published late is tried again each hour and a stored day is not fetched again. The plans
  take fetched prices over their fallback from the next re-plan on.

After submitting, a tick sends the new jobs and re-sends queued jobs the broker may not have
(:meth:`JobQueue.resend_stale`).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from energy import jobs as jobstore
from energy.clock import utc_now
from energy.settings import Settings
from energy.timegrid import floor_isp
from noaber.services.jobs.tasks import iso, plannable_sites, replan_key, settle_key

log = logging.getLogger("noaber.scheduler")

#: Local time from which the nightly batch of the next day is due.
NIGHTLY_AT = dt.time(22, 0)
#: Day of the month and local time from which the previous month is settled.
SETTLE_DAY = 5
SETTLE_AT = dt.time(6, 0)
#: Local time from which tomorrow's day-ahead prices are fetched (the auction's results are
#: published around 12:45: energy.prices.DAY_AHEAD_PUBLISHED_LOCAL).
PRICES_FETCH_FROM = dt.time(13, 0)
#: Who the scheduler's jobs are requested by.
REQUESTER = "cli:scheduler"


@dataclass(frozen=True, slots=True)
class Due:
    """A job that is due: its kind, idempotency key, arguments and owner."""

    kind: str
    key: str
    args: dict[str, Any]
    site_id: int | None = None
    community: str | None = None


def _previous_month(day: dt.date) -> str:
    first = day.replace(day=1) - dt.timedelta(days=1)
    return f"{first.year:04d}-{first.month:02d}"


def due_jobs(session: Session, settings: Settings, now: dt.datetime) -> list[Due]:
    """Every job due at ``now`` (UTC), by the rules of the module docstring."""
    now_ts = pd.Timestamp(now).tz_convert("UTC")
    slot = floor_isp(now_ts)
    out: list[Due] = []
    for site in plannable_sites(session):
        out.append(
            Due(
                "replan",
                replan_key(site.name, slot),
                {
                    "site": site.name,
                    "start": iso(slot),
                    "horizon_hours": settings.replan_horizon_hours,
                },
                site_id=site.id,
            )
        )
    local = now_ts.tz_convert(ZoneInfo(settings.timezone))
    if local.time() >= NIGHTLY_AT:
        day = local.date() + dt.timedelta(days=1)  # calendar day (not +24 h: DST)
        out.append(Due("nightly", f"nightly:{day.isoformat()}", {"day": day.isoformat()}))
    if (local.day, local.time()) >= (SETTLE_DAY, SETTLE_AT):
        period = _previous_month(local.date())
        directory = settings.communities_path
        for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
            name = path.stem
            out.append(
                Due(
                    "settle",
                    settle_key(name, period),
                    {"community": name, "period": period},
                    community=name,
                )
            )
    out.extend(_prices_due(session, settings, now_ts))
    return out


def _prices_due(session: Session, settings: Settings, now: pd.Timestamp) -> list[Due]:
    """The day-ahead fetches due at ``now`` (see the module docstring)."""
    if settings.entsoe_token is None:
        return []
    from energy.prices import entsoe_area, entsoe_series_name
    from noaber.services.prices import day_stored

    zone = settings.entsoe_zone.upper()
    _, tz = entsoe_area(zone)
    local = now.tz_convert(ZoneInfo(tz))
    days = [local.date()]
    if local.time() >= PRICES_FETCH_FROM:
        days.append(local.date() + dt.timedelta(days=1))
    series = entsoe_series_name(zone)
    return [
        Due(
            "prices_fetch",
            f"prices:{zone}:{day.isoformat()}:{local:%H}",
            {"zone": zone, "day": day.isoformat(), "series": series},
        )
        for day in days
        if not day_stored(session, series, zone, day)
    ]


def tick(
    sessions: sessionmaker[Session],
    settings: Settings,
    now: dt.datetime | None = None,
    queue: Any = None,
) -> list[int]:
    """Submit what is due at ``now`` (default: the clock) and send it; returns the ids of
    the jobs this tick created."""
    now = now or utc_now()
    with sessions() as s, s.begin():
        created = []
        for due in due_jobs(s, settings, now):
            sub = jobstore.submit(
                s,
                due.kind,
                due.key,
                due.args,
                REQUESTER,
                site_id=due.site_id,
                community=due.community,
                now=now,
            )
            if sub.created:
                created.append(sub.job)
        s.flush()
        ids = [j.id for j in created]
    for job_id in ids:
        log.info("scheduled job %s", job_id)
    if queue is not None:
        queue.publish(ids)
        queue.resend_stale()
    return ids


def run_scheduler(
    sessions: sessionmaker[Session],
    settings: Settings,
    stop: threading.Event,
    queue: Any = None,
    every_s: float = 30.0,
    clock: Callable[[], dt.datetime] = utc_now,
) -> None:
    """Tick every ``every_s`` seconds until ``stop`` is set; a failed tick (database or broker
    away) is logged and the next one tries again."""
    while True:
        try:
            tick(sessions, settings, clock(), queue)
        except Exception:
            log.exception("scheduler tick failed; trying again in %.0f s", every_s)
        if stop.wait(every_s):
            return
