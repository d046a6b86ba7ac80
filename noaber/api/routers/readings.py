"""15-minute interval readings: of one channel, and a site's profile per asset group."""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from energy.models import Role, User
from energy.readings import read_readings
from energy.timegrid import ISP_S
from noaber.api.access import channel_for, site_for
from noaber.api.deps import CurrentUser, IdPath, SessionDep, require_roles
from noaber.api.profile import latest_week, resolve_period, site_power_channels, site_profile
from noaber.api.schemas import ChannelOut, ChannelReadingsOut, ReadingOut, SiteProfileOut

router = APIRouter(tags=["readings"])

StartQ = Annotated[
    dt.datetime | None,
    Query(description="Start (inclusive, with offset); default: a week before end"),
]
EndQ = Annotated[
    dt.datetime | None,
    Query(description="End (exclusive, with offset); default: after the latest reading"),
]
SiteReader = Annotated[User, Depends(require_roles(Role.OPERATOR, Role.SITE_MANAGER, Role.FIRM))]


def _none_if_nan(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


@router.get("/channels/{channel_id}/readings", response_model=ChannelReadingsOut)
def channel_readings(
    channel_id: IdPath,
    user: CurrentUser,
    session: SessionDep,
    start: StartQ = None,
    end: EndQ = None,
) -> ChannelReadingsOut:
    """Interval readings of one channel in ``[start, end)`` (UTC ISP starts)."""
    channel = channel_for(session, user, channel_id)
    s, e = resolve_period(start, end, latest_week(session, [channel.id]))
    df = read_readings(session, channel.id, s, e)
    rows = [
        ReadingOut(
            isp_start=r["isp_start"].to_pydatetime(),
            energy_wh=float(r["energy_wh"]),
            power_mean_w=_none_if_nan(r["power_mean_w"]),
            power_min_w=_none_if_nan(r["power_min_w"]),
            power_max_w=_none_if_nan(r["power_max_w"]),
            sample_count=int(r["sample_count"]),
            coverage=float(r["coverage"]),
        )
        for r in df.to_dict("records")
    ]
    return ChannelReadingsOut(
        channel=ChannelOut.model_validate(channel), start=s, end=e, readings=rows
    )


@router.get("/sites/{site_name}/readings", response_model=SiteProfileOut)
def site_readings(
    site_name: str,
    user: SiteReader,
    session: SessionDep,
    start: StartQ = None,
    end: EndQ = None,
) -> SiteProfileOut:
    """Mean power per ISP [W] of the site's PV, load, battery, EVs and grid meter.

    Positive = consumption/import, negative = production/export. ``energy_wh`` gives each
    group's net energy over the period [Wh].
    """
    site = site_for(session, user, site_name)
    s, e = resolve_period(
        start, end, latest_week(session, list(site_power_channels(session, site)))
    )
    frame = site_profile(session, site, s, e)
    return SiteProfileOut(
        site=site.name,
        start=s,
        end=e,
        isp_start=[t.to_pydatetime() for t in frame.index],
        power_w={c: [_none_if_nan(v) for v in frame[c].tolist()] for c in frame.columns},
        energy_wh={c: float(frame[c].sum(skipna=True)) * ISP_S / 3600.0 for c in frame.columns},
    )
