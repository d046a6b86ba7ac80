"""The CalTRACK daily model against OpenDSM's (the `opendsm` package) on generated data.

OpenDSM pins pandas < 3, which this project's environment does not have, so it runs in its
own interpreter: ``NOABER_OPENDSM_PYTHON``, or a virtual environment built here on first use
in ``~/.cache/noaber/venv-opendsm`` (``pip install opendsm 'multimethod<2'``: scikit-fda 0.10
fails to import with multimethod 2). The peer script reads the test's CSV and needs no
network at run time. Slow: OpenDSM's first import compiles its Numba kernels (about a minute).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from meetkoffer import caltrack as ct
from tests.meetkoffer.synth import TZ

PEER = Path(__file__).with_name("opendsm_peer.py")
VENV = Path.home() / ".cache" / "noaber" / "venv-opendsm"


def _opendsm_python() -> Path:
    """The interpreter with opendsm; built on first use, skipped where pip cannot get it.

    Built under a lock (two suites at once build it once) and marked complete only after
    opendsm imports in it, so a build cut off half-way (a timeout, a kill) is built again
    instead of being taken for a working one."""
    env = os.environ.get("NOABER_OPENDSM_PYTHON")
    if env:
        return Path(env)
    import fcntl
    import shutil

    py, done = VENV / "bin" / "python", VENV / ".noaber-complete"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / "venv-opendsm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return py
        shutil.rmtree(VENV, ignore_errors=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(VENV)], check=True)
        pip = subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "opendsm>=1.2.7", "multimethod<2"],
            capture_output=True,
            text=True,
        )
        if pip.returncode:
            pytest.skip(f"opendsm could not be installed: {pip.stderr[-500:]}")
        check = subprocess.run(
            [str(py), "-c", "import opendsm"], capture_output=True, text=True, timeout=600
        )
        if check.returncode:
            pytest.fail(f"opendsm installed but does not import: {check.stderr[-500:]}")
        done.write_text("opendsm installed and imported\n")
    return py


def _two_years(seed: int = 11) -> pd.DataFrame:
    """A heated and cooled plant: 2024 baseline, 2025 reporting with 10 % saved."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2024-01-01", "2025-12-31", freq="D")
    d = np.arange(days.size)
    t = 10.5 - 8.0 * np.cos(2 * np.pi * (d - 15) / 365.25) + rng.normal(0, 2.5, d.size)
    hours = ct.day_hours(days.tz_localize(TZ))
    u = hours / 24 * (800 + 35 * np.maximum(14.2 - t, 0) + 20 * np.maximum(t - 19.3, 0))
    u = u + rng.normal(0, 25, d.size)
    rep = days >= "2025-01-01"
    u[rep] *= 0.9
    return pd.DataFrame(
        {
            "day": days.strftime("%Y-%m-%d"),
            "period": np.where(rep, "reporting", "baseline"),
            "kwh": u,
            "temp_c": t,
            "hours": hours,
        }
    )


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the first run builds OpenDSM's environment and compiles it
def test_daily_savings_agree_with_opendsm(tmp_path: Path) -> None:
    py = _opendsm_python()
    data = _two_years()
    csv = tmp_path / "daily.csv"
    data.drop(columns="hours").to_csv(csv, index=False)
    out = subprocess.run(
        [str(py), str(PEER), str(csv)], capture_output=True, text=True, timeout=900, check=True
    )
    peer = json.loads(out.stdout.strip().splitlines()[-1])
    assert peer["days_predicted"] == 365 and peer["disqualification"] == []

    idx = pd.DatetimeIndex(pd.to_datetime(data["day"])).tz_localize(TZ).tz_convert("UTC")
    base = (data["period"] == "baseline").to_numpy()
    m = ct.fit_daily(
        pd.Series(data["kwh"].to_numpy()[base], idx[base]),
        pd.Series(data["temp_c"].to_numpy()[base], idx[base]),
    )
    assert m.sufficiency.ok and m.best.kind == "hdd_cdd"
    rep = data[~base]
    ours = float(m.predict(rep["temp_c"], rep["hours"]).sum()) - float(rep["kwh"].sum())
    theirs = peer["predicted_kwh"] - peer["reporting_kwh"]
    assert peer["reporting_kwh"] == pytest.approx(float(rep["kwh"].sum()), rel=1e-9)
    assert ours == pytest.approx(theirs, rel=0.02)
    # And the known saving (10 % of the modelled usage) lies close to both.
    assert ours == pytest.approx(float(rep["kwh"].sum()) / 9, rel=0.03)
