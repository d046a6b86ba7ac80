"""The kernels' time grid: fixed UTC buckets and local calendar buckets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from energy.kernels import fixed_edges, local_calendar_edges, power_to_buckets, utc_bucket_starts
from energy.kernels.calendar import check_edges
from energy.timegrid import ISP_NS, isps_in_local_day

S = 1_000_000_000
DAY = 86_400 * S


@pytest.mark.parametrize("bucket_ns", [S, 60 * S, ISP_NS, 3600 * S, DAY])
def test_fixed_buckets_align_to_utc(bucket_ns):
    t0 = pd.Timestamp("2026-10-25T00:59:59.5Z").value
    edges = fixed_edges(t0, t0 + 3 * bucket_ns, bucket_ns)
    assert (edges % bucket_ns == 0).all()
    assert edges[0] <= t0 < edges[1] and len(edges) in (4, 5)


def test_bucket_width_limits_and_origin():
    for bad in (S - 1, DAY + 1, S + 0.5):
        with pytest.raises(ValueError, match="bucket_ns"):
            fixed_edges(0, 1, bad)
    edges = fixed_edges(10 * S, 70 * S, 60 * S, origin_ns=5 * S)
    assert edges.tolist() == [5 * S, 65 * S, 125 * S]
    assert utc_bucket_starts(0, 2 * ISP_NS, ISP_NS).tolist() == [0, ISP_NS]
    assert utc_bucket_starts(0, 0, ISP_NS).size == 0
    res = power_to_buckets(np.array([10 * S, 70 * S]), np.ones(2), 60 * S, origin_ns=5 * S)
    assert res.start_ns.tolist() == [5 * S, 65 * S]


@pytest.mark.parametrize("day", ["2026-03-29", "2026-10-25", "2026-06-15"])
def test_local_days_match_the_isp_count_of_the_core_time_grid(day):
    start = pd.Timestamp(day, tz="Europe/Amsterdam").as_unit("ns").value
    edges = local_calendar_edges(start, start + 1, "day")
    assert len(edges) == 2
    assert (edges[1] - edges[0]) // ISP_NS == isps_in_local_day(pd.Timestamp(day).date())


def test_dst_week_starts_monday_and_has_169_hours():
    mid = pd.Timestamp("2026-10-22T12:00", tz="Europe/Amsterdam").as_unit("ns").value
    edges = local_calendar_edges(mid, mid + 1, "week")
    local = pd.to_datetime(edges, utc=True).tz_convert("Europe/Amsterdam")
    assert [t.day_name() for t in local] == ["Monday", "Monday"]
    assert (edges[1] - edges[0]) // (3600 * S) == 169
    days = local_calendar_edges(int(edges[0]), int(edges[1]), "day")
    assert len(days) == 8 and sorted(np.diff(days) // (3600 * S)) == [24] * 6 + [25]


def test_calendar_and_edge_validation():
    with pytest.raises(ValueError, match="unit"):
        local_calendar_edges(0, 1, "fortnight")
    with pytest.raises(ValueError, match="after"):
        local_calendar_edges(5, 5, "day")
    with pytest.raises(ValueError, match="increase strictly"):
        check_edges(np.array([0, 5, 5]))
    with pytest.raises(ValueError, match="at least 2"):
        check_edges(np.array([0]))
