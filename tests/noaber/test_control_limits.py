"""One source of limits in planning: ``noaber optimize run`` and ``plan_site`` plan each asset
within what the gateway's safe writer lets through (the profile's setpoint range and the site
file's ``devices[].limits``, read back from the store), the same limits ``noaber control run``
derives from the site file (SQLite + PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from energy.errors import ValidationError
from energy.models import Channel, Device
from energy.readings import upsert_readings
from energy.siteconfig import import_site_file
from modbus_gateway.config import load_config
from noaber.services.control import site_wiring, stored_writer_limits, writer_limits
from noaber.services.siteplans import plan_site
from optimizer.store import ScheduleStep

DEMO = (
    Path(__file__).resolve().parents[2] / "noaber" / "services" / "demo" / "data" / "demo_site.yaml"
)
SITE = "dorpshuis-noaberhof"
START = pd.Timestamp("2026-06-15T00:00+02:00").tz_convert("UTC")
GX = "{name: battery-gx, profile: victron_gx, host: 127.0.0.1, port: 15022, unit_id: 100, poll_interval_s: 2"


def _site_file(tmp_path: Path, limits: str | None) -> Path:
    text = DEMO.read_text(encoding="utf-8")
    assert GX in text
    if limits is not None:
        text = text.replace(GX, f"{GX}, limits: {limits}")
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _history(sessions) -> None:
    hist = pd.date_range(START - pd.Timedelta(days=7), START, freq="15min", inclusive="left")
    local = hist.tz_convert("Europe/Amsterdam")
    w = np.asarray(4000.0 + 20000.0 * ((local.hour >= 18) & (local.hour < 22)), float)
    frame = pd.DataFrame(
        {"energy_wh": w / 4, "power_mean_w": w, "sample_count": 900, "coverage": 1.0},
        index=hist.as_unit("ns"),
    )
    with sessions() as s, s.begin():
        ch = {c.key: c.id for c in s.scalars(select(Channel))}
        upsert_readings(s, ch[f"{SITE}/building/power"], frame)


def _prices(tmp_path: Path) -> Path:
    idx = pd.date_range(START, periods=96, freq="15min")
    hour = idx.tz_convert("Europe/Amsterdam").hour
    price = 0.20 + 0.25 * ((hour >= 18) & (hour < 22))  # a reason to use the whole battery
    path = tmp_path / "prices.csv"
    pd.DataFrame(
        {"timestamp": [t.isoformat() for t in idx], "import_price_eur_per_kwh": price,
         "export_price_eur_per_kwh": price - 0.15}
    ).to_csv(path, index=False)  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("limits", "bound_kw"),
    [("{power_w_min: -4000, power_w_max: 4000}", 4.0), (None, 10.0)],  # site; else the profile
)
def test_the_plan_stays_within_the_writer_limits(sessions, tmp_path, limits, bound_kw) -> None:
    site_file = _site_file(tmp_path, limits)
    import_site_file(site_file, sessions)
    _history(sessions)
    with sessions() as s:
        stored = stored_writer_limits(s, SITE)
        # the same numbers as control run takes from the site file through the gateway config
        cfg = load_config(site_file)
        from_file = writer_limits(cfg, site_wiring(s, cfg).power_devices)
    key = lambda lims: sorted((w.asset, w.device, w.power_w_min, w.power_w_max) for w in lims)  # noqa: E731
    assert key(stored) == key(from_file)
    battery = [w for w in stored if w.asset == "battery"]
    assert [(w.power_w_min, w.power_w_max) for w in battery] == [
        (-1000 * bound_kw, 1000 * bound_kw)
    ]
    with sessions() as s, s.begin():
        sid = plan_site(s, SITE, START, 24, _prices(tmp_path))
    with sessions() as s:
        steps = s.scalars(
            select(ScheduleStep).where(
                ScheduleStep.schedule_id == sid, ScheduleStep.asset == "battery"
            )
        ).all()
    power = np.array([r.power_kw for r in steps])
    assert len(power) == 96
    # rated 30 kW, planned within the writer's bound, and using it (the evening pays)
    assert np.abs(power).max() <= bound_kw + 1e-6
    assert np.abs(power).max() >= bound_kw - 1e-3


def test_a_malformed_stored_limit_names_the_device(sessions, tmp_path) -> None:
    import_site_file(_site_file(tmp_path, "{power_w_min: -4000, power_w_max: 4000}"), sessions)
    with sessions() as s, s.begin():
        dev = s.scalars(select(Device).where(Device.name == "battery-gx")).one()
        dev.params = {**dev.params, "limits": {"power_w_max": "lots"}}
    with sessions() as s, pytest.raises(ValidationError, match=r"battery-gx.*limits"):
        stored_writer_limits(s, SITE)
