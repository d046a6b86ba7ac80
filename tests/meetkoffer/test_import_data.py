"""Meetkoffer data of any resolution: interval energy, counters with gaps, bills; plausibility
and no silent overwrite (issue 15, points 2 and 3). Expected values are worked by hand from the
files the tests write, not from the code under test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from sqlalchemy import func, select
from typer.testing import CliRunner

from energy.db import make_engine, session_factory, upgrade
from energy.errors import ValidationError
from energy.models import IntervalReading
from energy.readings import read_readings
from energy.samples import SampleStore
from meetkoffer import campaign as cp
from meetkoffer.models import ImportAuditRecord, TemperatureReading

TZ = "Europe/Amsterdam"
EXAMPLES = Path(__file__).parents[2] / "meetkoffer" / "data" / "examples"


def _cfg() -> dict:
    """A plant measured for a year: incomer and compressor at 1 Hz-ish power, a gas-fired hall
    heater's electricity per day, the offices per month, lighting as a hand-read counter."""
    return {
        "name": "jaar-2026",
        "display_name": "Year 2026",
        "firm": {"ref": "m-jaar", "name": "Jaar BV"},
        "site": {"name": "jaar-site", "ean": "871000000000000123", "grid_import_limit_kw": 400},
        "start": "2026-01-01T00:00:00+01:00",
        "end": "2027-01-01T00:00:00+01:00",
        "price_eur_per_kwh": 0.2,
        "equipment": [
            {"name": "main incomer", "role": "incomer", "quantity": "power"},
            {"name": "compressor 1", "quantity": "power", "rated_power_kw": 55},
            {"name": "hall", "quantity": "interval_energy", "interval": "day"},
            {"name": "offices", "quantity": "interval_energy", "interval": "month"},
            {"name": "lighting", "quantity": "counter"},
            {"name": "oven"},  # not declared: detected at its first import
        ],
    }


def _local(s: str) -> str:
    return pd.Timestamp(s, tz=TZ).isoformat()


def _csv(rows: list[tuple[str, str, float, str]]) -> str:
    return "timestamp,channel,value,unit\n" + "".join(f"{t},{c},{v},{u}\n" for t, c, v, u in rows)


def _readings(session, c, name: str) -> pd.DataFrame:
    eq = next(e for e in c.equipment if e.name == name)
    df = read_readings(session, [eq.channel_id], c.start_at, c.end_at)
    return df.set_index(pd.DatetimeIndex(df["isp_start"]))


def _campaign(sessions, tmp_path: Path):
    store = SampleStore(tmp_path / "samples")
    with sessions.begin() as s:
        cp.create_campaign(s, _cfg(), "jaar.yaml")
    return sessions, store


@pytest.fixture
def campaign(sessions, tmp_path: Path):
    """The campaign on SQLite and PostgreSQL (bulk writes, replacements, the audit trail)."""
    return _campaign(sessions, tmp_path)


@pytest.fixture
def campaign_lite(tmp_path: Path):
    """The campaign on SQLite only, for rules that do not depend on the database."""
    engine = make_engine(f"sqlite:///{tmp_path / 'lite.db'}")
    upgrade(engine)
    yield _campaign(session_factory(engine), tmp_path)
    engine.dispose()


