"""Channels: one measured quantity of an asset."""

from __future__ import annotations

from fastapi import APIRouter

from noaber.api.access import channel_for
from noaber.api.deps import CurrentUser, IdPath, SessionDep
from noaber.api.schemas import ChannelOut

router = APIRouter(prefix="/channels", tags=["channels"])


@router.get("/{channel_id}", response_model=ChannelOut)
def get_channel(channel_id: IdPath, user: CurrentUser, session: SessionDep) -> ChannelOut:
    """One channel; visible when its asset is."""
    return ChannelOut.model_validate(channel_for(session, user, channel_id))
