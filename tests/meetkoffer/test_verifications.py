"""Frozen, versioned savings verifications on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select, update

from energy.errors import ValidationError
from energy.models import IntervalReading
from energy.samples import SampleStore
from meetkoffer import campaign as cp
from meetkoffer import verifications as vf
from meetkoffer.models import SavingsRecord, Verification
from tests.meetkoffer.campaign_fixture import STEP_AT, build

NAME = "kunststof-2026-03"


def test_frozen_versions_recompute_and_withdraw(sessions, tmp_path: Path) -> None:
    store = SampleStore(tmp_path / "samples")
    with sessions.begin() as s:
        c, _ = build(s, store, step_s=300)
        base = cp.parse_period(f"2026-03-02..{STEP_AT}", "baseline")
        rep = cp.parse_period(f"{STEP_AT}..2026-03-30", "reporting")
        res, rec = cp.verify(s, c, base, rep, option="B", equipment="extruder line 2")
        first_id, first_kwh = rec.id, res.avoided_kwh
        assert rec.version == 1 and len(rec.data_digest) == 64
        assert rec.params["price_eur_per_kwh"] == c.price_eur_per_kwh
        # The daily verification carries the ISO 50006 EnPI with its CUSUM.
        assert res.enpi is not None and "production" in res.enpi["variables"]
        channel = next(e.channel_id for e in c.equipment if e.name == "extruder line 2")

    # The data change: 20 kWh more in one reporting ISP of the machine.
    with sessions.begin() as s:
        isp = pd.Timestamp("2026-03-20 10:00", tz="UTC").to_pydatetime()
        s.execute(
            update(IntervalReading)
            .where(IntervalReading.channel_id == channel, IntervalReading.isp_start == isp)
            .values(energy_wh=IntervalReading.energy_wh + 20_000.0)
        )
    with sessions.begin() as s:
        c = cp.get_campaign(s, NAME)
        rec = s.get(SavingsRecord, first_id)
        # Showing it keeps the frozen result: no recompute on today's data.
        shown = cp.render_savings_report(s, c, rec)
        assert vf.shown_result(rec).avoided_kwh == first_kwh
        assert shown.tables["savings_summary"].loc["avoided_kwh", "value"] == first_kwh
        # Recompute: a new version that says what changed.
        r2 = cp.recompute(s, c, rec)
        assert r2.created and r2.record.version == 2
        ch = r2.changes
        assert ch["from_version"] == 1
        assert ch["data"]["digest"][0] == rec.data_digest != ch["data"]["digest"][1]
        assert "baseline" not in ch["data"]  # only the reporting data changed
        assert ch["data"]["reporting"]["energy_kwh"][1] - ch["data"]["reporting"]["energy_kwh"][
            0
        ] == pytest.approx(20.0)
        assert "parameters" not in ch
        assert ch["result"]["avoided_kwh"]["delta"] == pytest.approx(-20.0, abs=0.5)
        assert r2.result.avoided_kwh == pytest.approx(first_kwh - 20.0, abs=0.5)
        # The same data and parameters again: no new version.
        r3 = cp.recompute(s, c, rec)
        assert not r3.created and r3.record.id == r2.record.id
        # A changed price is a changed parameter.
        c.price_eur_per_kwh = 0.30
        s.flush()
        r4 = cp.recompute(s, c, r2.record)
        assert r4.created and r4.record.version == 3
        assert r4.changes["parameters"]["price_eur_per_kwh"][1] == 0.30
        assert "data" not in r4.changes
        vid = rec.verification_id
    with sessions.begin() as s:
        v = s.get(Verification, vid)
        assert [r.version for r in v.versions] == [1, 2, 3]
        assert vf.version_rows(v)[0]["avoided_kwh"] == first_kwh
        # A stored version is never rewritten.
        v.versions[0].avoided_kwh = 1.0
        with pytest.raises(ValidationError, match="frozen"):
            s.flush()
    with sessions.begin() as s:
        c = cp.get_campaign(s, NAME)
        with pytest.raises(ValidationError, match="needs a reason"):
            cp.withdraw_verification(s, c, vid, " ", "anna")
        v = cp.withdraw_verification(s, c, vid, "meter swapped mid-period", "anna")
        assert v.withdrawn_by == "anna" and v.withdrawn_at is not None
    with sessions.begin() as s:
        c = cp.get_campaign(s, NAME)
        rec = s.get(SavingsRecord, first_id)
        with pytest.raises(ValidationError, match="withdrawn"):
            cp.recompute(s, c, rec)
        with pytest.raises(ValidationError, match="withdrawn already"):
            cp.withdraw_verification(s, c, vid, "again", "bob")
        meta = cp.savings_meta(c, rec)
        assert meta["withdrawn"]["reason"] == "meter swapped mid-period"
        assert len(meta["versions"]) == 3
        # Still shown (withdrawn, not deleted), from its frozen result.
        assert vf.shown_result(rec).avoided_kwh == first_kwh
    with sessions.begin() as s:
        rows = s.scalars(select(SavingsRecord).order_by(SavingsRecord.version)).all()
        assert rows[0].avoided_kwh == first_kwh and len(rows) == 3
        # Bypassing the ORM (as a hand edit in SQL would): the digest no longer matches.
        frozen = dict(rows[0].frozen)
        frozen["avoided_kwh"] = 1e9
        s.execute(update(SavingsRecord).where(SavingsRecord.id == first_id).values(frozen=frozen))
    with sessions() as s:
        with pytest.raises(ValidationError, match="does not match its digest"):
            vf.shown_result(s.get(SavingsRecord, first_id))
