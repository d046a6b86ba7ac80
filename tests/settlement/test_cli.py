"""The settlement commands end to end through the `noaber` command line (SQLite)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import typer
import yaml
from sqlalchemy import select, text
from typer.testing import CliRunner

from noaber.cli.settle import register
from tests.settlement.conftest import COMMUNITY, meter_data

ROOT = Path(__file__).parents[2]
DATA = ROOT / "tests" / "data" / "settlement"


@pytest.fixture
def cli():
    app = typer.Typer()
    register(app)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=True)

    return invoke


def _write_inputs(tmp_path: Path) -> tuple[Path, Path]:
    community = tmp_path / "community.yaml"
    community.write_text(yaml.safe_dump(COMMUNITY), encoding="utf-8")
    d = meter_data()
    meters = tmp_path / "meters.csv"
    ids = ["PV", "DH", "EV", "CL"]
    with meters.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "meter", "direction", "energy_wh"])
        for t, ts in enumerate(d.isps.tz_convert("Europe/Amsterdam")):
            stamp = ts.isoformat()
            for i, meter in enumerate(ids):
                if d.offtake_wh[t, i]:
                    w.writerow([stamp, meter, "offtake", int(d.offtake_wh[t, i])])
                if d.injection_wh[t, i]:
                    w.writerow([stamp, meter, "injection", int(d.injection_wh[t, i])])
    return community, meters


def test_allocate_writes_the_allocation_table(cli, tmp_path):
    community, meters = _write_inputs(tmp_path)
    out = tmp_path / "allocation.csv"
    res = cli("settle", "allocate", community, meters, "--out", out)
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == [
        "timestamp",
        "member",
        "offtake_wh",
        "shared_wh",
        "net_offtake_wh",
        "injection_wh",
        "net_injection_wh",
    ]
    assert len(frame) == 2980 * 4
    assert (frame.offtake_wh == frame.shared_wh + frame.net_offtake_wh).all()
    assert (
        frame.groupby("timestamp")
        .shared_wh.sum()
        .equals(
            frame.groupby("timestamp").apply(lambda g: (g.injection_wh - g.net_injection_wh).sum())
        )
    )


def test_bad_meter_file_names_the_lines(cli, tmp_path):
    community, _ = _write_inputs(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "timestamp,meter,direction,energy_wh\n"
        "2026-10-01T00:00:00+02:00,PV,injection,10\n"
        "2026-10-01T00:07:00+02:00,PV,injection,10\n"
        "2026-10-01T00:15:00+02:00,XX,offtake,1\n"
        "2026-10-01T00:15:00+02:00,DH,afname,1\n"
        "2026-10-01T00:30:00,DH,offtake,1\n"
        "2026-10-01T00:00:00+02:00,PV,injection,11\n"
    )
    res = cli("settle", "allocate", community, bad, "--out", tmp_path / "x.csv")
    assert res.exit_code != 0
    msg = str(res.exception)
    for line in ("line 3", "line 4", "line 5", "line 6", "line 7"):
        assert line in msg
    assert "line 2:" not in msg
    assert not (tmp_path / "x.csv").exists()


def test_run_statement_verify_and_reconcile(cli, tmp_path, settings_env, monkeypatch):
    community, meters = _write_inputs(tmp_path)
    res = cli("settle", "run", "--community", community, "--period", "2026-10", "--meters", meters)
    assert res.exit_code == 0, res.output
    assert "posted" in res.output and "NB-2026-000001" in res.output
    again = cli(
        "settle", "run", "--community", community, "--period", "2026-10", "--meters", meters
    )
    assert again.exit_code == 0 and "nothing posted" in again.output
    monkeypatch.chdir(tmp_path)
    res = cli("statement", "--member", "m-ev01", "--period", "2026-10")
    assert res.exit_code == 0, res.output
    html = next(tmp_path.glob("statement-NB-2026-*.html")).read_text()
    assert "Afrekening" in html
    res = cli(
        "statement",
        "--member",
        "m-ev01",
        "--period",
        "2026-10",
        "--csv",
        "--out",
        tmp_path / "s.csv",
    )
    assert res.exit_code == 0 and (tmp_path / "s.csv").read_text().startswith("date,received_wh")
    res = cli("ledger", "verify")
    assert res.exit_code == 0 and "ledger ok" in res.output
    res = cli("ledger", "reconcile", "--community", "dorp-test", "--period", "2026-10")
    assert res.exit_code == 0 and "reconciled" in res.output, res.output


def test_noaber_ledger_verify_names_the_broken_transfer(tmp_path, settings_env):
    from energy.db import make_engine, session_factory, upgrade
    from settlement.settle import post_run
    from tests.settlement.conftest import make_plan

    eng = make_engine(settings_env.sqlalchemy_url)
    upgrade(eng)
    post_run(session_factory(eng), make_plan())
    with eng.begin() as conn:
        conn.execute(text("DROP TRIGGER settlement_transfers_no_update"))
        conn.execute(text("UPDATE settlement_transfers SET amount = 1 WHERE seq = 12"))
    eng.dispose()
    proc = subprocess.run(
        [sys.executable, "-m", "noaber.cli", "ledger", "verify"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 1
    assert "transfer 12" in proc.stderr and "hash" in proc.stderr


def test_provisional_run_then_post_via_cli(cli, tmp_path, settings_env):
    community, meters = _write_inputs(tmp_path)
    res = cli(
        "settle",
        "run",
        "--community",
        community,
        "--period",
        "2026-10",
        "--meters",
        meters,
        "--provisional",
    )
    assert res.exit_code == 0 and "pending" in res.output, res.output
    run_id = res.output.split()[1]
    res = cli("settle", "post", run_id)
    assert res.exit_code == 0 and "posted" in res.output and "NB-2026-000001" in res.output, (
        res.output
    )
    res = cli("settle", "void", run_id)
    assert res.exit_code != 0 and "not pending" in str(res.exception)
    res = cli("ledger", "reconcile", "--community", "dorp-test", "--period", "2026-10")
    assert res.exit_code == 0, res.output


def test_sepa_payment_run_via_cli(cli, tmp_path, settings_env):
    """settle sepa writes the period's pain.001/pain.008 files once; --again rewrites the
    stored files byte for byte; a second run is refused with a one-line error."""
    import datetime as dt

    from energy.db import make_engine, session_factory
    from energy.models import MemberPersonal

    community, meters = _write_inputs(tmp_path)
    spec = yaml.safe_load(community.read_text())
    spec["payments"] = {
        "name": "Dorpshuis Test Energie",
        "iban": "NL91ABNA0417164300",
        "creditor_id": "NL98ZZZ999999999999",
    }
    community.write_text(yaml.safe_dump(spec), encoding="utf-8")
    res = cli("settle", "run", "--community", community, "--period", "2026-10", "--meters", meters)
    assert res.exit_code == 0, res.output
    eng = make_engine(settings_env.sqlalchemy_url)
    ibans = ["NL20INGB0001234567", "NL39RABO0300065264", "NL02ABNA0123456789", "NL91ABNA0417164300"]
    with session_factory(eng)() as s, s.begin():
        rows = list(s.scalars(select(MemberPersonal).order_by(MemberPersonal.member_id)))
        assert len(rows) == 4
        for iban, p in zip(ibans, rows):
            p.iban = iban
            p.sepa_mandate_id = f"M-{p.member_id}"
            p.sepa_mandate_date = dt.date(2026, 1, 1)
    out = tmp_path / "sepa"
    args = (
        "settle",
        "sepa",
        "--community",
        community,
        "--period",
        "2026-10",
        "--date",
        "2026-11-10",
    )
    res = cli(*args, "--out", out)
    # without the community's BIC no pain.008.001.02 can be written: named, nothing recorded
    assert res.exit_code != 0 and "payments.bic" in str(res.exception)
    with eng.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM settlement_payment_runs")).scalar() == 0
    eng.dispose()
    spec["payments"]["bic"] = "ABNANL2A"
    community.write_text(yaml.safe_dump(spec), encoding="utf-8")
    res = cli(*args, "--out", out)
    assert res.exit_code == 0 and "payouts" in res.output, res.output
    files = sorted(out.glob("*.xml"))
    assert [f.name for f in files] == [
        "dorp-test-2026-10-pain.001.001.03.xml",
        "dorp-test-2026-10-pain.008.001.02.xml",
    ]
    first = [f.read_bytes() for f in files]
    res = cli(*args, "--out", out)
    assert res.exit_code != 0 and "not made twice" in str(res.exception)
    res = cli(*args, "--out", out, "--again")
    assert res.exit_code == 0 and [f.read_bytes() for f in files] == first
    res = cli("ledger", "reconcile", "--community", "dorp-test", "--period", "2026-10")
    assert res.exit_code == 0, res.output
