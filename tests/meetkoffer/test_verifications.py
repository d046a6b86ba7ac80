"""Frozen, versioned savings verifications on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sqlalchemy import select, update

from energy.errors import ValidationError
from energy.models import IntervalReading
from energy.samples import SampleStore
from meetkoffer import caltrack as ct
from meetkoffer import campaign as cp
from meetkoffer import verifications as vf
from meetkoffer.models import SavingsRecord, TemperatureReading, Verification
from tests.meetkoffer.campaign_fixture import DATA, STEP_AT, build
from tests.meetkoffer.synth import TZ

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


def test_billing_verification_frozen_and_recomputed(sessions) -> None:
    """Monthly bills of the incomer (a DataFrame start, end, kwh) with the campaign's
    temperatures: CalTRACK billing savings, stored frozen; the same bills again change nothing."""
    cfg = yaml.safe_load((DATA / "campaign.yaml").read_text())
    days = pd.date_range("2025-01-01", "2026-12-31", freq="D")
    rng = np.random.default_rng(4)
    t = 10.0 - 8.0 * np.cos(2 * np.pi * np.arange(days.size) / 365.25) + rng.normal(0, 2, days.size)
    hours = ct.day_hours(days.tz_localize(TZ))
    kwh = hours / 24 * (700.0 + 30.0 * np.maximum(15.0 - t, 0.0))
    kwh[days >= "2026-01-01"] *= 0.85
    months = pd.date_range("2025-01-01", "2027-01-01", freq="MS")
    bills = pd.DataFrame(
        [
            {
                "start": a.tz_localize(TZ),
                "end": b.tz_localize(TZ),
                "kwh": float(kwh[(days >= a) & (days < b)].sum()),
            }
            for a, b in itertools.pairwise(months)
        ]
    )
    with sessions.begin() as s:
        c = cp.create_campaign(s, cfg)
        for d, v in zip(days, t):
            s.add(
                TemperatureReading(
                    campaign_id=c.id,
                    ts=(d.tz_localize(TZ) + pd.Timedelta(hours=12)).tz_convert("UTC"),
                    temp_c=float(v),
                )
            )
        s.flush()
        base = cp.parse_period("2025-01-01..2026-01-01", "baseline")
        rep = cp.parse_period("2026-01-01..2027-01-01", "reporting")
        res, rec = cp.verify_billing(s, c, bills, base, rep)
        true = 0.15 / 0.85 * bills["kwh"].iloc[12:].sum()
        assert res.model == "caltrack_billing:hdd_only" and rec.version == 1
        assert res.avoided_kwh == pytest.approx(true, rel=0.02)
        assert rec.summary["data"]["baseline"]["periods"] == 12
        with pytest.raises(ValidationError, match="give the bills"):
            cp.recompute(s, c, rec)
        again = cp.recompute(s, c, rec, periods=bills)
        assert not again.created and again.record.id == rec.id
        changed = bills.assign(kwh=bills["kwh"] * np.where(bills.index == 15, 1.1, 1.0))
        new = cp.recompute(s, c, rec, periods=changed)
        assert new.created and "reporting" in new.changes["data"]
        assert "baseline" not in new.changes["data"]
        assert new.changes["result"]["avoided_kwh"]["delta"] == pytest.approx(
            -0.1 * bills["kwh"].iloc[15], rel=1e-6
        )
