"""The root ``noaber`` commands: ``db upgrade``, ``intervals update``, one-line settings errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from energy.db import make_engine, session_factory
from energy.models import Channel, IntervalReading
from energy.samples import SampleStore
from tests.noaber.test_cli_core import _noaber

DEMO_SITE = Path(__file__).parents[2] / "noaber" / "services" / "demo" / "data" / "demo_site.yaml"


def test_deployment_without_secret_is_one_line_error(tmp_path: Path) -> None:
    out = _noaber(tmp_path, "db", "upgrade", NOABER_MODE="production")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "NOABER_SECRET_KEY must be set" in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 2  # one line (rich may wrap once)


@pytest.mark.slow
def test_intervals_update_turns_samples_into_isps(tmp_path: Path) -> None:
    assert _noaber(tmp_path, "site", "import", str(DEMO_SITE)).returncode == 0
    url = f"sqlite:///{(tmp_path / 'data' / 'noaber.db').resolve()}"
    sessions = session_factory(make_engine(url))
    with sessions() as s:
        cid = s.scalar(select(Channel.id).where(Channel.key == "dorpshuis-noaberhof/pv/power"))
    t0 = pd.Timestamp("2026-10-25T00:00:00Z").value
    ts = t0 + np.arange(3600) * 1_000_000_000  # one hour at 1 s, on the fall-back day
    SampleStore(tmp_path / "data" / "samples").append(cid, ts, np.full(ts.size, -2000.0))
    out = _noaber(tmp_path, "intervals", "update")
    assert out.returncode == 0, out.stderr
    with sessions() as s:
        rows = s.scalars(select(IntervalReading).where(IntervalReading.channel_id == cid)).all()
    assert len(rows) == 4
    # -2 kW for 15 minutes is -500 Wh per ISP (the last ISP ends at the last sample)
    np.testing.assert_allclose([r.energy_wh for r in rows[:3]], -500.0)
    again = _noaber(tmp_path, "intervals", "update")
    assert again.returncode == 0 and "0 interval readings written" in again.stdout
