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
        "2026-03-02T07:00:01Z,a,1.5,kW\n"
        "2026-03-02T09:00:02+02:00,a,1.5,kW\n"
        "2026-03-02T08:00:00+01:00,b,1.0,kWh\n"
        "2026-03-02T08:15:00+01:00,b,1.5,kWh\n"
        "2026-03-02T08:00:00+01:00,c,0.0015,MW\n"
    )
    for variant in (text, text + "\n"):  # the second through the row-by-row parser
        out = importing.parse_samples("x.csv", ["a", "b", "c"], text=variant)
        a = out["a"]
        assert a.kind == "power" and a.unit == "kW"
        t0 = pd.Timestamp("2026-03-02T07:00:00Z").value
        assert list(a.ts_ns - t0) == [0, 1_000_000_000, 2_000_000_000]
        assert np.allclose(a.value, 1500.0)
        assert out["b"].kind == "energy" and list(out["b"].value) == [1000.0, 1500.0]
        assert out["c"].value[0] == pytest.approx(1500.0)
        assert list(out["b"].lines) == [5, 6]


def test_unit_changing_inside_a_file_is_refused_by_line() -> None:
    text = (
        "timestamp,channel,value,unit\n2026-03-02T08:00:00Z,a,2,kW\n"
        "2026-03-02T08:01:00Z,a,2000,W\n2026-03-02T08:02:00Z,a,0.002,MW\n"
    )
    with pytest.raises(ValidationError) as exc:
        importing.parse_samples("x.csv", ["a"], text=text)
    assert "line 3: channel 'a' changes unit: 'W' here, 'kW' above" in str(exc.value)
    assert "line 4: channel 'a' changes unit: 'MW' here" in str(exc.value)
    text = (
        "timestamp,channel,value,unit\n2026-03-02T08:00:00Z,b,2,kWh\n2026-03-02T08:01:00Z,b,1,kW\n"
    )
    with pytest.raises(ValidationError, match="line 3: channel 'b' mixes power and energy"):
        importing.parse_samples("x.csv", ["b"], text=text)


def test_counter_decrease_is_found_by_line() -> None:
    text = (
        "timestamp,channel,value,unit\n2026-03-02T08:00:00Z,b,2,kWh\n2026-03-02T08:01:00Z,b,1,kWh\n"
    )
    data = importing.parse_samples("x.csv", ["b"], text=text)["b"]
    [(line, msg)] = importing.counter_errors(data)
    assert line == 3 and "counter of channel 'b' decreases (2000.0 -> 1000.0 Wh)" in msg


def test_semicolons_with_decimal_commas_and_the_wide_layout() -> None:
    long = "timestamp;channel;value;unit\n2026-03-02T08:00:00+01:00;a;1,5;kW\n"
    assert importing.parse_samples("x.csv", ["a"], text=long)["a"].value[0] == 1500.0
    wide = (
        "timestamp;a [kW];b [kWh]\n"
        "2026-03-02T08:00:00+01:00;1,5;\n"
        "2026-03-02T08:00:01+01:00;2;3,25\n"
    )
    out = importing.parse_samples("x.csv", ["a", "b"], text=wide)
    assert list(out["a"].value) == [1500.0, 2000.0]
    assert list(out["b"].value) == [3250.0] and list(out["b"].lines) == [3]
    with pytest.raises(ValidationError) as exc:
        importing.parse_samples("x.csv", ["a", "b"], text=wide + "2026-03-02T08:00:02;x;1\n")
    assert "line 4: timestamp '2026-03-02T08:00:02' has no timezone offset" in str(exc.value)
    assert "line 4: value 'x' is not a finite number" in str(exc.value)
    with pytest.raises(ValidationError, match="line 1: unknown channel 'c'"):
        importing.parse_samples("x.csv", ["a"], text="timestamp,c [kW]\n")


