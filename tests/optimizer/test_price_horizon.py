"""A horizon the prices can carry (issue 11, point 6): known prices, then the last week's shape.

The day-ahead auction publishes tomorrow's prices around 12:45 local; a 24 h MPC at 06:00
reaches into tomorrow and used to fail for the missing prices. The prices here are made so
that every local time of week has its own value (``price(local time)`` below), so a test can
say by hand which price a fallback step must carry.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from energy.errors import ValidationError
from energy.prices import day_ahead_known_until, fill_unknown_prices
from energy.timegrid import local_day_isps

TZ = "Europe/Amsterdam"


def _local(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_convert("UTC")


def price_of(index: pd.DatetimeIndex) -> np.ndarray:
    """A distinct price per local time of week and per week: ``week + weekday/10 + hour/1000 +
    minute/100000`` [EUR/kWh] (the week number lets a test see which week a price came from)."""
    local = index.tz_convert(TZ)
    week = np.asarray(local.isocalendar().week, float)
    return week + local.weekday / 10 + local.hour / 1000 + local.minute / 100_000


def known_until_end_of(day: dt.date, weeks: int = 3) -> pd.Series:
    end = local_day_isps(day, TZ)[-1] + pd.Timedelta(minutes=15)
    index = pd.date_range(end - pd.Timedelta(weeks=weeks), end, freq="15min", inclusive="left")
    return pd.Series(price_of(index), index=index.as_unit("ns"))


def test_day_ahead_prices_are_known_until_tomorrow_only_after_publication() -> None:
    # Saturday 24 October 2026; Sunday 25 October has 25 hours (CEST -> CET)
    assert day_ahead_known_until(_local("2026-10-24T06:00:00+02:00"), TZ) == _local(
        "2026-10-25T00:00:00+02:00"
    )
    assert day_ahead_known_until(_local("2026-10-24T12:45:00+02:00"), TZ) == _local(
        "2026-10-26T00:00:00+01:00"
    )  # the whole 25-hour Sunday: 100 ISPs
    # Saturday 28 March 2026; Sunday 29 March has 23 hours (CET -> CEST)
    assert day_ahead_known_until(_local("2026-03-28T13:00:00+01:00"), TZ) == _local(
        "2026-03-30T00:00:00+02:00"
    )


def test_a_24h_horizon_at_0600_before_publication_falls_back_on_last_week() -> None:
    now = _local("2026-06-16T06:00:00+02:00")  # a Tuesday
    known = known_until_end_of(dt.date(2026, 6, 16))
    index = pd.date_range(now, periods=96, freq="15min")
    got = fill_unknown_prices(known, index, TZ, name="epex")
    today = index < _local("2026-06-17T00:00:00+02:00")
    assert got.known.tolist() == today.tolist()
    assert got.values[today] == pytest.approx(price_of(index[today]))
    # tomorrow (Wednesday) at each local time: last Wednesday's price at that time
    tomorrow = index[~today]
    assert got.values[~today] == pytest.approx(price_of(tomorrow - pd.Timedelta(days=7)))
    assert got.fallback is not None
    assert got.fallback.startswith("epex: prices known until 17-06-2026 00:00")
    assert "24 step(s) from 1 week(s) before" in got.fallback  # 00:00 .. 06:00 tomorrow


def test_the_25_hour_day_is_not_cut() -> None:
    day = dt.date(2026, 10, 25)
    isps = local_day_isps(day, TZ)
    assert len(isps) == 100
    known = known_until_end_of(dt.date(2026, 10, 24))  # before publication on Saturday
    got = fill_unknown_prices(known, isps, TZ)
    assert len(got.values) == 100 and np.isfinite(got.values).all()
    assert not got.known.any()
    local = isps.tz_convert(TZ)
    # both 02:xx hours (CEST, then CET) take last Sunday's 02:xx price
    twice = np.flatnonzero(local.hour == 2)
    assert len(twice) == 8
    week_before = price_of(pd.DatetimeIndex([_local("2026-10-18T02:00:00+02:00")]))[0]
    assert got.values[twice[0]] == pytest.approx(week_before)
    assert got.values[twice[4]] == pytest.approx(week_before)
    # the evening stays the evening: 18:00 local (17:00 UTC in CET) from 18:00 a week before
    six = int(np.flatnonzero((local.hour == 18) & (local.minute == 0))[0])
    assert got.values[six] == pytest.approx(
        price_of(pd.DatetimeIndex([_local("2026-10-18T18:00:00+02:00")]))[0]
    )


def test_the_23_hour_day_and_the_week_after_it() -> None:
    isps = local_day_isps(dt.date(2026, 3, 29), TZ)
    assert len(isps) == 92
    got = fill_unknown_prices(known_until_end_of(dt.date(2026, 3, 28)), isps, TZ)
    assert len(got.values) == 92 and np.isfinite(got.values).all()
    # a week after the 23-hour day, 02:30 local did not exist a week before: shifted forward
    after = local_day_isps(dt.date(2026, 4, 5), TZ)
    known = known_until_end_of(dt.date(2026, 4, 4))
    got = fill_unknown_prices(known, after, TZ)
    local = after.tz_convert(TZ)
    i = int(np.flatnonzero((local.hour == 2) & (local.minute == 30))[0])
    assert got.values[i] == pytest.approx(
        price_of(pd.DatetimeIndex([_local("2026-03-29T03:00:00+02:00")]))[0]
    )


def test_prices_after_publication_time_are_not_seen_early() -> None:
    """A replay holding the whole month must not use tomorrow's prices at 06:00."""
    now = _local("2026-06-16T06:00:00+02:00")
    known = known_until_end_of(dt.date(2026, 6, 20))
    index = pd.date_range(now, periods=96, freq="15min")
    got = fill_unknown_prices(known, index, TZ, known_until=day_ahead_known_until(now, TZ))
    assert int(got.known.sum()) == 72  # 06:00 .. 24:00
    assert got.values[~got.known] == pytest.approx(
        price_of(index[~got.known] - pd.Timedelta(days=7))
    )


def test_no_history_to_fall_back_on_is_an_error_naming_the_step() -> None:
    known = known_until_end_of(dt.date(2026, 6, 16), weeks=1)  # 10..16 June
    index = pd.date_range(_local("2026-06-16T00:00:00+02:00"), periods=96 * 30, freq="15min")
    # 15 July 00:00 local is the first step 1..4 weeks after nothing known (17 June onwards)
    with pytest.raises(ValidationError, match=r"no price for 2026-07-14T22:00:00\+00:00"):
        fill_unknown_prices(known, index, TZ, name="epex")
