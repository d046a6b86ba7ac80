"""A stored campaign built from the synthetic plant: raw samples, production, temperature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from energy.samples import SampleStore
from meetkoffer import campaign as cp
from tests.meetkoffer.synth import TZ, make_plant

DATA = Path(__file__).parents[1] / "data" / "meetkoffer"
STEP_AT = "2026-03-16"
STEP_KW = 25.0


def raw_samples(energy_wh: pd.Series, step_s: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """1/step_s Hz power samples [W] holding each ISP's mean power."""
    per = 900 // step_s
    ts = energy_wh.index.as_unit("ns").asi8
    ts = (ts[:, None] + np.arange(per)[None, :] * step_s * 10**9).ravel()
    return ts, np.repeat(energy_wh.to_numpy() * 4.0, per)


def build(session, store: SampleStore, step_s: int = 60):
    cfg = yaml.safe_load((DATA / "campaign.yaml").read_text())
    c = cp.create_campaign(session, cfg, "campaign.yaml")
    plant = make_plant(start="2026-03-02", days=28, step_kw=STEP_KW, step_at=STEP_AT)
    ids = {e.name: e.channel_id for e in c.equipment}
    for name, s in (
        ("main incomer", plant.incomer_wh),
        ("extruder line 2", plant.extruder_wh),
        ("compressor 1", plant.compressor_wh),
    ):
        ts, p = raw_samples(s, step_s)
        store.append(ids[name], ts, p)
    # Lighting arrives as a kWh counter export, every 5 minutes (on the ISP grid).
    light = plant.lighting_wh
    counter_kwh = np.concatenate(([0.0], np.cumsum(light.to_numpy()))) / 1000.0
    times = [*light.index, light.index[-1] + pd.Timedelta(minutes=15)]
    rows = ["timestamp,channel,value,unit"]
    for t, v in zip(times, counter_kwh):
        rows.append(f"{t.tz_convert(TZ).isoformat()},lighting,{v:.6f},kWh")
    cp.import_samples(session, store, c, Path("lighting.csv"), text="\n".join(rows[:-1]) + "\n")
    prod_rows = ["start,end,value,unit"]
    for day, units in plant.production_per_day.items():
        if units > 0:
            s = day.tz_convert(TZ) + pd.Timedelta(hours=6)
            prod_rows.append(
                f"{s.isoformat()},{(s + pd.Timedelta(hours=16)).isoformat()},{units:.3f},t"
            )
    cp.import_production(session, c, Path("production.csv"), text="\n".join(prod_rows) + "\n")
    temp_rows = ["timestamp,value,unit"] + [
        f"{(d + pd.Timedelta(hours=12)).isoformat()},{v:.2f},degC"
        for d, v in plant.temp_c_per_day.items()
    ]
    cp.import_temperature(session, c, Path("temp.csv"), text="\n".join(temp_rows) + "\n")
    cp.aggregate(session, store, c, n_threads=1)
    return c, plant