def test_daily_interval_energy_spread_over_local_days_dst_included(campaign) -> None:
    """48 kWh on 28 March (96 ISPs) -> 0.5 kWh each; 46 kWh on 29 March (the spring-forward day,
    92 ISPs) -> 0.5 kWh each, none at the missing hour; 50 kWh on 25 October (100 ISPs)."""
    sessions, store = campaign
    rows = [
        (_local("2026-03-28"), "hall", 48, "kWh"),
        (_local("2026-03-29"), "hall", 46, "kWh"),
        (_local("2026-10-25"), "hall", 50, "kWh"),
    ]
    with sessions.begin() as s:
        c = cp.get_campaign(s, "jaar-2026")
        assert cp.import_samples(s, store, c, Path("hall.csv"), _csv(rows)) == {"hall": 3}
        df = _readings(s, c, "hall")
        local_day = df.index.tz_convert(TZ).strftime("%Y-%m-%d")
        per_day = df.groupby(local_day)["energy_wh"].agg(["sum", "count", "min", "max"])
        assert per_day.loc["2026-03-28"].tolist() == [48_000, 96, 500, 500]
        assert per_day.loc["2026-03-29"].tolist() == pytest.approx([46_000, 92, 500, 500])
        assert per_day.loc["2026-10-25"].tolist() == pytest.approx([50_000, 100, 500, 500])
        assert (df["coverage"] == 1).all() and (df["sample_count"] == 0).all()
        assert cp.estimated_share(s, c)["hall"] == 1.0  # every ISP a share of a day
        # The pipeline leaves them alone (no samples of that channel), and the analyses read
        # them: load_series keeps them (coverage 1), the day totals hold.
        assert cp.aggregate(s, store, c, n_threads=1)["hall"] == 0
        series = cp.load_series(s, c)
        assert series.energy_wh["hall"].sum() == pytest.approx(144_000)
        # Re-importing the same file changes nothing and needs no --replace.
        assert cp.import_samples(s, store, c, Path("hall.csv"), _csv(rows)) == {"hall": 0}


def test_monthly_interval_energy_and_misaligned_periods(campaign_lite) -> None:
    """March 2026 has 31 * 96 - 4 = 2,972 ISPs, October 31 * 96 + 4 = 2,980, April 2,880."""
    sessions, store = campaign_lite
    rows = [
        (_local("2026-03-01"), "offices", 2972, "kWh"),
        (_local("2026-04-01"), "offices", 2880, "kWh"),
        (_local("2026-10-01"), "offices", 5960, "kWh"),
    ]
    with sessions.begin() as s:
        c = cp.get_campaign(s, "jaar-2026")
        cp.import_samples(s, store, c, Path("offices.csv"), _csv(rows))
        df = _readings(s, c, "offices")
        month = df.index.tz_convert(TZ).strftime("%Y-%m")
        per = df.groupby(month)["energy_wh"].agg(["sum", "count", "max"])
        assert per.loc["2026-03"].tolist() == pytest.approx([2_972_000, 2972, 1000])
        assert per.loc["2026-04"].tolist() == pytest.approx([2_880_000, 2880, 1000])
        assert per.loc["2026-10"].tolist() == pytest.approx([5_960_000, 2980, 2000])
        bad = [(_local("2026-05-02"), "offices", 10, "kWh")]
        with pytest.raises(ValidationError, match=r"line 2: .*is not the start of a local month"):
            cp.import_samples(s, store, c, Path("o.csv"), _csv(bad))
        past = [
            (_local("2026-12-01"), "offices", 10, "kWh"),
            (_local("2027-01-01"), "offices", 1, "kWh"),
        ]
        with pytest.raises(ValidationError, match="line 3: period outside the campaign"):
            cp.import_samples(s, store, c, Path("o.csv"), _csv(past))


def test_counter_with_day_long_gaps_is_spread_and_marked(campaign_lite) -> None:
    """Lighting read by hand at 08:00 on Monday to Friday: the weekday gaps (24 h) and the
    weekend (72 h) are spread uniformly over their ISPs, not dropped as before (> 2 h)."""
    sessions, store = campaign_lite
    days = pd.date_range("2026-06-01 08:00", "2026-06-12 08:00", freq="D", tz=TZ)
    days = days[days.day_of_week < 5]  # 1-5 June, 8-12 June: 10 readings
    kwh = 1000 + 96.0 * np.arange(len(days))  # 96 kWh between consecutive readings
    rows = [(t.isoformat(), "lighting", v, "kWh") for t, v in zip(days, kwh)]
    with sessions.begin() as s:
        c = cp.get_campaign(s, "jaar-2026")
        notes: list[str] = []
        cp.import_samples(s, store, c, Path("lighting.csv"), _csv(rows), notes=notes)
        assert any("9 gap(s) between counter readings" in n for n in notes)
        cp.aggregate(s, store, c, n_threads=1)
        df = _readings(s, c, "lighting")
        assert df["energy_wh"].sum() == pytest.approx(9 * 96_000)
        weekday = df.loc[_local("2026-06-02 08:00") : _local("2026-06-03 07:45"), "energy_wh"]
        assert len(weekday) == 96 and np.allclose(weekday, 1000.0)  # 96 kWh / 96 ISPs
        weekend = df.loc[_local("2026-06-06 08:00") : _local("2026-06-08 07:45"), "energy_wh"]
        assert len(weekend) == 192 and np.allclose(weekend, 96_000 / 288)  # Fri -> Mon
        # Readings inside a gap are estimated: 9 days of gaps, readings only at 08:00 ISPs.
        share = cp.estimated_share(s, c)["lighting"]
        assert share == pytest.approx((len(df) - 10) / len(df))
        gaps = cp.spread_gaps(s, c, "lighting")
        assert len(gaps) == 9 and gaps["energy_wh"].sum() == pytest.approx(9 * 96_000)
        assert gaps["start"].iloc[4] == pd.Timestamp("2026-06-05 08:00", tz=TZ)
        assert gaps["end"].iloc[4] == pd.Timestamp("2026-06-08 08:00", tz=TZ)


