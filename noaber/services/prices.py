"""Price series into the store, audited: CSV imports, ENTSO-E day-ahead fetches.

Both ``noaber prices import|fetch`` and the scheduler's ``prices_fetch`` job (the day-ahead
prices of tomorrow, fetched after their publication; :mod:`noaber.services.jobs.schedule`)
store through :func:`store_audited`: new ISPs are stored, unchanged ones are left alone, a
changed price is kept as stored unless ``replace`` (then replaced and audited
``tariff.correct``), and every import or fetch is audited with what it brought.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from energy.audit import Actor, record
from energy.prices import (
    DayAheadPrices,
    PriceDiff,
    PricePoint,
    day_interval,
    entsoe_area,
    store_new_prices,
)
from energy.timegrid import ISP_NS

#: How many replaced prices the audit entry of a correction lists one by one.
AUDIT_CHANGES_SHOWN = 20


def store_audited(
    session: Session,
    actor: Actor,
    series: str,
    prices: pd.Series,
    replace: bool,
    action: str,
    detail: dict[str, Any],
) -> PriceDiff:
    """Store the new ISPs of ``prices``; changed ones only with ``replace`` (audited)."""
    diff = store_new_prices(session, series, prices, replace_changed=replace)
    record(
        session,
        actor,
        action,
        series,
        {
            **detail,
            "isps": len(prices),
            "new": len(diff.new),
            "unchanged": diff.unchanged,
            "changed": len(diff.changed),
            "from": prices.index[0].isoformat(),
            "to": prices.index[-1].isoformat(),
        },
    )
    if replace and diff.changed:
        record(
            session,
            actor,
            "tariff.correct",
            series,
            {
                "replaced": len(diff.changed),
                "changes": [
                    {
                        "isp_start": c.isp_start.isoformat(),
                        "old": str(c.stored_eur_per_kwh),
                        "new": str(c.offered_eur_per_kwh),
                    }
                    for c in diff.changed[:AUDIT_CHANGES_SHOWN]
                ],
                **detail,
            },
        )
    return diff


def store_fetched(
    session: Session, actor: Actor, got: DayAheadPrices, series: str, replace: bool = False
) -> PriceDiff:
    """Store a day fetched from ENTSO-E (:func:`energy.prices.fetch_day_ahead`) in
    ``series``, audited ``tariff.fetch`` with the answer's document, revision and resolutions."""
    detail = {
        "zone": got.zone,
        "area": got.area_code,
        "day": got.day.isoformat(),
        "resolutions": list(got.resolutions),
        "document": got.document,
        "revision": got.revision,
        "created": got.created,
    }
    return store_audited(session, actor, series, got.prices, replace, "tariff.fetch", detail)


def day_stored(session: Session, series: str, zone: str, day: dt.date) -> bool:
    """Whether ``series`` holds a price for every ISP of the zone's local day ``day``
    (92, 96 or 100 of them)."""
    _, tz = entsoe_area(zone)
    start, end = day_interval(day, tz)
    expected = int((end - start).value // ISP_NS)
    n = session.scalar(
        select(func.count())
        .select_from(PricePoint)
        .where(
            PricePoint.series == series,
            PricePoint.isp_start >= start.to_pydatetime(),
            PricePoint.isp_start < end.to_pydatetime(),
        )
    )
    return int(n or 0) >= expected
