"""``noaber meetkoffer`` commands on a temporary SQLite data dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from energy.errors import NotFoundError, ValidationError
from noaber.cli.meetkoffer import register
from tests.meetkoffer.campaign_fixture import DATA, STEP_AT, STEP_KW
from tests.meetkoffer.synth import TZ, make_plant


def _app() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """Test root."""

    register(root)
    return root


def _samples_csv(path: Path) -> None:
    plant = make_plant(start="2026-03-02", days=28, step_kw=STEP_KW, step_at=STEP_AT)
    frames = []
    for name, s in (
        ("main incomer", plant.incomer_wh),
        ("extruder line 2", plant.extruder_wh),
        ("compressor 1", plant.compressor_wh),
    ):
        ts = np.repeat(s.index.as_unit("ns").asi8, 3) + np.tile([0, 300, 600], len(s)) * 10**9
        frames.append(
            pd.DataFrame(
                {
                    "ts": ts,
                    "channel": name,
                    "value": np.repeat(s.to_numpy() * 4 / 1000, 3),
                    "unit": "kW",
                }
            )
        )
    counter = np.concatenate(([0.0], np.cumsum(plant.lighting_wh.to_numpy()))) / 1000
    ts = np.append(plant.index.as_unit("ns").asi8, plant.index.as_unit("ns").asi8[-1] + 900 * 10**9)
    frames.append(
        pd.DataFrame({"ts": ts[:-1], "channel": "lighting", "value": counter[:-1], "unit": "kWh"})
    )
    df = pd.concat(frames)
    df["timestamp"] = (
        pd.to_datetime(df["ts"], utc=True).dt.tz_convert(TZ).map(lambda t: t.isoformat())
    )
    df[["timestamp", "channel", "value", "unit"]].to_csv(path, index=False)
    prod = ["start,end,value,unit"] + [
        f"{(d.tz_convert(TZ) + pd.Timedelta(hours=6)).isoformat()},{(d.tz_convert(TZ) + pd.Timedelta(hours=22)).isoformat()},{u:.2f},t"
        for d, u in plant.production_per_day.items()
        if u > 0
    ]
    (path.parent / "production.csv").write_text("\n".join(prod) + "\n")


@pytest.mark.slow
def test_cli_import_analyze_savings_report(settings_env, tmp_path: Path) -> None:
    runner = CliRunner()
    app = _app()
    csv = tmp_path / "kit.csv"
    _samples_csv(csv)
    r = runner.invoke(app, ["meetkoffer", "create", str(DATA / "campaign.yaml")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["meetkoffer", "import", "kunststof-2026-03", str(csv)])
    assert r.exit_code == 0, r.output
    assert "compressor 1:" in r.output
    r = runner.invoke(
        app,
        [
            "meetkoffer",
            "import",
            "kunststof-2026-03",
            str(tmp_path / "production.csv"),
            "--kind",
            "production",
        ],
    )
    assert r.exit_code == 0 and "20 production records" in r.output, r.output
    r = runner.invoke(app, ["meetkoffer", "analyze", "kunststof-2026-03"])
    assert r.exit_code == 0, r.output
    assert "compressor 1 runs at" in r.output
    r = runner.invoke(
        app,
        [
            "meetkoffer", "savings", "kunststof-2026-03", "--baseline", f"2026-03-02..{STEP_AT}",
            "--reporting", f"{STEP_AT}..2026-03-30", "--option", "B", "--equipment", "extruder line 2",
            "--adjust", "0:no change",
        ],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "savings #1 (Option B" in r.output and "ASHRAE 14" in r.output
    r = runner.invoke(
        app,
        [
            "meetkoffer", "savings", "kunststof-2026-03", "--baseline", f"2026-03-02..{STEP_AT}",
            "--reporting", f"{STEP_AT}..2026-03-30", "--model", "hourly",
        ],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "savings #2 (Option C, hourly" in r.output
    assert "ASHRAE 14 (hourly, n=336)" in r.output and "(max 30%)" in r.output
    r = runner.invoke(
        app,
        [
            "meetkoffer", "savings", "kunststof-2026-03", "--baseline", f"2026-03-02..{STEP_AT}",
            "--reporting", f"{STEP_AT}..2026-03-30", "--model", "weekly",
        ],
    )  # fmt: skip
    assert isinstance(r.exception, ValidationError) and "--model" in str(r.exception)
    out = tmp_path / "reports"
    r = runner.invoke(
        app, ["meetkoffer", "report", "kunststof-2026-03", "--out", str(out), "--locale", "en"]
    )
    assert r.exit_code == 0, r.output
    assert (out / "campaign.html").is_file() and (out / "savings-1.html").is_file()
    assert (out / "savings-2_baseline_hourly.csv").is_file()
    assert "measured and modelled [kWh\\u002fhour]" in (out / "savings-2.html").read_text()
    assert (out / "savings-1_nonroutine_adjustments.csv").read_text().count("no change") == 1
    assert "Findings" in (out / "campaign.html").read_text()


def test_cli_errors(settings_env, tmp_path: Path) -> None:
    runner = CliRunner()
    app = _app()
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,channel,value,unit\n2026-03-02T08:00:00,x,1,kW\n")
    r = runner.invoke(app, ["meetkoffer", "import", "nope", str(bad)])
    assert isinstance(r.exception, NotFoundError)
    assert runner.invoke(app, ["meetkoffer", "create", str(DATA / "campaign.yaml")]).exit_code == 0
    r = runner.invoke(app, ["meetkoffer", "import", "kunststof-2026-03", str(bad)])
    assert isinstance(r.exception, ValidationError)
    assert "line 2" in str(r.exception)
    r = runner.invoke(
        app, ["meetkoffer", "import", "kunststof-2026-03", str(bad), "--kind", "weather"]
    )
    assert isinstance(r.exception, ValidationError)