def test_local_periods_and_their_isps() -> None:
    """A local day is 92, 96 or 100 ISPs; a month starts at its first local midnight."""
    days = pd.DatetimeIndex(
        ["2026-03-29", "2026-03-30", "2026-10-25", "2026-03-29 06:00"], tz="Europe/Amsterdam"
    )
    start, end, aligned = importing.period_bounds(days.tz_convert("UTC").as_unit("ns").asi8, "day")
    assert list((end - start) // (15 * 60 * 10**9)) == [92, 96, 100, 92]
    assert list(aligned) == [True, True, True, False]
    march = pd.Timestamp("2026-03-01", tz="Europe/Amsterdam").tz_convert("UTC").value
    start, end, aligned = importing.period_bounds(np.array([march]), "month")
    assert aligned[0] and pd.Timestamp(end[0], tz="UTC") == pd.Timestamp("2026-03-31T22:00Z")
    isp, e = importing.spread_over_isps(start, end, np.array([2_972_000.0]))
    assert len(isp) == 31 * 96 - 4 and np.allclose(e, 1000.0)  # March loses an hour


def test_detection_of_energy_kinds() -> None:
    t = pd.date_range("2026-03-02", periods=5, freq="D", tz="Europe/Amsterdam")
    ts = t.tz_convert("UTC").as_unit("ns").asi8

    def data(v: list[float]) -> importing.ChannelData:
        return importing.ChannelData("x", "energy", ts, np.asarray(v), np.arange(5) + 2, "kWh")

    assert importing.detect_energy_kind(data([500, 520, 480, 510, 505])) == ("interval", "day")
    assert importing.detect_energy_kind(data([9e6, 9.1e6, 9.2e6, 9.3e6, 9.4e6])) == (
        "counter",
        None,
    )
    assert isinstance(importing.detect_energy_kind(data([100, 110, 120, 130, 140])), str)


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


def _wide_text(n: int = 6) -> str:
    rows = ["timestamp,a [kW],b [W]"]
    for i in range(n):
        b = "" if i % 3 == 1 else f"{100 + i}"
        rows.append(f"2026-03-02T07:00:{i:02d}Z,{i / 2},{b}")
    return "\n".join(rows) + "\n"


def test_wide_fast_path_agrees_with_the_row_by_row_parser() -> None:
    """pyarrow's columns (the fast path) give what the row-by-row parser gives; a blank
    line, a 'nan' or an 'inf' cell, or times out of order take the checked paths."""
    text = _wide_text()
    fast = importing.parse_samples("x.csv", ["a", "b"], text=text)
    f = importing._open("x.csv", text)
    ts, lines, values, nulls = importing._wide_slow(f, 2)
    for name, v, null, factor in zip(["a", "b"], values, nulls, [1000.0, 1.0]):
        keep = ~null
        assert list(fast[name].value) == list(v[keep] * factor)
        assert list(fast[name].ts_ns) == list(ts[keep])
        assert list(fast[name].lines) == list(lines[keep])
    assert list(fast["a"].value) == [i / 2 * 1000 for i in range(6)]
    assert list(fast["b"].value) == [100.0, 102.0, 103.0, 105.0]
    assert list(fast["b"].lines) == [2, 4, 5, 7]  # empty cells on lines 3 and 6: no sample
    # A blank line: the line numbers after it stay the file's.
    lines_ = text.splitlines(keepends=True)
    blank = "".join([*lines_[:3], "\n", *lines_[3:]])
    out = importing.parse_samples("x.csv", ["a", "b"], text=blank)
    assert list(out["b"].lines) == [2, 5, 6, 8] and list(out["b"].value) == list(fast["b"].value)
    # 'nan' and 'inf' are no numbers of a meter: named by line, not taken as empty cells.
    for word in ("nan", "NaN", "N/A", "inf", "-inf"):
        bad = text.replace("2026-03-02T07:00:03Z,1.5,103", f"2026-03-02T07:00:03Z,1.5,{word}")
        with pytest.raises(ValidationError, match=f"line 5: value '{word}' is not a finite"):
            importing.parse_samples("x.csv", ["a", "b"], text=bad)
        # Also in a column without any empty cell (where pyarrow reports no nulls at all).
        bad = text.replace("2026-03-02T07:00:03Z,1.5,", f"2026-03-02T07:00:03Z,{word},")
        with pytest.raises(ValidationError, match=f"line 5: value '{word}' is not a finite"):
            importing.parse_samples("x.csv", ["a", "b"], text=bad)
    # Out of time order: sorted per channel; one time twice with two values is refused.
    swapped = "".join([*lines_[:2], lines_[3], lines_[2], *lines_[4:]])
    out = importing.parse_samples("x.csv", ["a", "b"], text=swapped)
    assert list(out["a"].value) == list(fast["a"].value)
    assert list(out["a"].lines) == [2, 4, 3, 5, 6, 7]
    twice = text + "2026-03-02T07:00:00Z,9,100\n"
    with pytest.raises(ValidationError, match="line 8: channel 'a' has two different values"):
        importing.parse_samples("x.csv", ["a", "b"], text=twice)