def test_mw_typo_refused_by_plausibility_and_nothing_changes(campaign_lite) -> None:
    sessions, store = campaign_lite
    t = [_local(f"2026-02-02 08:00:{i:02d}") for i in range(3)]
    with sessions.begin() as s:
        c = cp.get_campaign(s, "jaar-2026")
        good = _csv([(x, "compressor 1", 30, "kW") for x in t])
        cp.import_samples(s, store, c, Path("c.csv"), good)
        # The same export, its unit column typed as MW: 30 MW for a 55 kW compressor.
        typo = _csv([(x, "compressor 1", 30, "MW") for x in t])
        with pytest.raises(ValidationError) as exc:
            cp.import_samples(s, store, c, Path("typo.csv"), typo)
        msg = str(exc.value)
        assert exc.value.location == "line 2" and "typo.csv" in msg
        assert "power 30,000,000 W of 'compressor 1' is above its plausible maximum" in msg
        assert "165,000 W (3 x its rated power of 55 kW)" in msg and "3 value(s)" in msg
        # The incomer is bounded by the site's grid limit (400 kW x 1.5).
        with pytest.raises(ValidationError, match=r"600,000 W \(1.5 x the site's grid import"):
            cp.import_samples(s, store, c, Path("i.csv"), _csv([(t[0], "main incomer", 2, "MW")]))
        eq = next(e for e in c.equipment if e.name == "compressor 1")
        assert list(store.read(eq.channel_id).value) == [30_000.0] * 3
        day = [(_local("2026-02-02"), "hall", 48, "MWh")]  # 2 MW all day
        with pytest.raises(ValidationError, match="mean power 2,000,000 W of 'hall'"):
            cp.import_samples(s, store, c, Path("h.csv"), _csv(day))


def test_overlapping_upload_needs_replace_and_is_audited(campaign) -> None:
    sessions, store = campaign
    t = [_local(f"2026-02-02 08:00:{i:02d}") for i in range(4)]
    with sessions.begin() as s:
        c = cp.get_campaign(s, "jaar-2026")
        cp.import_samples(
            s, store, c, Path("a.csv"), _csv([(x, "compressor 1", 30, "kW") for x in t])
        )
        # A second export overlapping the first: two values differ, two are the same, one new.
        again = [
            (t[0], 30),
            (t[1], 31),
            (t[2], 32.5),
            (t[3], 30),
            (_local("2026-02-02 08:00:04"), 29),
        ]
        text = _csv([(x, "compressor 1", v, "kW") for x, v in again])
        with pytest.raises(ValidationError) as exc:
            cp.import_samples(s, store, c, Path("b.csv"), text, user="els")
        msg = str(exc.value)
        assert "would change 2 stored values (2 of 'compressor 1'" in msg
        assert f"compressor 1 at {t[1]}: 30000 -> 31000 W" in msg and "--replace" in msg
        eq = next(e for e in c.equipment if e.name == "compressor 1")
        assert list(store.read(eq.channel_id).value) == [30_000.0] * 4
        assert s.scalar(select(func.count()).select_from(ImportAuditRecord)) == 0
        written = cp.import_samples(s, store, c, Path("b.csv"), text, replace=True, user="els")
        assert written == {"compressor 1": 3}
        assert list(store.read(eq.channel_id).value) == [30_000, 31_000, 32_500, 30_000, 29_000]
        audit = cp.import_audit(s, c)
        assert audit[["old_value", "new_value"]].values.tolist() == [
            [30_000, 31_000],
            [30_000, 32_500],
        ]
        assert set(audit["source"]) == {"b.csv"} and set(audit["user"]) == {"els"}
        assert set(audit["kind"]) == {"samples"} and set(audit["unit"]) == {"W"}
        assert audit["ts"].iloc[0] == pd.Timestamp(t[1]).tz_convert("UTC")


