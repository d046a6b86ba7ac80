"""A campaign file refers to its firm and site; a firm defined in a site file is not redefined."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from energy.errors import ValidationError
from energy.models import Channel, Member, MemberKind
from energy.siteconfig import import_site_file
from energy.sites import MemberSpec, ensure_member
from meetkoffer import campaign as cp
from tests.meetkoffer.campaign_fixture import DATA

FACTORY = Path(__file__).parents[2] / "noaber" / "services" / "demo" / "data" / "demo_factory.yaml"


def test_campaign_refers_to_a_firm_of_a_site_file(sessions) -> None:
    import_site_file(FACTORY, sessions)
    with sessions.begin() as s:
        ensure_member(s, MemberSpec("m-5e0a11", MemberKind.PERSON, "Anna Bakker"))
    cfg = yaml.safe_load((DATA / "campaign.yaml").read_text())
    new_site = cfg["site"]
    cfg.update(firm={"ref": "m-polymeer"}, site={"name": "polymeer-emmen"})
    with sessions.begin() as s:
        c = cp.create_campaign(s, cfg, "campaign.yaml")
        firm = s.scalar(select(Member).where(Member.ref == "m-polymeer"))
        assert c.firm_member_id == firm.id and firm.personal.name == "Polymeer Extrusie Emmen B.V."
        keys = {s.get(Channel, e.channel_id).key for e in c.equipment}
        assert "polymeer-emmen/lighting/energy_import" in keys
    cases = [
        ({"firm": {"ref": "m-polymeer", "name": "Other BV"}}, "campaign.yaml:firm.name: member"),
        ({"firm": {"ref": "m-5e0a11"}}, "campaign.yaml:firm.kind: member 'm-5e0a11' is stored as"),
        (
            {"site": {**new_site, "ean": "871685900000000028"}},
            "campaign.yaml:site.ean: EAN 871685900000000028 already belongs to site",
        ),
    ]
    for i, (change, message) in enumerate(cases):
        with sessions.begin() as s, pytest.raises(ValidationError) as err:
            cp.create_campaign(s, {**cfg, "name": f"bad-{i}", **change}, "campaign.yaml")
        assert message in str(err.value)
