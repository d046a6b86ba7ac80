"""``noaber meetkoffer savings/verifications/recompute/withdraw`` on a temporary SQLite data dir."""

from __future__ import annotations

import pandas as pd
import yaml
from sqlalchemy import update
from typer.testing import CliRunner

from energy.audit import entries as audit_entries
from energy.db import make_engine, session_factory, upgrade
from energy.errors import ValidationError
from energy.models import IntervalReading
from energy.samples import SampleStore
from meetkoffer import campaign as cp
from tests.meetkoffer.campaign_fixture import DATA, STEP_AT, build
from tests.meetkoffer.test_cli import _app

NAME = "kunststof-2026-03"


def test_cli_versions_recompute_withdraw(settings_env) -> None:
    engine = make_engine(settings_env.sqlalchemy_url)
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions.begin() as s:
        build(s, SampleStore(settings_env.samples_dir), step_s=300)
    app, runner = _app(), CliRunner()
    period = ["--baseline", f"2026-03-02..{STEP_AT}", "--reporting", f"{STEP_AT}..2026-03-30"]
    r = runner.invoke(app, ["meetkoffer", "savings", NAME, *period])
    assert r.exit_code == 0, r.output
    assert "verification 1 version 1 (savings #1, data " in r.output
    r = runner.invoke(app, ["meetkoffer", "recompute", NAME, "1"])
    assert r.exit_code == 0, r.output
    assert "data and parameters unchanged; version 1 (savings #1) stands" in r.output
    with sessions.begin() as s:
        s.execute(update(IntervalReading).values(energy_wh=IntervalReading.energy_wh * 1.01))
    r = runner.invoke(app, ["meetkoffer", "recompute", NAME, "1"])
    assert r.exit_code == 0, r.output
    assert "version 2 (savings #2) from version 1" in r.output
    assert "baseline data changed" in r.output and "reporting data changed" in r.output
    r = runner.invoke(app, ["meetkoffer", "verifications", NAME, "--id", "1"])
    assert r.exit_code == 0, r.output
    assert "data" in r.output.splitlines()[-2]  # version 2 says what changed
    r = runner.invoke(
        app,
        ["meetkoffer", "withdraw", NAME, "1", "--reason", "clamp on wrong phase", "--by", "jan"],
        env={"NOABER_AS": "els"},
    )
    assert r.exit_code == 0 and "withdrawn by jan: clamp on wrong phase" in r.output
    with sessions() as s:  # audited as the command's user (--as / NOABER_AS)
        (entry,) = audit_entries(s, action="verification.withdraw")
        assert (entry.actor, entry.via, entry.target) == ("els", "cli", f"{NAME}/verification 1")
        assert entry.detail == {"verification_id": 1, "versions": [1, 2]}
    r = runner.invoke(app, ["meetkoffer", "verifications", NAME])
    assert "jan" in r.output and "wrong phase" in r.output  # (rich wraps the cell)
    r = runner.invoke(app, ["meetkoffer", "recompute", NAME, "2"])
    assert isinstance(r.exception, ValidationError) and "withdrawn" in str(r.exception)


def test_cli_billing_savings_refusals(settings_env, tmp_path) -> None:
    engine = make_engine(settings_env.sqlalchemy_url)
    upgrade(engine)
    with session_factory(engine).begin() as s:
        cp.create_campaign(s, yaml.safe_load((DATA / "campaign.yaml").read_text()))
    app, runner = _app(), CliRunner()
    bills = tmp_path / "bills.csv"
    pd.DataFrame(
        {
            "start": ["2025-01-01T00:00+01:00", "2026-03-01T00:00+01:00"],
            "end": ["2025-02-01T00:00+01:00", "2026-04-01T00:00+02:00"],  # offsets mix
            "kwh": [1000.0, 900.0],
        }
    ).to_csv(bills, index=False)
    args = ["--baseline", "2025-01-01..2026-01-01", "--reporting", "2026-03-01..2026-04-01"]
    billing = ["--model", "caltrack-billing", "--bills", str(bills)]
    r = runner.invoke(app, ["meetkoffer", "savings", NAME, *args, *billing])
    assert isinstance(r.exception, ValidationError)
    assert "has no outdoor temperatures for the bills" in str(r.exception)
    r = runner.invoke(app, ["meetkoffer", "savings", NAME, *args, "--bills", str(bills)])
    assert isinstance(r.exception, ValidationError) and "--bills goes with" in str(r.exception)


def test_cli_billing_savings_use_the_imported_bills(settings_env, tmp_path) -> None:
    """Without --bills, caltrack-billing reads what `import --kind billing` stored."""
    engine = make_engine(settings_env.sqlalchemy_url)
    upgrade(engine)
    with session_factory(engine).begin() as s:
        cp.create_campaign(s, yaml.safe_load((DATA / "campaign.yaml").read_text()))
    app, runner = _app(), CliRunner()
    args = ["--baseline", "2025-01-01..2026-01-01", "--reporting", "2026-03-01..2026-04-01"]
    r = runner.invoke(app, ["meetkoffer", "savings", NAME, *args, "--model", "caltrack-billing"])
    assert isinstance(r.exception, ValidationError) and "has no bills" in str(r.exception)
    bills = tmp_path / "bills.csv"
    bills.write_text(
        "start,end,value,unit\n"
        "2025-01-01T00:00+01:00,2025-02-01T00:00+01:00,1000,kWh\n"
        "2026-03-01T00:00+01:00,2026-04-01T00:00+02:00,900,kWh\n",
        encoding="utf-8",
    )
    r = runner.invoke(app, ["meetkoffer", "import", NAME, str(bills), "--kind", "billing"])
    assert r.exit_code == 0, r.output
    with session_factory(engine)() as s:
        stored = cp.billing_periods(s, cp.get_campaign(s, NAME))
    assert stored["kwh"].tolist() == [1000.0, 900.0]
    r = runner.invoke(app, ["meetkoffer", "savings", NAME, *args, "--model", "caltrack-billing"])
    # the stored bills reached the billing model: it asks for the temperatures of their days
    assert isinstance(r.exception, ValidationError), r.output
    assert "has no outdoor temperatures for the bills" in str(r.exception)
