"""Scenario files: loading, and validation that names the field and the value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from energy.errors import ValidationError
from optimizer.scenario import load_scenario, scenario_from_dict
from tests.optimizer.helpers import DATA

EXAMPLE = Path(__file__).resolve().parents[2] / "optimizer" / "examples" / "dorpshuis.yaml"


def _doc(name: str = "price_step.yaml") -> dict:
    return yaml.safe_load((DATA / name).read_text())


def test_example_scenario_loads() -> None:
    from optimizer import examples

    assert examples.path("dorpshuis.yaml") == EXAMPLE
    with pytest.raises(FileNotFoundError, match=r"examples: dorpshuis\.yaml"):
        examples.path("nope.yaml")
    sc = load_scenario(EXAMPLE)
    assert len(sc.series) == 192
    assert sc.series.index.tz is not None and str(sc.series.index.tz) == "UTC"
    assert sc.battery is not None and sc.battery.soc_final_min_effective_pct == 40
    assert [e.name for e in sc.evs] == ["car-1", "car-2", "car-3", "car-4"]
    assert sc.evs[2].v2g is False
    limit = sc.series["grid_import_limit_kw"]
    window = sc.series.index.tz_convert("Europe/Amsterdam")
    evening2 = (window.day == 16) & (window.hour >= 17) & (window.hour < 21)
    assert (limit[evening2] == 15).all() and (limit[~evening2] == 25).all()


def test_hand_written_scenario_reads_prices() -> None:
    sc = load_scenario(DATA / "price_step.yaml")
    assert sc.step_minutes == 60 and len(sc.series) == 8
    assert sc.series["import_price_eur_per_kwh"].tolist() == [0.1] * 4 + [0.3] * 4


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("site", "grid_import_limit_kw"), -5, "site.grid_import_limit_kw: must be > 0, got -5"),
        (("battery", "soc_initial_pct"), 120, "battery.soc_initial_pct: must be <= 100, got 120"),
        (("battery", "capacity_kwh"), "big", "battery.capacity_kwh: must be a number, got 'big'"),
        (("step_minutes",), 7, "step_minutes: must divide 60"),
        (("start",), "2026-03-02T00:00:00", "start: must be an ISO 8601 time with offset"),
        (("horizon_hours",), 2.3, "horizon_hours: must be a whole number of 60-minute steps"),
    ],
)
def test_validation_names_field_and_value(
    tmp_path: Path, path: tuple, value: object, message: str
) -> None:
    doc = _doc()
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ValidationError) as err:
        scenario_from_dict(doc, DATA, "price_step.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("price_step.yaml:")


def test_ev_session_errors_name_the_session() -> None:
    doc = _doc("car_full.yaml")
    doc["evs"][0]["sessions"][0]["departure"] = "2026-03-02T17:00:00+01:00"
    with pytest.raises(
        ValidationError, match=r"evs\[0\]\.sessions\[0\]\.departure: must be after arrival"
    ):
        scenario_from_dict(doc, DATA, "car_full.yaml")
    doc = _doc("car_full.yaml")
    doc["evs"][0]["max_discharge_kw"] = 0
    with pytest.raises(
        ValidationError, match=r"evs\[0\]\.max_discharge_kw: must be > 0 for a V2G car"
    ):
        scenario_from_dict(doc, DATA, "car_full.yaml")


def test_csv_errors_name_line_and_column(tmp_path: Path) -> None:
    lines = (DATA / "price_step.csv").read_text().splitlines()
    lines[3] = lines[3].replace("0.10", "abc", 1)
    (tmp_path / "price_step.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValidationError, match=r"line 4, column import_price_eur_per_kwh: .*'abc'"):
        scenario_from_dict(_doc(), tmp_path, "price_step.yaml")
    del lines[5]
    lines[3] = lines[3].replace("abc", "0.10")
    (tmp_path / "price_step.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValidationError, match=r"no row for step 2026-03-02T03:00:00\+00:00"):
        scenario_from_dict(_doc(), tmp_path, "price_step.yaml")


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="scenario file not found"):
        load_scenario(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: [unclosed\n")
    with pytest.raises(ValidationError, match="malformed YAML"):
        load_scenario(bad)


def test_grid_limit_windows_cap_the_limits() -> None:
    doc = _doc()
    doc["grid_limit_windows"] = [
        {
            "start": "2026-03-02T02:00:00+01:00",
            "end": "2026-03-02T04:00:00+01:00",
            "import_limit_kw": 2,
        },
        {
            "start": "2026-03-02T03:00:00+01:00",
            "end": "2026-03-02T05:00:00+01:00",
            "import_limit_kw": 4,
            "export_limit_kw": 0,
        },
    ]
    sc = scenario_from_dict(doc, DATA, "price_step.yaml")
    assert sc.series["grid_import_limit_kw"].tolist() == [10, 10, 2, 2, 4, 10, 10, 10]
    assert sc.series["grid_export_limit_kw"].tolist() == [10, 10, 10, 0, 0, 10, 10, 10]
    doc["grid_limit_windows"][0]["end"] = "2026-03-02T01:00:00+01:00"
    with pytest.raises(ValidationError, match=r"grid_limit_windows\[0\]\.end: must be after start"):
        scenario_from_dict(doc, DATA, "price_step.yaml")
