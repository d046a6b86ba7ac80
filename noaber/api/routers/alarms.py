"""Device alarms of a site (control lost or restored), for its operators and managers.

Access: an operator all sites, a site manager the sites in ``user.sites``, a firm the sites its
member owns (:func:`noaber.api.access.site_for`); another site answers 404.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from energy.alarms import site_alarms
from energy.models import Role, User
from noaber.api.access import site_for
from noaber.api.deps import SessionDep, require_roles

router = APIRouter(prefix="/alarms", tags=["alarms"])

SiteReader = Annotated[User, Depends(require_roles(Role.OPERATOR, Role.SITE_MANAGER, Role.FIRM))]


class AlarmOut(BaseModel):
    """One alarm (``at`` in UTC)."""

    at: dt.datetime
    asset: str
    device: str
    kind: str
    message: str


@router.get("/sites/{site_name}", response_model=list[AlarmOut])
def list_site_alarms(
    site_name: str,
    user: SiteReader,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlarmOut]:
    """The site's device alarms, newest first."""
    site = site_for(session, user, site_name)
    return [
        AlarmOut(at=a.at, asset=a.asset, device=a.device, kind=a.kind, message=a.message)
        for a in site_alarms(session, site.id, limit)
    ]
