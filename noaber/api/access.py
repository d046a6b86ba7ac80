"""Load a resource the current user may see, or answer 404 (existence is not revealed)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from energy.models import Asset, Channel, Site, User
from energy.users import user_may_see_asset, user_may_see_site
from noaber.api.deps import not_found


def site_for(session: Session, user: User, site_name: str) -> Site:
    """The site named ``site_name`` if ``user`` may see it; 404 otherwise.

    The site's assets load when first used (a member's check, a route's list): most page
    requests of a manager or an operator never need them."""
    site = session.scalar(select(Site).where(Site.name == site_name))
    if site is None or not user_may_see_site(user, site):
        raise not_found(f"site {site_name!r}")
    return site


def asset_for(session: Session, user: User, asset_id: int) -> Asset:
    """The asset ``asset_id`` if ``user`` may see it; 404 otherwise."""
    asset = session.get(Asset, asset_id)
    if asset is None or not user_may_see_asset(session, user, asset):
        raise not_found(f"asset {asset_id}")
    return asset


def channel_for(session: Session, user: User, channel_id: int) -> Channel:
    """The channel ``channel_id`` if ``user`` may see its asset; 404 otherwise."""
    channel = session.get(Channel, channel_id)
    if channel is None or not user_may_see_asset(session, user, channel.asset):
        raise not_found(f"channel {channel_id}")
    return channel
