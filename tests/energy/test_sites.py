"""The one writer of the core tables (energy/sites.py): create, update, unchanged and each
conflict, on SQLite and PostgreSQL; and a scan proving that no other module writes them."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from energy.errors import ValidationError
from energy.models import (
    AssetKind,
    Community,
    Member,
    MemberKind,
    MemberPersonal,
    Quantity,
    Site,
    community_members,
)
from energy.sites import (
    AssetSpec,
    Change,
    ChannelSpec,
    DeviceSpec,
    MemberSpec,
    SiteSpec,
    ensure_asset,
    ensure_channel,
    ensure_community,
    ensure_device,
    ensure_member,
    ensure_site,
)

ROOT = Path(__file__).parents[2]
PACKAGES = ("noaber", "energy", "modbus_gateway", "meetkoffer", "optimizer", "settlement")
WRITER = ROOT / "energy" / "sites.py"
CORE = {"Site", "Device", "Asset", "Channel", "Member", "MemberPersonal", "Community"}

HALL = SiteSpec(
    name="hall",
    ean="871685900000000011",
    latitude=52.88,
    longitude=6.86,
    grid_import_limit_kw=40,
    grid_export_limit_kw=25,
)


def _site(session, spec: SiteSpec = HALL) -> Site:
    return ensure_site(session, spec).row


# ------------------------------------------------------------------------------ members


def test_member_create_update_unchanged(sessions) -> None:
    anna = MemberSpec("m-5e0a11", MemberKind.PERSON, "Anna Bakker", "anna@example.org")
    with sessions.begin() as s:
        got = ensure_member(s, anna)
        assert got.change == Change.CREATED and got.row.id is not None
        assert got.row.personal.name == "Anna Bakker"
        assert ensure_member(s, anna).change == Change.UNCHANGED
        moved = MemberSpec("m-5e0a11", MemberKind.PERSON, "Anna Bakker", address="Brink 1")
        assert ensure_member(s, moved).change == Change.UPDATED
        bare = ensure_member(s, MemberSpec("m-bare"))  # no name: no personal row
        assert bare.change == Change.CREATED and bare.row.kind == MemberKind.PERSON
        assert bare.row.personal is None
    with sessions() as s:
        stored = s.scalar(select(Member).where(Member.ref == "m-5e0a11"))
        assert (stored.personal.email, stored.personal.address) == (None, "Brink 1")


def test_member_kind_conflict_names_source_and_path(sessions) -> None:
    with sessions.begin() as s:
        ensure_member(s, MemberSpec("m-coop", MemberKind.ORGANISATION, "Coop"))
    for update in (True, False):
        with sessions.begin() as s, pytest.raises(ValidationError) as err:
            ensure_member(
                s,
                MemberSpec("m-coop", MemberKind.PERSON),
                update=update,
                source="site.yaml",
                path="members[3]",
            )
        assert str(err.value) == (
            "site.yaml:members[3].kind: member 'm-coop' is stored as organisation, "
            "the file says person"
        )


def test_member_reference_is_checked_not_changed(sessions) -> None:
    with sessions.begin() as s:
        ensure_member(s, MemberSpec("m-5e0a11", MemberKind.PERSON, "Anna Bakker", "a@example.org"))
    with sessions.begin() as s:
        same = ensure_member(s, MemberSpec("m-5e0a11", name="Anna Bakker"), update=False)
        assert same.change == Change.UNCHANGED
        assert ensure_member(s, MemberSpec("m-5e0a11"), update=False).change == Change.UNCHANGED
        with pytest.raises(ValidationError) as err:
            ensure_member(
                s,
                MemberSpec("m-5e0a11", name="anna"),
                update=False,
                source="c.yaml",
                path="members[0]",
            )
    assert "c.yaml:members[0].name: member 'm-5e0a11' is stored under another name" in str(
        err.value
    )
    assert "Anna Bakker" not in str(err.value)  # the error does not echo personal data
    with sessions.begin() as s:  # erased personal data stays erased for a reference
        m = s.scalar(select(Member).where(Member.ref == "m-5e0a11"))
        s.delete(m.personal)
    with sessions.begin() as s:
        assert (
            ensure_member(s, MemberSpec("m-5e0a11", name="anna"), update=False).row.personal is None
        )
        assert s.scalar(select(func.count()).select_from(MemberPersonal)) == 0


# ---------------------------------------------------------------------------- community


def test_community_create_update_links(sessions) -> None:
    with sessions.begin() as s:
        a = ensure_member(s, MemberSpec("m-a")).row
        b = ensure_member(s, MemberSpec("m-b")).row
        got = ensure_community(s, "exloo", [a, b, a])
        assert (got.change, got.links_created) == (Change.CREATED, 2)
        assert got.row.display_name == "exloo"
        again = ensure_community(s, "exloo", [b])
        assert (again.change, again.links_created) == (Change.UNCHANGED, 0)
        renamed = ensure_community(s, "exloo", [a], "Energiegemeenschap Exloo")
        assert (renamed.change, renamed.links_created) == (Change.UPDATED, 0)
        kept = ensure_community(s, "exloo", [], "Other", update=False)
        assert kept.change == Change.UNCHANGED and kept.row.display_name != "Other"
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Community)) == 1
        assert s.scalar(select(func.count()).select_from(community_members)) == 2


# --------------------------------------------------------------------------------- site


def test_site_create_update_unchanged(sessions) -> None:
    with sessions.begin() as s:
        got = ensure_site(s, HALL)
        assert got.change == Change.CREATED and got.row.display_name == "hall"
        assert ensure_site(s, HALL).change == Change.UNCHANGED
        bigger = replace(HALL, grid_import_limit_kw=55)
        assert ensure_site(s, bigger, update=False).change == Change.UNCHANGED
        assert got.row.grid_import_limit_kw == 40
        assert ensure_site(s, bigger).change == Change.UPDATED
    with sessions() as s:
        assert s.scalar(select(Site.grid_import_limit_kw)) == 55


def test_site_ean_clash(sessions) -> None:
    with sessions.begin() as s:
        _site(s)
    other = replace(HALL, name="school")
    with sessions.begin() as s, pytest.raises(ValidationError) as err:
        ensure_site(s, other, source="school.yaml", path="site")
    assert str(err.value) == (
        "school.yaml:site.ean: EAN 871685900000000011 already belongs to site 'hall'"
    )


# ---------------------------------------------------------------- devices and assets


def test_device_and_asset_create_update_unchanged(sessions) -> None:
    meter = DeviceSpec("grid-meter", "eastron_sdm630", host="127.0.0.1", port=15020)
    pv = AssetSpec("pv", AssetKind.PV, params={"peak_kw": 30})
    with sessions.begin() as s:
        site = _site(s)
        assert ensure_device(s, site, meter).change == Change.CREATED
        assert ensure_device(s, site, meter).change == Change.UNCHANGED
        moved = DeviceSpec("grid-meter", "eastron_sdm630", host="127.0.0.1", port=15021)
        assert ensure_device(s, site, moved, update=False).change == Change.UNCHANGED
        device = ensure_device(s, site, moved)
        assert device.change == Change.UPDATED and device.row.port == 15021
        assert ensure_asset(s, site, pv).change == Change.CREATED
        assert ensure_asset(s, site, pv).change == Change.UNCHANGED
        bigger = AssetSpec("pv", AssetKind.PV, params={"peak_kw": 40})
        asset = ensure_asset(s, site, bigger)
        assert asset.change == Change.UPDATED and asset.row.params == {"peak_kw": 40}


# ------------------------------------------------------------------------------ channels


def test_channel_create_update_unchanged_and_key_clash(sessions) -> None:
    power = ChannelSpec("hall/pv/power", Quantity.POWER, "W")
    with sessions.begin() as s:
        site = _site(s)
        pv = ensure_asset(s, site, AssetSpec("pv", AssetKind.PV)).row
        load = ensure_asset(s, site, AssetSpec("load", AssetKind.BUILDING_LOAD)).row
        got = ensure_channel(s, pv, power)
        assert got.change == Change.CREATED and got.row.asset_id == pv.id
        assert ensure_channel(s, pv, power).change == Change.UNCHANGED
        flipped = ChannelSpec("hall/pv/power", Quantity.POWER, "W", sign=-1)
        assert ensure_channel(s, pv, flipped, update=False).change == Change.UNCHANGED
        assert ensure_channel(s, pv, flipped).change == Change.UPDATED
        assert got.row.sign == -1
        with pytest.raises(ValidationError) as err:
            ensure_channel(s, load, power, source="site.yaml", path="assets[1].channels[0]")
    assert str(err.value) == (
        "site.yaml:assets[1].channels[0].key: channel key 'hall/pv/power' already belongs to "
        "another asset"
    )


# ------------------------------------------------------------------- the one-writer guard


def core_writes(tree: ast.AST) -> list[str]:
    """Where a module constructs a core model of :mod:`energy.models` or inserts into one of
    their tables (``community_members.insert()``, ``insert(Site)``), as ``line: what``."""
    names: dict[str, str] = {}  # local name -> energy.models name
    modules: set[str] = set()  # local names of the energy.models module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "energy.models":
            names.update({a.asname or a.name: a.name for a in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module == "energy":
            modules.update(a.asname or a.name for a in node.names if a.name == "models")
        elif isinstance(node, ast.Import):
            modules.update(a.asname for a in node.names if a.name == "energy.models" and a.asname)

    def model(expr: ast.expr) -> str | None:
        if isinstance(expr, ast.Name):
            return names.get(expr.id)
        if isinstance(expr, ast.Attribute):
            value = expr.value
            if isinstance(value, ast.Name) and value.id in modules:
                return expr.attr
            if ast.unparse(value) == "energy.models":
                return expr.attr
        return None

    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        target = model(node.func)
        if target in CORE:
            found.append(f"{node.lineno}: {target}(...)")
        func_ = node.func
        if (
            isinstance(func_, ast.Attribute)
            and func_.attr == "insert"
            and model(func_.value) == "community_members"
        ):
            found.append(f"{node.lineno}: community_members.insert()")
        if isinstance(func_, ast.Name) and func_.id == "insert" and node.args:
            table = model(node.args[0])
            if table in CORE | {"community_members"}:
                found.append(f"{node.lineno}: insert({table})")
    return found


def test_the_guard_sees_each_kind_of_write() -> None:
    snippet = (
        "from energy.models import Site as S, community_members\n"
        "from energy import models\n"
        "import energy.models as em\n"
        "from sqlalchemy import insert\n"
        "S(name='x')\n"
        "models.Channel(key='k')\n"
        "em.MemberPersonal(name='n')\n"
        "community_members.insert()\n"
        "insert(models.Asset)\n"
        "Channel(key='not the model')\n"  # not imported from energy.models
    )
    assert core_writes(ast.parse(snippet)) == [
        "5: Site(...)",
        "6: Channel(...)",
        "7: MemberPersonal(...)",
        "8: community_members.insert()",
        "9: insert(Asset)",
    ]
    assert core_writes(ast.parse(WRITER.read_text(encoding="utf-8")))  # the writer itself


def test_only_energy_sites_writes_the_core_tables() -> None:
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == WRITER or "migrations" in path.relative_to(ROOT).parts:
                continue
            for where in core_writes(ast.parse(path.read_text(encoding="utf-8"))):
                offenders.append(f"{path.relative_to(ROOT)}:{where}")
    assert offenders == [], "write these through energy.sites: " + "; ".join(offenders)
