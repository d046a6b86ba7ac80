"""The Meetkoffer demo step on top of the core demo build."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from meetkoffer.models import Campaign
from noaber.services.demo import build_demo
from noaber.services.demo.meetkoffer import CAMPAIGN, demo_step


@pytest.mark.slow
def test_demo_step_creates_an_analysed_campaign(tmp_path: Path) -> None:
    now = dt.datetime(2026, 3, 12, 10, 0, tzinfo=dt.UTC)
    ctx = build_demo(
        tmp_path / "demo", extra_steps=[("meetkoffer", demo_step)], now=now, sample_period_s=300
    )
    with ctx.sessions() as s:
        c = s.scalar(select(Campaign).where(Campaign.name == CAMPAIGN))
        assert c is not None and c.analyzed_at is not None
        assert len(c.equipment) == 6
        assert [e.name for e in c.equipment if e.role == "incomer"] == ["main incomer"]
        assert c.findings, "the demo factory has a weekend base load and compressor leakage"
        assert any(f.kind == "standby" for f in c.findings)
    assert (tmp_path / "demo" / "reports" / CAMPAIGN / "campaign.html").is_file()
    assert any(n.startswith("Meetkoffer: campaign") for n in ctx.notes)
