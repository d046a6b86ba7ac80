"""Community files and meter data: validation by field and line, the store, wide form."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from energy.errors import ValidationError
from energy.models import (
    Asset,
    AssetKind,
    Channel,
    Member,
    MemberKind,
    MemberPersonal,
    Quantity,
    Site,
)
from energy.readings import upsert_readings
from energy.sites import MemberSpec, ensure_member
from settlement import ledger
from settlement.community import derive_ref, parse_community, read_meter_csv, read_meter_store
from settlement.models import Transfer
from settlement.pricing import load_tariff
from settlement.settle import period_isps, plan_energy, post_run
from settlement.statements import find_statement, render_html
from tests.settlement.conftest import COMMUNITY, make_plan, meter_data


def test_community_errors_name_the_field():
    bad = dict(COMMUNITY, key={"type": "fixed", "shares": {"dorpshuis": "0.5", "club": "0.4"}})
    with pytest.raises(ValidationError, match=r"key.shares: shares must sum to 1, got 0.9"):
        parse_community(bad, "c.yaml")
    bad = dict(COMMUNITY, key={"type": "priority", "order": ["dorpshuis", "nobody"]})
    with pytest.raises(ValidationError, match=r"key.order\[1\]: unknown member 'nobody'"):
        parse_community(bad, "c.yaml")
    members = [dict(m) for m in COMMUNITY["members"]]
    members[1]["meters"] = ["PV"]
    with pytest.raises(ValidationError, match="already belongs"):
        parse_community(dict(COMMUNITY, members=members), "c.yaml")


def test_derived_refs_are_pseudonymous_and_stable():
    c = parse_community(
        {
            "name": "x",
            "key": {"type": "proportional"},
            "members": [{"name": "Jan Jansen", "meters": ["A"]}],
        }
    )
    assert c.refs[0] == derive_ref("x", "Jan Jansen") and "Jansen" not in c.refs[0]


def test_wide_and_long_forms_agree():
    c = parse_community(COMMUNITY)
    long = read_meter_csv(
        io.StringIO(
            "timestamp,meter,direction,energy_wh\n"
            "2026-10-01T12:00:00+02:00,PV,injection,900\n"
            "2026-10-01T12:00:00+02:00,DH,offtake,400\n"
            "2026-10-01T12:15:00+02:00,DH,offtake,300\n"
        ),
        c,
    )
    wide = read_meter_csv(
        io.StringIO(
            "timestamp,PV:injection,DH:offtake\n"
            "2026-10-01T10:00:00Z,900,400\n"
            "2026-10-01T10:15:00Z,,300\n"
        ),
        c,
    )
    assert (long.isps == wide.isps).all()
    assert np.array_equal(long.offtake_wh, wide.offtake_wh) and np.array_equal(
        long.injection_wh, wide.injection_wh
    )


def test_meter_data_from_the_store(sessions):
    isps = period_isps("2026-10")
    with sessions() as s, s.begin():
        site = Site(
            name="dh",
            display_name="DH",
            ean="871685900000000999",
            latitude=52.9,
            longitude=6.8,
            grid_import_limit_kw=40,
            grid_export_limit_kw=25,
        )
        s.add(site)
        s.flush()
        ids = {}
        for name in ("PV", "DH", "EV", "CL"):
            asset = Asset(site_id=site.id, name=name.lower(), kind=AssetKind.METER, params={})
            s.add(asset)
            s.flush()
            ch = Channel(
                key=name, asset_id=asset.id, quantity=Quantity.ENERGY_IMPORT, unit="Wh", sign=1
            )
            s.add(ch)
            s.flush()
            ids[name] = ch.id
        idx = isps[:4]

        def frame(e):
            return pd.DataFrame({"energy_wh": e, "sample_count": 900, "coverage": 1.0}, index=idx)

        upsert_readings(s, ids["PV"], frame([-800.4, -600.6, 0.0, -10.0]))
        upsert_readings(s, ids["DH"], frame([300.0, 300.0, 300.0, 300.0]))
        upsert_readings(s, ids["EV"], frame([200.0, -150.0, 0.0, 0.0]))
    c = parse_community(COMMUNITY)
    with sessions() as s:
        data = read_meter_store(s, c, isps)
    assert data.injection_wh[:4, 0].tolist() == [800, 601, 0, 10]
    assert data.offtake_wh[:4, 1].tolist() == [300] * 4
    assert data.offtake_wh[:4, 2].tolist() == [200, 0, 0, 0] and data.injection_wh[
        :4, 2
    ].tolist() == [0, 150, 0, 0]
    assert not data.offtake_wh[4:].any() and not data.injection_wh[4:].any()


def test_erasing_a_members_personal_data_keeps_the_ledger(sqlite_sessions):
    post_run(sqlite_sessions, make_plan())
    with sqlite_sessions() as s, s.begin():
        m = s.scalars(select(Member).where(Member.ref == "m-ev01")).one()
        s.delete(s.get(MemberPersonal, m.id))
    with sqlite_sessions() as s:
        assert ledger.verify(s).ok
        html = render_html(s, find_statement(s, "m-ev01", "2026-10").id)
    assert "m-ev01" in html and "ev-jansen" not in html


def test_shipped_example_community_loads():
    from pathlib import Path

    from settlement.community import load_community

    c = load_community(Path(__file__).parents[2] / "settlement" / "data" / "example_community.yaml")
    assert c.key.type == "optimal" and len(c.members) == 5
    assert c.member_by_name("ev-a").has_storage


def _refs_only(extra: dict[int, dict] | None = None) -> dict:
    """The test community referring to its members by ref only (as defined in a site file)."""
    members = [
        {"ref": m["ref"], "meters": m["meters"], "assets": m.get("assets", [])}
        for m in COMMUNITY["members"]
    ]
    for k, fields in (extra or {}).items():
        members[k].update(fields)
    return dict(COMMUNITY, key={"type": "proportional"}, members=members)


def test_members_referred_to_by_ref():
    c = parse_community(_refs_only(), "c.yaml")
    assert c.refs == ("m-pv01", "m-dh01", "m-ev01", "m-cl01")
    assert [(m.label, m.name, m.kind) for m in c.members][:1] == [("m-pv01", None, None)]
    assert c.member_by_name("m-ev01").has_storage
    with pytest.raises(ValidationError, match=r"members\[0\]\.name: name must be a non-empty"):
        parse_community(dict(COMMUNITY, members=[{"meters": ["A"]}]), "c.yaml")


def test_referred_members_are_checked_against_the_store(sqlite_sessions):
    with sqlite_sessions.begin() as s:  # as the site file defines them
        for ref, kind in (("m-pv01", "organisation"), ("m-dh01", "organisation")):
            ensure_member(s, MemberSpec(ref, MemberKind(kind), f"Name of {ref}"))
    data = meter_data()
    for changes, where in (
        ({0: {"kind": "person"}}, r"c\.yaml:members\[0\]\.kind: member 'm-pv01' is stored as"),
        ({1: {"name": "dorpshuis"}}, r"c\.yaml:members\[1\]\.name: member 'm-dh01' is stored"),
    ):
        c = parse_community(_refs_only(changes), "c.yaml")
        with pytest.raises(ValidationError, match=where):
            post_run(sqlite_sessions, plan_energy(c, "2026-10", data, load_tariff()))
    with sqlite_sessions() as s:
        assert s.scalar(select(func.count()).select_from(Transfer)) == 0
    c = parse_community(_refs_only({2: {"name": "ev-jansen"}}), "c.yaml")
    assert post_run(sqlite_sessions, plan_energy(c, "2026-10", data, load_tariff())).created
    with sqlite_sessions() as s:
        names = dict(
            s.execute(select(Member.ref, MemberPersonal.name).join(MemberPersonal)).tuples().all()
        )
        # the stored members keep their personal data; a member defined only in the file is
        # created with its name; one given by ref only gets no personal row
        assert names == {
            "m-pv01": "Name of m-pv01",
            "m-dh01": "Name of m-dh01",
            "m-ev01": "ev-jansen",
        }
        assert s.scalar(select(Member.kind).where(Member.ref == "m-cl01")) == MemberKind.PERSON
