"""The Dutch monthly kW-max (capacity tariff) as the plan sees it.

Larger Dutch connections (Enexis, Rendo in Drenthe) pay per month for the highest 15-minute
average import of that month (docs/ARCHITECTURE.md). Within a month the peak so far is paid
anyway: only raising it costs. So a plan's peak term is charged on the part of the horizon's
peak above a floor, ``ModelParams.peak_floor_kw`` (``Scenario.peak_so_far_kw`` or the site's
``contracted_kw``, whichever is higher): :func:`month_peak_so_far_kw` reads the floor from the
store's interval readings of the site's grid meter. A horizon that crosses into the next month
is planned with this month's floor (one peak term per plan; the next month starts at 0 when
its first plan is made).
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from energy.models import Asset, AssetKind, Channel, Quantity, Site
from energy.readings import read_readings


def month_start(now: pd.Timestamp, tz: str) -> pd.Timestamp:
    """The start (UTC) of the local month ``now`` lies in."""
    local = pd.Timestamp(now).tz_convert(tz)
    first = local.tz_localize(None).normalize().replace(day=1)
    return first.tz_localize(tz).tz_convert("UTC")


def month_peak_so_far_kw(session: Session, site: Site, now: dt.datetime | pd.Timestamp) -> float:
    """The highest 15-minute mean import [kW] at the site's grid meter(s) this local month
    before ``now`` (0 without readings): the ``power`` channels of the site's ``meter``
    assets, summed per ISP (positive = import)."""
    ids = list(
        session.scalars(
            select(Channel.id)
            .join(Asset, Channel.asset_id == Asset.id)
            .where(
                Asset.site_id == site.id,
                Asset.kind == AssetKind.METER,
                Channel.quantity == Quantity.POWER,
            )
        )
    )
    if not ids:
        return 0.0
    end = pd.Timestamp(now).tz_convert("UTC")
    start = month_start(end, site.timezone)
    frame = read_readings(session, ids, start.to_pydatetime(), end.to_pydatetime())
    if frame.empty:
        return 0.0
    per_isp = frame.groupby("isp_start")["power_mean_w"].sum(min_count=1).dropna()
    return max(0.0, float(per_isp.max()) / 1000.0) if len(per_isp) else 0.0