def test_interval_energy_temperature_and_production_replacement(campaign) -> None:
    sessions, store = campaign
    with sessions.begin() as s:
        c = cp.get_campaign(s, "jaar-2026")
        day = _local("2026-03-02")
        cp.import_samples(s, store, c, Path("h1.csv"), _csv([(day, "hall", 48, "kWh")]))
        with pytest.raises(ValidationError, match="would change 1 stored values"):
            cp.import_samples(s, store, c, Path("h2.csv"), _csv([(day, "hall", 72, "kWh")]))
        cp.import_samples(
            s, store, c, Path("h2.csv"), _csv([(day, "hall", 72, "kWh")]), replace=True
        )
        assert _readings(s, c, "hall")["energy_wh"].sum() == pytest.approx(72_000)
        temp = f"timestamp;value;unit\n{_local('2026-03-02 12:00')};4,5;degC\n"
        assert cp.import_temperature(s, c, Path("t.csv"), temp) == 1
        assert cp.import_temperature(s, c, Path("t.csv"), temp) == 1  # the same: no change
        with pytest.raises(ValidationError, match=r"temperature at .*: 4.5 -> 5.5 degC"):
            cp.import_temperature(s, c, Path("t2.csv"), temp.replace("4,5", "5,5"))
        cp.import_temperature(s, c, Path("t2.csv"), temp.replace("4,5", "5,5"), replace=True)
        assert s.scalar(select(TemperatureReading.temp_c)) == 5.5
        prod = f"start,end,value,unit\n{_local('2026-03-02 06:00')},{_local('2026-03-02 22:00')},40,t\n"
        cp.import_production(s, c, Path("p.csv"), prod)
        with pytest.raises(ValidationError, match="production at"):
            cp.import_production(s, c, Path("p.csv"), prod.replace(",40,", ",44,"))
        audit = cp.import_audit(s, c)
        assert audit[["target", "old_value", "new_value"]].values.tolist() == [
            ["hall", 48_000, 72_000],
            ["temperature", 4.5, 5.5],
        ]


def test_detected_kinds_are_reported(campaign_lite) -> None:
    sessions, store = campaign_lite
    days = pd.date_range("2026-03-02", periods=4, freq="D", tz=TZ)
    rows = [(d.isoformat(), "oven", v, "kWh") for d, v in zip(days, [500, 520, 480, 510])]
    with sessions.begin() as s:
        c = cp.get_campaign(s, "jaar-2026")
        notes: list[str] = []
        cp.import_samples(s, store, c, Path("oven.csv"), _csv(rows), notes=notes)
        assert notes == [
            "oven: detected interval energy per day (kWh); declare quantity: interval_energy, "
            "interval: day to make it explicit"
        ]
        assert _readings(s, c, "oven")["energy_wh"].sum() == pytest.approx(2_010_000)
        # A declared power channel refuses energy units, naming the line.
        with pytest.raises(ValidationError, match="line 2: channel 'compressor 1' takes power"):
            cp.import_samples(
                s, store, c, Path("x.csv"), _csv([(rows[0][0], "compressor 1", 1, "kWh")])
            )


