"""``analyze`` on SQLite and PostgreSQL: it stores what it can compute, names what it cannot,
analyses a part of the campaign, and the CLI refuses a half-given period."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import pytest
import typer
from sqlalchemy import select
from typer.testing import CliRunner

from energy.errors import NoaberError, ValidationError
from energy.samples import SampleStore
from meetkoffer import campaign as cp
from meetkoffer.models import Campaign, FindingRecord
from noaber.cli.meetkoffer import register
from tests.meetkoffer.campaign_fixture import DATA, raw_samples

TZ = "Europe/Amsterdam"


def _cfg() -> dict:
    return {
        "name": "oven-24-7",
        "display_name": "Steenfabriek, June 2026",
        "firm": {"ref": "m-steen", "name": "Steen BV"},
        "site": {"name": "steen", "ean": "871687140000000099", "grid_import_limit_kw": 900},
        "start": "2026-06-01T00:00:00+02:00",
        "end": "2026-06-15T00:00:00+02:00",
        "price_eur_per_kwh": 0.2,
        "operating_hours": {"always": True, "holidays": "none"},
        "equipment": [
            {"name": "incomer", "role": "incomer"},
            {"name": "kiln"},
            {"name": "dead clamp"},
        ],
    }


def _build(session, store: SampleStore) -> Campaign:
    c = cp.create_campaign(session, _cfg())
    t0 = pd.Timestamp("2026-06-01", tz=TZ)
    idx = pd.date_range(t0, t0 + pd.DateOffset(days=14), freq="15min", inclusive="left")
    idx = idx.tz_convert("UTC").as_unit("ns")
    rng = np.random.default_rng(5)
    kiln = 300.0 + rng.uniform(0, 40, idx.size)
    inc = 50.0 + kiln
    inc[idx.size - 100] += 400.0  # the peak lies in the second week
    ids = {e.name: e.channel_id for e in c.equipment}
    for name, kw in (("incomer", inc), ("kiln", kiln)):
        ts, p = raw_samples(pd.Series(kw * 250.0, index=idx), step_s=300)
        store.append(ids[name], ts, p)
    cp.aggregate(session, store, c, n_threads=1)
    return c


def test_analyze_stores_the_rest_when_one_analysis_cannot_run(sessions, tmp_path) -> None:
    store = SampleStore(tmp_path / "samples")
    with sessions.begin() as s:
        c = _build(s, store)
        _, found = cp.analyze(s, c)
    with sessions() as s:
        c = cp.get_campaign(s, "oven-24-7")
        recs = s.scalars(select(FindingRecord).order_by(FindingRecord.rank)).all()
        kinds = [r.kind for r in recs]
        assert kinds == [f.kind for f in found]
        assert "standby" in kinds and "peak" in kinds  # computed although others could not
        sb = next(r for r in recs if r.kind == "standby")
        assert sb.evidence["base_load_method"] == "load_floor" and sb.counted
        skipped = {(k.analysis, k.equipment): k.reason for k in cp.skipped_analyses(c)}
        assert "24/7" in skipped[("standby and off-hours use", "kiln")]
        assert skipped[("standby and off-hours use", "dead clamp")] == "no interval data"
        assert skipped[("kWh per unit", None)] == "no production data imported"
        assert c.analysis["totals"]["cost_eur_per_year"] == pytest.approx(
            sum(r.cost_eur_per_year for r in recs if r.counted)
        )
        stored = cp.stored_findings(c)
        assert [(f.kind, f.counted) for f in stored] == [(r.kind, r.counted) for r in recs]

    # A part of the campaign: the first week has no peak.
    with sessions.begin() as s:
        c = cp.get_campaign(s, "oven-24-7")
        week1 = cp.parse_period("2026-06-01..2026-06-08", "--from/--to")
        _, found = cp.analyze(s, c, period=week1)
        assert "peak" not in [f.kind for f in found]
        assert c.analysis["period"] == [week1[0].isoformat(), week1[1].isoformat()]
        assert cp.campaign_meta(c)["analysed"] == (week1[0], week1[1])  # the report says so
        whole = cp.parse_period("2026-06-01..2026-06-15", "--from/--to")
        cp.analyze(s, c, period=whole)
        assert cp.campaign_meta(c)["analysed"] is None
        cp.analyze(s, c, period=week1)
    with sessions.begin() as s:
        c = cp.get_campaign(s, "oven-24-7")
        outside = cp.parse_period("2026-07-01..2026-07-08", "--from/--to")
        before = [r.kind for r in c.findings]
        with pytest.raises(ValidationError, match="outside campaign"):
            cp.analyze(s, c, period=outside)
        assert [r.kind for r in c.findings] == before  # nothing stored changed
    # A savings verification on this plant ends in a clear error or a result, never a
    # traceback (the CLI prints every NoaberError as one line).
    with sessions.begin() as s:
        c = cp.get_campaign(s, "oven-24-7")
        with contextlib.suppress(NoaberError):
            cp.verify(
                s,
                c,
                cp.parse_period("2026-06-01..2026-06-08", "baseline"),
                cp.parse_period("2026-06-08..2026-06-15", "reporting"),
            )


def test_analyze_cli_needs_both_ends_of_a_period(settings_env) -> None:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """Test root."""

    register(root)
    runner = CliRunner()
    assert runner.invoke(root, ["meetkoffer", "create", str(DATA / "campaign.yaml")]).exit_code == 0
    r = runner.invoke(root, ["meetkoffer", "analyze", "kunststof-2026-03", "--from", "2026-03-02"])
    assert isinstance(r.exception, ValidationError) and "--to" in str(r.exception)
    r = runner.invoke(
        root,
        [
            "meetkoffer",
            "analyze",
            "kunststof-2026-03",
            "--from",
            "2026-03-09",
            "--to",
            "2026-03-02",
        ],
    )
    assert isinstance(r.exception, ValidationError) and "must be after" in str(r.exception)
    r = runner.invoke(
        root,
        [
            "meetkoffer",
            "analyze",
            "kunststof-2026-03",
            "--from",
            "2026-03-02",
            "--to",
            "2026-03-09",
        ],
    )
    assert isinstance(r.exception, ValidationError)
    assert "no interval data" in str(r.exception) and "in the period asked" in str(r.exception)


def test_analyze_cli_stores_the_aggregation_and_names_what_it_skipped(
    settings_env, tmp_path
) -> None:
    """A 24/7 plant through the CLI: the aggregation is committed, the findings printed with
    their total, and the analyses that could not run named with why."""
    from energy.db import make_engine, session_factory, upgrade

    engine = make_engine(settings_env.sqlalchemy_url)
    upgrade(engine)
    with session_factory(engine).begin() as s:
        _build(s, SampleStore(settings_env.samples_dir))
    engine.dispose()
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """Test root."""

    register(root)
    r = CliRunner().invoke(
        root, ["meetkoffer", "analyze", "oven-24-7", "--from", "2026-06-01", "--to", "2026-06-08"]
    )
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "total (each kWh counted once)" in out
    assert "not analysed: standby and off-hours use of kiln: no off-hours ISPs" in out
    assert "not analysed: start-up peaks" in out
