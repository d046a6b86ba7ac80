"""meetkoffer_0002_mv on a database with a savings record stored before versions existed."""

from __future__ import annotations

import pytest
import yaml
from alembic import command
from sqlalchemy import text

from energy.db import alembic_config, session_factory, upgrade
from energy.errors import ValidationError
from meetkoffer import campaign as cp
from meetkoffer import verifications as vf
from meetkoffer.models import SavingsRecord, Verification
from tests.meetkoffer.campaign_fixture import DATA


def test_old_savings_become_version_1_and_ask_for_a_recompute(engine) -> None:
    command.downgrade(alembic_config(engine), "meetkoffer_0002_data")
    with session_factory(engine).begin() as s:
        c = cp.create_campaign(s, yaml.safe_load((DATA / "campaign.yaml").read_text()))
        cid = c.id
    with engine.begin() as conn:
        for _ in range(2):
            conn.execute(
                text(
                    "INSERT INTO mk_savings (campaign_id, option, model, baseline_start, "
                    "baseline_end, reporting_start, reporting_end, adjusted_baseline_kwh, "
                    "reporting_kwh, nonroutine_kwh, avoided_kwh, avoided_eur, avoided_co2_t, "
                    "cv_rmse, nmbe, r2, ashrae14_pass, summary, created_at) VALUES (:c, 'C', "
                    "'regression', :t0, :t1, :t1, :t2, 10, 8, 0, 2, 0.4, 0.001, 0.1, 0, 0.9, "
                    ":ok, '{}', :t0)"
                ),
                {
                    "c": cid,
                    "t0": "2026-03-01 23:00:00.000000",
                    "t1": "2026-03-15 23:00:00.000000",
                    "t2": "2026-03-29 22:00:00.000000",
                    "ok": True,
                },
            )
    upgrade(engine)
    with session_factory(engine).begin() as s:
        recs = s.query(SavingsRecord).order_by(SavingsRecord.id).all()
        assert [(r.verification_id, r.version) for r in recs] == [(r.id, 1) for r in recs]
        assert all(r.frozen is None and r.data_digest is None for r in recs)
        with pytest.raises(ValidationError, match="recompute it"):
            vf.shown_result(recs[0])
        # New verifications get ids after the old ones.
        v = Verification(campaign_id=cid)
        s.add(v)
        s.flush()
        assert v.id == max(r.id for r in recs) + 1
