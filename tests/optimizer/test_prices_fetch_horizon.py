"""The plan's price horizon follows publication: a day fetched from ENTSO-E (recorded answer)
gives its steps their fetched prices, the steps beyond take last week's shape, and the
scenario's meta and the plan summary say which steps are which (SQLite + PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import select

from energy.models import Channel
from energy.prices import parse_day_ahead_xml, store_new_prices
from energy.readings import upsert_readings
from energy.siteconfig import import_site_file
from optimizer.model import plan
from optimizer.report import compare
from optimizer.sitestore import scenario_from_store

ROOT = Path(__file__).resolve().parents[2]
SITE_FILE = ROOT / "noaber" / "services" / "demo" / "data" / "demo_site.yaml"
ANSWER = ROOT / "tests" / "data" / "entsoe" / "nl-2026-12-03-pt15m.xml"
SITE = "dorpshuis-noaberhof"


def test_fetched_day_is_known_and_the_rest_is_the_stated_fallback(sessions):
    import_site_file(SITE_FILE, sessions)
    day = parse_day_ahead_xml(ANSWER.read_text(encoding="utf-8"), "NL", dt.date(2026, 12, 3))
    start = pd.Timestamp("2026-12-03T12:00+01:00").tz_convert("UTC")
    hist = pd.date_range(start - pd.Timedelta(days=14), start, freq="15min", inclusive="left")
    week_before = day.prices.copy()
    week_before.index = week_before.index - pd.Timedelta(days=6)  # 27-11-2026 (local day after)
    with sessions.begin() as s:
        ch = {c.key: c.id for c in s.scalars(select(Channel))}
        frame = pd.DataFrame(
            {"energy_wh": 1500.0, "power_mean_w": 6000.0, "sample_count": 900, "coverage": 1.0},
            index=hist,
        )
        upsert_readings(s, ch[f"{SITE}/building/power"], frame)
        store_new_prices(s, "da", week_before)  # what an earlier fetch left: 27-11
        store_new_prices(s, "da", day.prices)  # today's fetch: 03-12, published yesterday
    with sessions() as s:
        sc = scenario_from_store(s, SITE, start, 24, price_series=("da", "da"))
    meta = {m["series"]: m for m in sc.meta["price_horizon"]}["da"]
    # 12:00-24:00 local is fetched (48 steps); 04-12 00:00-12:00 is not published yet
    assert (meta["known_steps"], meta["fallback_steps"]) == (48, 48)
    assert meta["known_until"] == "2026-12-03T23:00:00+00:00"
    got = sc.series["import_price_eur_per_kwh"].to_numpy()
    fetched = day.prices[day.prices.index >= start].astype(float).to_numpy()
    assert np.allclose(got[:48], fetched)
    # the fallback is the same local time one week before 04-12: 27-11, i.e. day's 00:00-12:00
    assert np.allclose(got[48:], day.prices.astype(float).to_numpy()[:48])
    assert "1 week(s) before" in sc.meta["price_fallback"][0]
    summary = compare(sc, plan(sc), values=False)
    assert summary["price_horizon"][0]["fallback_steps"] == 48
