"""Response and request bodies of the core API (pydantic)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in_s: int


class SiteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    display_name: str
    ean: str
    kind: str
    latitude: float
    longitude: float
    timezone: str
    grid_import_limit_kw: float
    grid_export_limit_kw: float


class ChannelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    key: str
    asset_id: int
    quantity: str
    unit: str
    sign: int


class AssetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    site: str
    name: str
    kind: str
    owner_member_ref: str | None
    params: dict[str, object]
    channels: list[ChannelOut]


class ReadingOut(BaseModel):
    isp_start: dt.datetime
    energy_wh: float
    power_mean_w: float | None
    power_min_w: float | None
    power_max_w: float | None
    sample_count: int
    coverage: float


class ChannelReadingsOut(BaseModel):
    channel: ChannelOut
    start: dt.datetime
    end: dt.datetime
    readings: list[ReadingOut]


class SiteProfileOut(BaseModel):
    """Mean power per ISP and group [W]; ``null`` where no reading exists."""

    site: str
    start: dt.datetime
    end: dt.datetime
    isp_start: list[dt.datetime]
    power_w: dict[str, list[float | None]]
    energy_wh: dict[str, float]


class UserOut(BaseModel):
    username: str
    role: str
    member_ref: str | None
    site_names: list[str]
    disabled: bool


class UserIn(BaseModel):
    username: str = Field(min_length=3, max_length=100)
    password: str = Field(min_length=8, max_length=1024)
    role: str
    member_ref: str | None = None
    site_names: list[str] = Field(default_factory=list)
