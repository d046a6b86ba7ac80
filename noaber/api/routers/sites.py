"""Sites: list the visible ones, read one, list its assets."""

from __future__ import annotations

from fastapi import APIRouter

from energy.models import Role
from energy.users import user_may_see_asset, visible_sites
from noaber.api.access import site_for
from noaber.api.deps import CurrentUser, SessionDep
from noaber.api.schemas import AssetOut, SiteOut

router = APIRouter(prefix="/sites", tags=["sites"])


def asset_out(asset) -> AssetOut:
    """The API view of an asset (owner as pseudonymous member ref)."""
    from noaber.api.schemas import ChannelOut

    return AssetOut(
        id=asset.id,
        site=asset.site.name,
        name=asset.name,
        kind=asset.kind.value,
        owner_member_ref=asset.owner.ref if asset.owner else None,
        params=dict(asset.params or {}),
        channels=[ChannelOut.model_validate(c) for c in asset.channels],
    )


@router.get("", response_model=list[SiteOut])
def list_sites(user: CurrentUser, session: SessionDep) -> list[SiteOut]:
    """Sites the current user may see (operator: all)."""
    return [SiteOut.model_validate(s) for s in visible_sites(session, user)]


@router.get("/{site_name}", response_model=SiteOut)
def get_site(site_name: str, user: CurrentUser, session: SessionDep) -> SiteOut:
    """One site; 404 if it does not exist or is not the user's."""
    return SiteOut.model_validate(site_for(session, user, site_name))


@router.get("/{site_name}/assets", response_model=list[AssetOut])
def list_site_assets(site_name: str, user: CurrentUser, session: SessionDep) -> list[AssetOut]:
    """Assets of a site; a member sees only the assets they own, a site manager a person's
    car only with its owner's consent."""
    site = site_for(session, user, site_name)
    assets = sorted(site.assets, key=lambda a: a.name)
    if user.role is not Role.OPERATOR:
        assets = [a for a in assets if user_may_see_asset(session, user, a)]
    return [asset_out(a) for a in assets]
