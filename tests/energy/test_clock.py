"""The clock: local wall-clock time of day in the site's zone, across DST changes."""

import datetime as dt

from energy.clock import local_time_of_day_s


def test_local_time_of_day_follows_the_wall_clock_of_the_zone():
    utc = dt.UTC
    # winter: CET is UTC+1
    assert local_time_of_day_s(now=dt.datetime(2026, 12, 1, 23, 25, tzinfo=utc)) == 25 * 60
    # the spring-forward day: 01:00 UTC is 03:00 CEST (02:00-03:00 local does not exist)
    assert local_time_of_day_s(now=dt.datetime(2026, 3, 29, 1, 0, tzinfo=utc)) == 3 * 3600
    # summer: 10:00 UTC is 12:00 CEST
    assert local_time_of_day_s(now=dt.datetime(2026, 7, 1, 10, 0, tzinfo=utc)) == 12 * 3600
    assert local_time_of_day_s("UTC", dt.datetime(2026, 7, 1, 10, 0, tzinfo=utc)) == 10 * 3600
