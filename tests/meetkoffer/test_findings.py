from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from meetkoffer import analysis as an
from meetkoffer import findings as fi
from tests.meetkoffer.synth import make_plant

HOURS = an.OperatingHours()
P = fi.FindingParams(price_eur_per_kwh=0.2, kg_co2_per_kwh=0.4)


def _equipment(plant):
    return {
        "extruder": plant.extruder_wh,
        "compressor": plant.compressor_wh,
        "lighting": plant.lighting_wh,
    }


def test_known_plant_findings_ranked_with_estimates() -> None:
    plant = make_plant()
    found = fi.find_all(plant.incomer_wh, _equipment(plant), HOURS, P, plant.production_per_day)
    kinds = [(f.kind, f.equipment) for f in found]
    assert ("off_hours_equipment", "compressor") in kinds
    assert ("standby", None) in kinds
    # The synthetic peak falls on a production start (06:00): a start-up peak.
    assert ("startup_peak", None) in kinds
    assert ("off_hours_equipment", "extruder") not in kinds
    assert not any(k == "enpi_drift" for k, _ in kinds)
    assert [f.rank for f in found] == list(range(1, len(found) + 1))
    eur = [f.cost_eur_per_year for f in found if f.counted]
    assert eur == sorted(eur, reverse=True)
    # Key figures (not savings) follow the savings.
    assert [f.counted for f in found] == sorted((f.counted for f in found), reverse=True)

    comp = next(f for f in found if f.equipment == "compressor")
    assert "weekend" in comp.title
    # 30 kW for 4 weekends of 48 h, one of them 47 h (spring DST on Sunday 29 March):
    # 30 * 191 = 5730 kWh in the campaign, annualised over the hours measured.
    hours_measured = len(plant.index) / 4
    assert comp.evidence["weekend_kwh_in_campaign"] == pytest.approx(5730.0, rel=1e-6)
    assert comp.energy_kwh_per_year == pytest.approx(5730.0 * 8760 / hours_measured, rel=1e-6)
    assert comp.cost_eur_per_year == pytest.approx(comp.energy_kwh_per_year * 0.2)
    assert comp.co2_t_per_year == pytest.approx(comp.energy_kwh_per_year * 0.4 / 1000)

    sb = next(f for f in found if f.kind == "standby")
    assert sb.evidence["base_load_kw"] == pytest.approx(40.0, abs=3.0)

    pk = next(f for f in found if f.kind == "startup_peak")
    assert pd.Timestamp(pk.evidence["peak_at_utc"]) == plant.peak_at
    assert pk.energy_kwh_per_year == 0.0
    assert pk.evidence["shave_kw"] > 100


def test_enpi_drift_is_found() -> None:
    plant = make_plant(noise_kw=0.0)
    days = (plant.index - plant.index[0]).days.to_numpy()
    drifting = plant.extruder_wh * (1 + 0.01 * days)  # +1 % energy per unit per day
    found = fi.enpi_drift_findings(
        {"extruder": drifting, "lighting": plant.lighting_wh}, plant.production_per_day, P
    )
    assert [f.equipment for f in found] == ["extruder"]
    ev = found[0].evidence
    assert ev["enpi_end_kwh_per_unit"] / ev["enpi_start_kwh_per_unit"] == pytest.approx(
        1.27, abs=0.05
    )


def test_flat_plant_has_no_equipment_findings() -> None:
    plant = make_plant(compressor_kw=0.0, noise_kw=0.0, peak_kw=0.0)
    found = fi.find_all(plant.incomer_wh, _equipment(plant), HOURS, P, plant.production_per_day)
    assert {f.kind for f in found if f.counted} == {"standby"}


def test_params_validated() -> None:
    with pytest.raises(ValueError, match="standby_reducible_share"):
        fi.FindingParams(standby_reducible_share=1.5)
    with pytest.raises(ValueError, match="price_eur_per_kwh"):
        fi.FindingParams(price_eur_per_kwh=-1)
    assert np.isfinite(P.kg_co2_per_kwh)
