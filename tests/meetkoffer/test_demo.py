"""The Meetkoffer demo step in the session demo (tests/conftest.py)."""

from __future__ import annotations

from sqlalchemy import select

from meetkoffer.models import Campaign
from noaber.services.demo import DemoContext
from noaber.services.demo.meetkoffer import CAMPAIGN


def test_demo_step_creates_an_analysed_campaign(demo: DemoContext) -> None:
    with demo.sessions() as s:
        c = s.scalar(select(Campaign).where(Campaign.name == CAMPAIGN))
        assert c is not None and c.analyzed_at is not None
        assert len(c.equipment) == 6
        assert [e.name for e in c.equipment if e.role == "incomer"] == ["main incomer"]
        assert c.findings, "the demo factory has a weekend base load and compressor leakage"
        assert any(f.kind == "standby" for f in c.findings)
    assert (demo.data_dir / "reports" / CAMPAIGN / "campaign.html").is_file()
    assert any(n.startswith("Meetkoffer: campaign") for n in demo.notes)
