"""A site's 15-minute profile: mean power per ISP for PV, load, battery, EVs and the grid."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from energy.clock import utc_now
from energy.errors import ValidationError
from energy.models import Asset, AssetKind, Channel, IntervalReading, Quantity, Site
from energy.readings import read_readings
from energy.timegrid import ISP_S, ceil_isp, floor_isp, isp_range

#: Profile group of each asset kind. Power channels of EVs and EV chargers are summed into
#: ``ev``; a site should measure an EV's power at one of the two, not both.
PROFILE_GROUPS: dict[AssetKind, str] = {
    AssetKind.PV: "pv",
    AssetKind.BUILDING_LOAD: "load",
    AssetKind.PROCESS_LOAD: "load",
    AssetKind.BATTERY: "battery",
    AssetKind.EV: "ev",
    AssetKind.EV_CHARGER: "ev",
    AssetKind.METER: "grid",
}
GROUP_ORDER = ("pv", "load", "battery", "ev", "grid")

#: Longest period one profile or readings request may cover [days].
MAX_SPAN_DAYS = 366


def power_channel_state(session: Session, site: Site) -> tuple[tuple[int, str, int], ...]:
    """``(channel id, profile group, readings version)`` of each power channel of ``site``,
    by channel id, in one query.

    The readings version (``channels.readings_version``) grows with every write of the
    channel's readings, so the tuple changes whenever the site's profile may have.
    """
    rows = session.execute(
        select(Channel.id, Asset.kind, Channel.readings_version)
        .join(Asset, Channel.asset_id == Asset.id)
        .where(Asset.site_id == site.id, Channel.quantity == Quantity.POWER)
        .order_by(Channel.id)
    )
    return tuple(
        (cid, PROFILE_GROUPS[kind], int(version))
        for cid, kind, version in rows
        if kind in PROFILE_GROUPS
    )


def site_power_channels(session: Session, site: Site) -> dict[int, str]:
    """Power channels of ``site`` mapped to their profile group."""
    return {cid: group for cid, group, _version in power_channel_state(session, site)}


def latest_reading(session: Session, channel_ids: list[int]) -> dt.datetime | None:
    """The start of the latest reading of the channels (None without readings)."""
    if not channel_ids:
        return None
    return session.scalar(
        select(func.max(IntervalReading.isp_start)).where(
            IntervalReading.channel_id.in_(channel_ids)
        )
    )


def week_before(last: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    """``[end - 7 days, end)`` where ``end`` follows ``last`` (the latest reading's start);
    without one, the seven days up to the current ISP."""
    if last is None:
        end = floor_isp(pd.Timestamp(utc_now())).to_pydatetime()
    else:
        end = last + dt.timedelta(seconds=ISP_S)
    return end - dt.timedelta(days=7), end


def latest_week(session: Session, channel_ids: list[int]) -> tuple[dt.datetime, dt.datetime]:
    """``[end - 7 days, end)`` where ``end`` follows the latest reading of the channels.

    Without readings, the seven days up to the current ISP.
    """
    return week_before(latest_reading(session, channel_ids))


def profile_frame(readings: pd.DataFrame, groups: dict[int, str], isps: pd.DatetimeIndex):
    """Wide frame of mean power per ISP and group [W] from long interval readings.

    Mean power is the ISP's energy over its length (``energy_wh * 3600 / 900``), so groups of
    several channels add exactly. An ISP without any reading of a group is NaN, not zero.

    Parameters
    ----------
    readings : DataFrame
        Long readings (``channel_id, isp_start, energy_wh``) as from
        :func:`energy.readings.read_readings`.
    groups : dict
        Channel id -> group name.
    isps : DatetimeIndex
        The ISP starts (UTC) of the result's index.
    """
    cols = [g for g in GROUP_ORDER if g in set(groups.values())]
    frame = pd.DataFrame(np.nan, index=isps, columns=cols, dtype=float)
    if readings.empty or not cols:
        return frame
    r = readings.assign(group=readings["channel_id"].map(groups))
    r["isp_start"] = pd.to_datetime(r["isp_start"], utc=True).dt.as_unit("ns")
    wide = r.pivot_table(
        index="isp_start", columns="group", values="energy_wh", aggfunc="sum", dropna=False
    )
    wide = wide.reindex(index=isps, columns=cols)
    return wide * (3600.0 / ISP_S)


def site_profile(
    session: Session, site: Site, start: dt.datetime, end: dt.datetime
) -> pd.DataFrame:
    """Mean power per ISP in ``[start, end)`` for each group of :data:`PROFILE_GROUPS` [W]."""
    groups = site_power_channels(session, site)
    readings = read_readings(session, list(groups), start, end)
    return profile_frame(readings, groups, isp_range(start, end))


def resolve_period(
    start: dt.datetime | None, end: dt.datetime | None, default: tuple[dt.datetime, dt.datetime]
) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` on the ISP grid (start floored, end ceiled), defaults filled in.

    Raises
    ------
    energy.errors.ValidationError
        With ``location`` ``start`` or ``end`` for a naive time, ``end <= start`` or a span
        over :data:`MAX_SPAN_DAYS`.
    """
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise ValidationError(
                f"needs a timezone offset (e.g. Z or +01:00), got {value.isoformat()}",
                source="query",
                location=name,
            )
    s = (
        start
        if start is not None
        else (default[0] if end is None else end - (default[1] - default[0]))
    )
    e = end if end is not None else (default[1] if start is None else s + (default[1] - default[0]))
    s_ts = floor_isp(pd.Timestamp(s).tz_convert("UTC"))
    e_ts = ceil_isp(pd.Timestamp(e).tz_convert("UTC"))
    if e_ts <= s_ts:
        raise ValidationError(
            f"must be after start {s_ts.isoformat()}, got {e_ts.isoformat()}",
            source="query",
            location="end",
        )
    if e_ts - s_ts > pd.Timedelta(days=MAX_SPAN_DAYS):
        raise ValidationError(
            f"period may span at most {MAX_SPAN_DAYS} days, got {(e_ts - s_ts).days}",
            source="query",
            location="end",
        )
    return s_ts.to_pydatetime(), e_ts.to_pydatetime()
