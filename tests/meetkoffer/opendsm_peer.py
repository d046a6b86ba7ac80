"""Run OpenDSM's CalTRACK daily model on a CSV and print its adjusted baseline as JSON.

Run by ``test_caltrack_opendsm.py`` in a separate interpreter that has ``opendsm`` (it pins
pandas < 3, which the project's environment does not have). Input CSV columns: ``day`` (local
date), ``period`` (``baseline`` or ``reporting``), ``kwh``, ``temp_c``. OpenDSM takes degF.
Nothing here reaches the network.

Usage: ``python opendsm_peer.py DATA.csv`` -> ``{"baseline_kwh", "predicted_kwh", ...}``.
"""

from __future__ import annotations

import json
import sys
import warnings

import pandas as pd


def main(path: str) -> None:
    warnings.simplefilter("ignore")
    from opendsm import eemeter

    raw = pd.read_csv(path)
    idx = pd.DatetimeIndex(pd.to_datetime(raw["day"])).tz_localize("Europe/Amsterdam")
    df = pd.DataFrame(
        {"observed": raw["kwh"].to_numpy(), "temperature": raw["temp_c"].to_numpy() * 9 / 5 + 32},
        index=idx,
    )
    is_base = (raw["period"] == "baseline").to_numpy()
    base = eemeter.DailyBaselineData(df[is_base], is_electricity_data=True)
    rep = eemeter.DailyReportingData(df[~is_base], is_electricity_data=True)
    model = eemeter.DailyModel(model="legacy").fit(base, ignore_disqualification=True)
    pred = model.predict(rep, ignore_disqualification=True)
    fit = model.predict(base, ignore_disqualification=True)
    out = {
        "predicted_kwh": float(pred["predicted"].sum()),
        "reporting_kwh": float(pred["observed"].sum()),
        "baseline_fitted_kwh": float(fit["predicted"].sum()),
        "days_predicted": int(pred["predicted"].notna().sum()),
        "model": str(model.model_type if hasattr(model, "model_type") else ""),
        "disqualification": [str(d.qualified_name) for d in base.disqualification],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
