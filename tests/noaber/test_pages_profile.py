"""The dashboard's profile chart on a DST day: the repeated hour is drawn after the first."""

import datetime as dt

import numpy as np
import pandas as pd

from energy.timegrid import local_day_isps
from noaber.api.routers.pages import profile_figure


def test_fall_back_day_is_monotone_with_local_labels():
    isps = local_day_isps(dt.date(2026, 10, 25))
    frame = pd.DataFrame(
        {"pv": np.zeros(len(isps)), "grid": np.arange(len(isps)) * 1000.0}, index=isps
    )
    fig = profile_figure(frame, "nl")
    x = pd.to_datetime(list(fig.data[0].x))
    assert len(x) == 100 and x.is_monotonic_increasing and x.is_unique
    hover = list(fig.data[1].customdata)
    assert hover.count("25-10-2026 02:00") == 2  # the repeated hour, labelled in local time
    assert list(fig.layout.xaxis.ticktext) == ["25-10"]
    assert list(fig.data[1].y)[:2] == [0.0, 1.0]
