"""Scenarios from the store: the demo site, its load history and SoC readings (SQLite + PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from energy.errors import NotFoundError
from energy.models import Channel
from energy.readings import upsert_readings
from energy.siteconfig import import_site_file
from optimizer.model import plan
from optimizer.sitestore import measured_soc_pct, scenario_from_store

SITE_FILE = (
    Path(__file__).resolve().parents[2] / "noaber" / "services" / "demo" / "data" / "demo_site.yaml"
)
START = pd.Timestamp("2026-06-15T00:00+02:00").tz_convert("UTC")


def _readings(index: pd.DatetimeIndex, mean_w: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {"energy_wh": mean_w / 4, "power_mean_w": mean_w, "sample_count": 900, "coverage": 1.0},
        index=index,
    )


@pytest.fixture
def demo_site(sessions) -> None:
    import_site_file(SITE_FILE, sessions)
    hist = pd.date_range(
        START - pd.Timedelta(days=14), START, freq="15min", inclusive="left"
    ).as_unit("ns")
    local = hist.tz_convert("Europe/Amsterdam")
    load_w = 5000.0 + 12000.0 * ((local.hour >= 18) & (local.hour < 22))
    with sessions() as s, s.begin():
        ch = {c.key: c.id for c in s.scalars(select(Channel))}
        upsert_readings(
            s, ch["dorpshuis-noaberhof/building/power"], _readings(hist, np.asarray(load_w, float))
        )
        upsert_readings(
            s,
            ch["dorpshuis-noaberhof/battery/soc"],
            _readings(hist[-4:], np.array([60.0, 61, 62, 63])),
        )
        upsert_readings(
            s, ch["dorpshuis-noaberhof/ev-1/soc"], _readings(hist[-2:], np.array([47.0, 48.0]))
        )


def test_scenario_from_store_plans_the_demo_site(sessions, demo_site, tmp_path: Path) -> None:
    idx = pd.date_range(START, periods=96, freq="15min")
    local = idx.tz_convert("Europe/Amsterdam")
    price = (
        0.25
        + 0.12 * ((local.hour >= 17) & (local.hour < 21))
        - 0.12 * ((local.hour >= 11) & (local.hour < 15))
    )
    pd.DataFrame(
        {
            "timestamp": [t.isoformat() for t in idx],
            "import_price_eur_per_kwh": price,
            "export_price_eur_per_kwh": price - 0.13,
        }
    ).to_csv(tmp_path / "prices.csv", index=False)
    ev_sessions = {
        "ev-1": [
            {
                "arrival": "2026-06-15T09:00:00+02:00",
                "departure": "2026-06-15T22:00:00+02:00",
                "soc_arrival_pct": 48,
                "soc_departure_pct": 80,
            }
        ]
    }
    with sessions() as s:
        assert measured_soc_pct(s, "dorpshuis-noaberhof") == {"battery": 63.0, "ev-1": 48.0}
        sc = scenario_from_store(
            s,
            "dorpshuis-noaberhof",
            START,
            24,
            tmp_path / "prices.csv",
            ev_sessions,
            cloud_factor=0.9,
        )
        with pytest.raises(NotFoundError, match="site 'nowhere' does not exist"):
            scenario_from_store(s, "nowhere", START, 24, tmp_path / "prices.csv")
    assert sc.battery is not None and sc.battery.capacity_kwh == 60
    assert [e.name for e in sc.evs] == ["ev-1", "ev-2", "ev-3"]
    assert sc.evs[0].owner == "m-4c1e7a" and sc.evs[0].v2g
    assert sc.series["load_kw"].max() == pytest.approx(17.0) and sc.series[
        "load_kw"
    ].min() == pytest.approx(5.0)
    assert sc.series["pv_kw"].max() > 10
    result = plan(sc)
    assert result.flows["ev:ev-1:soc_pct"].dropna().iloc[-1] >= 80 - 1e-6
    assert (result.flows["grid_import_kw"] <= 40 + 1e-6).all()


def test_cli_run_plans_sends_dry_run_setpoints_and_stores(settings_env, tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from energy.db import make_engine, session_factory, upgrade
    from noaber.cli.optimize import register
    from optimizer.store import latest_schedule

    engine = make_engine(settings_env.sqlalchemy_url)
    upgrade(engine)
    factory = session_factory(engine)
    import_site_file(SITE_FILE, factory)
    now = pd.Timestamp.now(tz="UTC").floor("15min")
    hist = pd.date_range(now - pd.Timedelta(days=7), now, freq="15min", inclusive="left").as_unit(
        "ns"
    )
    with factory() as s, s.begin():
        ch = {c.key: c.id for c in s.scalars(select(Channel))}
        upsert_readings(
            s, ch["dorpshuis-noaberhof/building/power"], _readings(hist, np.full(len(hist), 6000.0))
        )
        upsert_readings(
            s, ch["dorpshuis-noaberhof/battery/soc"], _readings(hist[-1:], np.array([55.0]))
        )
    idx = pd.date_range(now, periods=24 * 4 + 8, freq="15min")
    pd.DataFrame(
        {
            "timestamp": [t.isoformat() for t in idx],
            "import_price_eur_per_kwh": 0.2 + 0.1 * (np.arange(len(idx)) % 8 < 4),
            "export_price_eur_per_kwh": 0.05,
        }
    ).to_csv(tmp_path / "prices.csv", index=False)
    root = typer.Typer()

    @root.command("version")
    def _version() -> None:
        pass

    register(root)
    res = CliRunner().invoke(
        root,
        [
            "optimize",
            "run",
            "--site",
            "dorpshuis-noaberhof",
            "--prices",
            str(tmp_path / "prices.csv"),
            "--steps",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "planned, setpoints battery" in res.output and "stored as schedule" in res.output
    # the same prices as stored series instead of a CSV
    from energy.prices import store_prices

    with factory() as s, s.begin():
        store_prices(s, "imp", pd.Series(0.2 + 0.1 * (np.arange(len(idx)) % 8 < 4), index=idx))
        store_prices(s, "exp", pd.Series(0.05, index=idx))
    args = ["optimize", "run", "--site", "dorpshuis-noaberhof", "--steps", "1"]
    res = CliRunner().invoke(root, [*args, "--price-series", "imp,exp"])
    assert res.exit_code == 0, res.output
    assert "planned, setpoints battery" in res.output
    res = CliRunner().invoke(root, args)
    assert res.exit_code != 0 and "exactly one of --prices" in str(res.exception or res.output)
    with factory() as s:
        sched = latest_schedule(s, "dorpshuis-noaberhof")
        assert sched is not None and sched.start == now.to_pydatetime()
    bad = CliRunner().invoke(
        root, ["optimize", "run", "--site", "nowhere", "--prices", str(tmp_path / "prices.csv")]
    )
    assert bad.exit_code != 0 and "site 'nowhere' does not exist" in str(bad.exception)
    engine.dispose()


def test_prices_from_stored_series(sessions, demo_site) -> None:
    from energy.errors import ValidationError
    from energy.prices import store_prices

    idx = pd.date_range(START, periods=96, freq="15min").as_unit("ns")
    buy = pd.Series(np.where(np.arange(96) < 48, 0.30, 0.10), index=idx)
    with sessions() as s, s.begin():
        store_prices(s, "noaberhof-import", buy)
        store_prices(s, "noaberhof-export", buy - 0.12)
    with sessions() as s:
        sc = scenario_from_store(
            s,
            "dorpshuis-noaberhof",
            START,
            24,
            price_series=("noaberhof-import", "noaberhof-export"),
        )
        np.testing.assert_allclose(sc.series["import_price_eur_per_kwh"], buy.to_numpy())
        np.testing.assert_allclose(sc.series["export_price_eur_per_kwh"], buy.to_numpy() - 0.12)
        # one day of prices and no week before it to fall back on: the first step is named
        with pytest.raises(
            ValidationError,
            match=r"no price for 2026-06-15T22:00:00\+00:00 and none at the same local time "
            r"in the 4 weeks before to fall back on \(96 of 192 steps\)",
        ):
            scenario_from_store(
                s,
                "dorpshuis-noaberhof",
                START,
                48,
                price_series=("noaberhof-import", "noaberhof-export"),
            )
        with pytest.raises(ValidationError, match="give prices"):
            scenario_from_store(s, "dorpshuis-noaberhof", START, 24)


def test_a_plan_at_0600_before_the_day_ahead_publication(sessions, demo_site) -> None:
    """The stored day-ahead prices end at midnight (tomorrow's are published at 12:45): a 24 h
    scenario at 06:00 plans on them and on last week's shape beyond, and says so."""
    from energy.prices import store_prices

    now = START + pd.Timedelta(hours=6)  # 06:00 local on 15 June
    midnight = START + pd.Timedelta(days=1)
    hist = pd.date_range(midnight - pd.Timedelta(days=14), midnight, freq="15min", inclusive="left")
    local = hist.tz_convert("Europe/Amsterdam")
    price = 0.20 + 0.15 * ((local.hour >= 17) & (local.hour < 21))
    with sessions() as s, s.begin():
        store_prices(s, "da-import", pd.Series(price, index=hist))
        store_prices(s, "da-export", pd.Series(price - 0.12, index=hist))
    with sessions() as s:
        sc = scenario_from_store(
            s, "dorpshuis-noaberhof", now, 24, price_series=("da-import", "da-export")
        )
    assert len(sc.series) == 96
    [imp_note, exp_note] = sc.meta["price_fallback"]
    assert imp_note.startswith("da-import: prices known until 16-06-2026 00:00")
    assert exp_note.startswith("da-export: prices known until 16-06-2026 00:00")
    # 00:00-06:00 tomorrow: last week's night price, not a failure
    assert sc.series["import_price_eur_per_kwh"].iloc[-24:].tolist() == pytest.approx([0.20] * 24)
    assert plan(sc).status == "optimal"
