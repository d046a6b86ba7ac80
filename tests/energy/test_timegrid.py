import datetime as dt

import pandas as pd
import pytest

from energy.timegrid import (
    ISP_NS,
    Interval,
    isp_range,
    isps_in_local_day,
    local_day_isps,
    local_period_bounds,
    to_local,
)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (dt.date(2026, 3, 29), 92),  # last Sunday of March: spring forward
        (dt.date(2026, 10, 25), 100),  # last Sunday of October: fall back
        (dt.date(2026, 10, 24), 96),
        (dt.date(2025, 3, 30), 92),
        (dt.date(2025, 10, 26), 100),
    ],
)
def test_dst_days_have_92_and_100_isps(day, expected):
    isps = local_day_isps(day)
    assert len(isps) == expected == isps_in_local_day(day)
    assert (isps.asi8 % ISP_NS == 0).all()
    assert str(isps.tz) == "UTC"
    local = to_local(isps)
    assert local[0].hour == 0 and local[0].minute == 0 and local[0].date() == day
    assert (local[-1] + pd.Timedelta(minutes=15)).date() == day + dt.timedelta(days=1)


def test_fall_back_day_shows_the_repeated_hour_twice():
    local = to_local(local_day_isps(dt.date(2026, 10, 25)))
    two_am = [t for t in local if t.hour == 2]
    assert len(two_am) == 8  # 02:00-03:00 occurs twice


def test_month_bounds_are_local_and_half_open():
    oct_ = local_period_bounds("2026-10")
    assert oct_.start == dt.datetime(2026, 9, 30, 22, tzinfo=dt.UTC)
    assert oct_.end == dt.datetime(2026, 10, 31, 23, tzinfo=dt.UTC)
    assert oct_.end not in oct_ and oct_.start in oct_
    assert len(isp_range(oct_.start, oct_.end)) == 31 * 96 + 4


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="not on the 15-minute ISP grid"):
        isp_range("2026-01-01T00:05:00Z", "2026-01-01T01:00:00Z")
    with pytest.raises(ValueError, match="no timezone"):
        isp_range("2026-01-01T00:00:00", "2026-01-01T01:00:00Z")
    with pytest.raises(ValueError, match="YYYY-MM"):
        local_period_bounds("October")
    with pytest.raises(ValueError, match="timezone-aware"):
        Interval(dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2))
