"""`noaber optimize`: the scenario shorthand, the schedule CSV, batch mode and one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from noaber.cli.optimize import register
from tests.optimizer.helpers import DATA

EXAMPLE = Path(__file__).resolve().parents[2] / "optimizer" / "examples" / "dorpshuis.yaml"


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer()

    @root.command("version")
    def _version() -> None:  # a second command so Typer keeps `optimize` as a group
        pass

    register(root)
    return root


def test_scenario_shorthand_writes_schedule_and_prints_baselines(
    app: typer.Typer, tmp_path: Path
) -> None:
    out, kpis = tmp_path / "schedule.csv", tmp_path / "kpis.json"
    res = CliRunner().invoke(
        app, ["optimize", str(EXAMPLE), "--out", str(out), "--kpis", str(kpis)]
    )
    assert res.exit_code == 0, res.output
    assert "no control" in res.output and "self consumption" in res.output
    assert "build " in res.output and " solve " in res.output
    table = pd.read_csv(out)
    assert list(table.columns) == ["timestamp", "asset", "kind", "power_kw", "soc_pct"]
    assert set(table["asset"]) == {
        "grid",
        "pv",
        "load",
        "battery",
        "car-1",
        "car-2",
        "car-3",
        "car-4",
    }
    assert (table.groupby("asset").size()[["grid", "pv", "load", "battery"]] == 192).all()
    summary = json.loads(kpis.read_text())
    assert (
        summary["savings_eur"]["no_control"] >= 0
        and summary["savings_eur"]["self_consumption"] >= 0
    )
    # the schedule balances: grid + pv + load + storage sums to zero per step
    signed = table["power_kw"].where(table["asset"] == "grid", -table["power_kw"])
    assert signed.groupby(table["timestamp"]).sum().abs().max() < 1e-3


def test_unreachable_target_is_one_line_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "noaber.cli", "optimize", str(DATA / "unreachable.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert proc.returncode == 1
    assert "EV 'car-3' cannot reach 80 % by 07:30, it is short 3.8 kWh" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_batch_plans_every_file_and_reports_failures(app: typer.Typer, tmp_path: Path) -> None:
    src = tmp_path / "sites"
    src.mkdir()
    for name in ("price_step", "car_full", "unreachable"):
        shutil.copy(DATA / f"{name}.yaml", src)
    for csv in DATA.glob("*.csv"):
        shutil.copy(csv, src)
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        [
            "optimize",
            "batch",
            str(src),
            "--out-dir",
            str(out),
            "-j",
            "2",
            "--summary",
            str(tmp_path / "s.json"),
        ],
    )
    assert res.exit_code == 1  # one site is infeasible
    rows = {r["name"]: r for r in json.loads((tmp_path / "s.json").read_text())}
    assert rows["price-step"]["ok"] and rows["car-full"]["ok"]
    assert rows["price-step"]["summary"]["objective_eur"] == pytest.approx(0.8)
    assert "cannot reach 80 %" in rows["unreachable"]["error"]
    assert sorted(p.name for p in out.iterdir()) == ["car-full.csv", "price-step.csv"]


@pytest.mark.parametrize(
    "at, message",
    [
        ("2026-06-15T10:00", "--at: give a time zone offset or Z"),
        ("yesterday-ish", "--at: not a time: 'yesterday-ish'"),
    ],
)
def test_run_at_needs_a_time_with_its_zone(app: typer.Typer, tmp_path: Path, at, message) -> None:
    csv = tmp_path / "prices.csv"
    csv.write_text("timestamp,import_price_eur_per_kwh,export_price_eur_per_kwh\n")
    res = CliRunner().invoke(
        app, ["optimize", "run", "--site", "x", "--prices", str(csv), "--at", at]
    )
    assert res.exit_code != 0
    assert message in str(res.exception) + res.output
