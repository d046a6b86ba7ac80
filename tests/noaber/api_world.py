"""A small world of sites, assets, members and users for the API tests, and the
authorization-case protocol that every API route must follow.

Ownership in the world (one own and one foreign resource for every role):

==============  ==========================  =========================================
user            role                        may see
==============  ==========================  =========================================
``oper``        operator                    everything
``mgr``         site_manager                site ``hall-a``
``firm``        firm (member ``m-firm``)    site ``factory-own``
``evowner``     member (``m-ev``)           asset ``hall-a/ev-own`` (and site hall-a)
==============  ==========================  =========================================

Foreign to all but the operator: site ``hall-b`` (owned by ``m-hall-b``, with the EV of
``m-ev-other``) and ``factory-other`` (owned by ``m-firm-other``). ``m-ev`` has given no
consent, so ``mgr`` does not see the car ``hall-a/ev-own`` itself (only the hall's EV total).
``m-leaver`` owns nothing; the walk erases it.

Domain packages that add API routes describe them in ``tests/<pkg>/api_authz.py``::

    from tests.noaber.api_world import Case, World

    def seed(session, world: World) -> None:      # optional: add your rows
        world.extra["campaign-own"] = ...           # e.g. for world.members["m-firm"]
        world.extra["campaign-other"] = ...         # for world.members["m-firm-other"]

    CASES = {
        ("GET", "/campaigns/{campaign_id}"): Case(
            roles={"operator", "firm"},
            own={r: lambda w: {"campaign_id": w.extra["campaign-own"]} for r in ("operator", "firm")},
            foreign=[lambda w: {"campaign_id": w.extra["campaign-other"]}],
        ),
    }

``tests/noaber/test_api_authz.py`` collects these and walks every route of the app.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from energy.models import Asset, AssetKind, Channel, Member, MemberKind, Quantity, Role, Site, User
from energy.readings import upsert_readings
from energy.security import hash_password

ROLES = ("operator", "site_manager", "firm", "member")
USERS = {"operator": "oper", "site_manager": "mgr", "firm": "firm", "member": "evowner"}
PASSWORD = "correct-horse-battery"
#: First ISP of the world's readings (one local day, 96 ISPs).
DAY_START = dt.datetime(2026, 6, 1, 22, 0, tzinfo=dt.UTC)
DAY_ISPS = 96


@functools.cache
def password_hash() -> str:
    """One Argon2id hash of :data:`PASSWORD`, shared by the world's users (hashing is slow
    on purpose; :func:`energy.users.create_user` is tested on its own)."""
    return hash_password(PASSWORD)


Params = dict[str, Any] | Callable[["World"], dict[str, Any]]


@dataclass
class World:
    """Ids of what :func:`build_world` created; ``extra`` is for domain packages."""

    members: dict[str, int] = field(default_factory=dict)
    sites: dict[str, int] = field(default_factory=dict)
    assets: dict[str, int] = field(default_factory=dict)  # "site/asset" -> id
    channels: dict[str, int] = field(default_factory=dict)  # "site/asset/quantity" -> id
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Case:
    """How to call one route as each role, and what to expect.

    Parameters
    ----------
    roles : set of str
        Roles that may use the route; every other role gets 403.
    own : dict
        Role -> path params (or a function of the world giving them) of a resource that role
        may see: expect ``ok``. Every role in ``roles`` needs an entry.
    foreign : list
        Path params of resources no role but the operator may see: every non-operator role in
        ``roles`` gets 404, the operator ``ok``.
    also_foreign : dict
        Role -> extra foreign params for that role only (404 for it).
    body : callable, optional
        ``(world, role) -> dict`` JSON body, or form data with ``form=True``.
    public : bool
        No authentication: every caller, including none, gets ``ok``.
    public_params : dict
        Path params of a public route.
    ok : int
        The expected success status.
    """

    roles: set[str] = field(default_factory=lambda: set(ROLES))
    own: dict[str, Params] = field(default_factory=dict)
    foreign: list[Params] = field(default_factory=list)
    also_foreign: dict[str, list[Params]] = field(default_factory=dict)
    body: Callable[[World, str | None], dict[str, Any]] | None = None
    form: bool = False
    public: bool = False
    public_params: dict[str, Any] = field(default_factory=dict)
    ok: int = 200


def params_of(p: Params, world: World) -> dict[str, Any]:
    return p(world) if callable(p) else dict(p)


def _add_site(session: Session, world: World, name: str, owner: str, kind: str, ean: str) -> Site:
    site = Site(
        name=name,
        display_name=name.replace("-", " ").title(),
        ean=ean,
        kind=kind,
        latitude=52.9,
        longitude=6.8,
        grid_import_limit_kw=40.0,
        grid_export_limit_kw=25.0,
        owner_member_id=world.members[owner],
    )
    session.add(site)
    session.flush()
    world.sites[name] = site.id
    return site


def _add_asset(
    session: Session,
    world: World,
    site: Site,
    name: str,
    kind: AssetKind,
    owner: str | None,
    profile_w: np.ndarray,
) -> None:
    asset = Asset(
        site_id=site.id,
        name=name,
        kind=kind,
        owner_member_id=world.members[owner] if owner else None,
        params={},
    )
    session.add(asset)
    session.flush()
    world.assets[f"{site.name}/{name}"] = asset.id
    ch = Channel(
        key=f"{site.name}/{name}/power",
        asset_id=asset.id,
        quantity=Quantity.POWER,
        unit="W",
        sign=1,
    )
    session.add(ch)
    session.flush()
    world.channels[ch.key] = ch.id
    idx = pd.date_range(DAY_START, periods=DAY_ISPS, freq="15min", tz="UTC").as_unit("ns")
    frame = pd.DataFrame(
        {
            "energy_wh": profile_w * 0.25,
            "power_mean_w": profile_w,
            "power_min_w": profile_w - 10,
            "power_max_w": profile_w + 10,
            "sample_count": 900,
            "coverage": 1.0,
        },
        index=idx,
    )
    upsert_readings(session, ch.id, frame)


def build_world(session: Session) -> World:
    """Create the world described in the module docstring (the caller commits)."""
    world = World()
    for ref, kind in (
        ("m-hall-a", MemberKind.ORGANISATION),
        ("m-hall-b", MemberKind.ORGANISATION),
        ("m-firm", MemberKind.ORGANISATION),
        ("m-firm-other", MemberKind.ORGANISATION),
        ("m-ev", MemberKind.PERSON),
        ("m-ev-other", MemberKind.PERSON),
        ("m-leaver", MemberKind.PERSON),  # erased by the walk (POST /members/{ref}/erase)
    ):
        m = Member(ref=ref, kind=kind)
        session.add(m)
        session.flush()
        world.members[ref] = m.id
    hours = (np.arange(DAY_ISPS) / 4.0 + 2.0) % 24  # local time of each ISP (CEST)
    pv = -np.clip(np.sin((hours - 6) / 14 * np.pi), 0, None) * 20_000.0
    load = 3_000.0 + 4_000.0 * ((hours >= 18) & (hours < 23))
    ev = np.where(hours >= 19, -5_000.0, np.where((hours > 10) & (hours < 15), 7_000.0, 0.0))
    hall_a = _add_site(session, world, "hall-a", "m-hall-a", "dorpshuis", "871685900000000103")
    _add_asset(session, world, hall_a, "pv", AssetKind.PV, "m-hall-a", pv)
    _add_asset(session, world, hall_a, "building", AssetKind.BUILDING_LOAD, "m-hall-a", load)
    _add_asset(session, world, hall_a, "ev-own", AssetKind.EV, "m-ev", ev)
    _add_asset(session, world, hall_a, "grid", AssetKind.METER, "m-hall-a", pv + load + ev)
    hall_b = _add_site(session, world, "hall-b", "m-hall-b", "dorpshuis", "871685900000000202")
    _add_asset(session, world, hall_b, "pv", AssetKind.PV, "m-hall-b", pv)
    _add_asset(session, world, hall_b, "ev-other", AssetKind.EV, "m-ev-other", ev)
    fac = _add_site(session, world, "factory-own", "m-firm", "factory", "871685900000000301")
    _add_asset(session, world, fac, "line-1", AssetKind.PROCESS_LOAD, "m-firm", load * 10)
    fac_o = _add_site(
        session, world, "factory-other", "m-firm-other", "factory", "871685900000000400"
    )
    _add_asset(session, world, fac_o, "line-1", AssetKind.PROCESS_LOAD, "m-firm-other", load)
    session.flush()
    for username, role, member, sites in (
        ("oper", Role.OPERATOR, None, []),
        ("mgr", Role.SITE_MANAGER, None, [hall_a]),
        ("firm", Role.FIRM, "m-firm", []),
        ("evowner", Role.MEMBER, "m-ev", []),
    ):
        session.add(
            User(
                username=username,
                password_hash=password_hash(),
                role=role,
                member_id=world.members[member] if member else None,
                sites=sites,
            )
        )
    session.flush()
    return world