def test_billing_periods(campaign) -> None:
    sessions, _ = campaign
    bills = (
        "start;end;value;unit\n"
        f"{_local('2026-01-01')};{_local('2026-02-01')};61200,5;kWh\n"
        f"{_local('2026-02-01')};{_local('2026-03-01')};55100;kWh\n"
    )
    with sessions.begin() as s:
        c = cp.get_campaign(s, "jaar-2026")
        assert cp.import_billing(s, c, Path("bills.csv"), bills) == 2
        df = cp.billing_periods(s, c, "main incomer")
        assert list(df.columns) == ["start", "end", "kwh"]
        assert df["kwh"].tolist() == [61200.5, 55100.0]
        assert df["start"].iloc[1] == pd.Timestamp("2026-02-01", tz=TZ)
        assert cp.billing_periods(s, c).equals(df)  # the incomer by default
        with pytest.raises(ValidationError, match="would change 1 stored values"):
            cp.import_billing(s, c, Path("b2.csv"), bills.replace("55100", "56100"))
        # 1 GWh in February (672 h) is 1,488 kW on average: above 600 kW for this site.
        with pytest.raises(ValidationError, match="line 3: mean power 1,488,095 W"):
            cp.import_billing(s, c, Path("b3.csv"), bills.replace("55100;kWh", "1000000;kWh"))


def test_kit_example_files_accepted(campaign_lite) -> None:
    """The example exports shipped in meetkoffer/data/examples (semicolons, decimal commas)."""
    sessions, store = campaign_lite
    with sessions.begin() as s:
        c = cp.get_campaign(s, "jaar-2026")
        n = cp.import_samples(s, store, c, EXAMPLES / "meetkoffer_export.csv")
        assert n == {"main incomer": 4, "compressor 1": 3}
        assert cp.import_production(s, c, EXAMPLES / "productie.csv") == 2
        assert cp.import_temperature(s, c, EXAMPLES / "temperatuur.csv") == 3
        assert s.scalar(select(func.sum(TemperatureReading.temp_c))) == pytest.approx(
            4.5 + 5.25 - 0.5
        )


def test_cli_replace(settings_env, tmp_path: Path) -> None:
    import yaml

    from noaber.cli.meetkoffer import register

    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """Test root."""

    register(root)
    runner = CliRunner()
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(_cfg()))
    assert runner.invoke(root, ["meetkoffer", "create", str(tmp_path / "c.yaml")]).exit_code == 0
    f1, f2 = tmp_path / "a.csv", tmp_path / "b.csv"
    days = pd.date_range("2026-03-02", periods=3, freq="D", tz=TZ)
    f1.write_text(_csv([(d.isoformat(), "oven", v, "kWh") for d, v in zip(days, [500, 520, 480])]))
    f2.write_text(_csv([(days[0].isoformat(), "oven", 505, "kWh")]))
    r = runner.invoke(root, ["meetkoffer", "import", "jaar-2026", str(f1)])
    assert r.exit_code == 0, r.output
    assert "detected interval energy per day" in r.output and "oven: 3 new samples" in r.output
    r = runner.invoke(root, ["meetkoffer", "import", "jaar-2026", str(f2)])
    assert isinstance(r.exception, ValidationError) and "--replace" in str(r.exception)
    r = runner.invoke(root, ["meetkoffer", "import", "jaar-2026", str(f2), "--replace"])
    assert r.exit_code == 0, r.output
    with session_factory(make_engine(settings_env.sqlalchemy_url))() as s:
        assert s.scalar(select(func.count()).select_from(ImportAuditRecord)) == 1
        assert s.scalar(select(func.count()).select_from(IntervalReading)) == 3 * 96


DECLARATIONS = [
    ({"quantity": "interval_energy"}, "needs interval: one of 15min, hour, day", ".interval"),
    ({"quantity": "interval_energy", "interval": "week"}, "got 'week'", ".interval"),
    ({"quantity": "power", "interval": "day"}, "interval is only for", ""),
    ({"quantity": "kWh"}, "quantity must be one of power, energy, counter", ""),
    ({"rated_power_kw": -5}, "rated_power_kw must be > 0, got -5", ".rated_power_kw"),
]


def test_declarations_checked(campaign_lite) -> None:
    sessions, _ = campaign_lite
    for entry, message, where in DECLARATIONS:
        cfg = _cfg() | {"name": "other"}
        cfg["equipment"][2] = {"name": "hall", **entry}
        with pytest.raises(ValidationError, match=message) as exc, sessions.begin() as s:
            cp.create_campaign(s, cfg, "jaar.yaml")
        assert exc.value.location == "equipment[2]" + where
