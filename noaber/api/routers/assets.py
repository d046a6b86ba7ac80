"""Assets: one asset with its channels."""

from __future__ import annotations

from fastapi import APIRouter

from noaber.api.access import asset_for
from noaber.api.deps import CurrentUser, IdPath, SessionDep
from noaber.api.routers.sites import asset_out
from noaber.api.schemas import AssetOut, ChannelOut

router = APIRouter(prefix="/assets", tags=["assets"])


@router.get("/{asset_id}", response_model=AssetOut)
def get_asset(asset_id: IdPath, user: CurrentUser, session: SessionDep) -> AssetOut:
    """One asset; a member only their own, other roles by site."""
    return asset_out(asset_for(session, user, asset_id))


@router.get("/{asset_id}/channels", response_model=list[ChannelOut])
def list_asset_channels(
    asset_id: IdPath, user: CurrentUser, session: SessionDep
) -> list[ChannelOut]:
    """The channels of one asset."""
    asset = asset_for(session, user, asset_id)
    return [ChannelOut.model_validate(c) for c in sorted(asset.channels, key=lambda c: c.key)]
