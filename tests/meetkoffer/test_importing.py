from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from energy.errors import ValidationError
from meetkoffer import importing

DATA = Path(__file__).parents[1] / "data" / "meetkoffer"


def test_bad_rows_reported_by_line_number() -> None:
    with pytest.raises(ValidationError) as exc:
        importing.parse_samples(DATA / "samples_bad.csv", ["compressor 1"])
    msg = str(exc.value)
    assert "5 bad row(s), nothing imported" in msg
    assert "line 3: timestamp '2026-03-02T08:00:01' has no timezone offset" in msg
    assert "line 4: unknown channel 'compressor 9'" in msg
    assert "line 5: value 'abc' is not a finite number" in msg
    assert "line 6: unit 'kVA'" in msg
    assert "line 7: expected 4 fields, got 3" in msg
    assert exc.value.location == "line 3"


def test_offsets_and_units_honoured() -> None:
    text = (
        "timestamp,channel,value,unit\n"
        "2026-03-02T08:00:00+01:00,a,1.5,kW\n"
        "2026-03-02T07:00:01Z,a,1500,W\n"
        "2026-03-02T09:00:02+02:00,a,0.0015,MW\n"
        "2026-03-02T08:00:00+01:00,b,1.0,kWh\n"
        "2026-03-02T08:15:00+01:00,b,1500,Wh\n"
    )
    out = importing.parse_samples("x.csv", ["a", "b"], text=text)
    a = out["a"]
    assert a.kind == "power"
    t0 = pd.Timestamp("2026-03-02T07:00:00Z").value
    assert list(a.ts_ns - t0) == [0, 1_000_000_000, 2_000_000_000]
    assert np.allclose(a.value, 1500.0)
    assert out["b"].kind == "energy" and list(out["b"].value) == [1000.0, 1500.0]


def test_counter_must_not_decrease_and_kinds_not_mixed() -> None:
    text = (
        "timestamp,channel,value,unit\n2026-03-02T08:00:00Z,b,2,kWh\n2026-03-02T08:01:00Z,b,1,kWh\n"
    )
    with pytest.raises(ValidationError, match="line 3: counter of channel 'b' decreases"):
        importing.parse_samples("x.csv", ["b"], text=text)
    text = (
        "timestamp,channel,value,unit\n2026-03-02T08:00:00Z,b,2,kWh\n2026-03-02T08:01:00Z,b,1,kW\n"
    )
    with pytest.raises(ValidationError, match="mixes power and energy"):
        importing.parse_samples("x.csv", ["b"], text=text)


def test_date_without_time_or_offset_is_refused() -> None:
    text = "timestamp,channel,value,unit\n2026-03-02,a,1,kW\n"
    with pytest.raises(ValidationError, match="line 2: timestamp '2026-03-02' has no timezone"):
        importing.parse_samples("x.csv", ["a"], text=text)


def test_wrong_header() -> None:
    with pytest.raises(ValidationError, match="header must be timestamp,channel,value,unit"):
        importing.parse_samples("x.csv", ["a"], text="time,channel,value\n")


def test_production_and_temperature() -> None:
    prod = importing.parse_production(
        "p.csv",
        text="start,end,value,unit\n2026-03-02T06:00:00+01:00,2026-03-02T14:00:00+01:00,42,t\n"
        "2026-03-02T14:00:00+01:00,2026-03-02T22:00:00+01:00,40,t\n",
    )
    assert list(prod["units"]) == [42.0, 40.0]
    assert prod["period_start"].iloc[0] == pd.Timestamp("2026-03-02T05:00:00Z")
    with pytest.raises(ValidationError, match="line 3: period overlaps"):
        importing.parse_production(
            "p.csv",
            text="start,end,value,unit\n2026-03-02T06:00:00Z,2026-03-02T14:00:00Z,1,t\n"
            "2026-03-02T13:00:00Z,2026-03-02T15:00:00Z,1,t\n",
        )
    with pytest.raises(ValidationError, match="line 2: end must be after start"):
        importing.parse_production(
            "p.csv", text="start,end,value,unit\n2026-03-02T06:00:00Z,2026-03-02T05:00:00Z,1,t\n"
        )
    t = importing.parse_temperature(
        "t.csv", text="timestamp,value,unit\n2026-03-02T06:00:00+01:00,4.5,degC\n"
    )
    assert t.iloc[0] == 4.5 and t.index[0] == pd.Timestamp("2026-03-02T05:00:00Z")
    with pytest.raises(ValidationError, match=r"line 2: temperature 99\.0 degC is implausible"):
        importing.parse_temperature(
            "t.csv", text="timestamp,value,unit\n2026-03-02T06:00:00Z,99,degC\n"
        )
