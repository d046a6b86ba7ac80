"""Every YAML loader goes through ``energy.yamlio``: a malformed file and a document with a
wrong type both give one ``ValidationError`` naming the file and the line or the path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from energy.errors import ValidationError
from energy.siteconfig import load_site_file, load_site_text
from energy.yamlio import line_of, load_yaml_file, load_yaml_text
from meetkoffer.campaign import create_campaign_from_file
from meetkoffer.emissions import load_emission_factors
from modbus_gateway.config import load_config
from modbus_gateway.profiles import load_profile
from optimizer.scenario import load_scenario
from optimizer.sitestore import ev_sessions_from_yaml
from settlement.community import load_community
from settlement.pricing import load_tariff

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "noaber" / "services" / "demo" / "data"
MALFORMED = "name: x\nitems: [1, 2\nmore: 3\n"


def _campaign(path: Path) -> Any:
    return create_campaign_from_file(None, path)  # type: ignore[arg-type]  # fails before the db


# loader, shipped file, the line to break, its wrong-type replacement, the path named
CASES: list[tuple[str, Callable[[Path], Any], Path, str, str, str]] = [
    (
        "site",
        load_site_file,
        DEMO / "demo_site.yaml",
        "  grid_import_limit_kw: 40\n",
        "  grid_import_limit_kw: lots\n",
        "site.grid_import_limit_kw",
    ),
    (
        "gateway",
        load_config,
        DEMO / "demo_site.yaml",
        "port: 15020,",
        "port: many,",
        "devices[0].port",
    ),
    (
        "profile",
        load_profile,
        ROOT / "modbus_gateway" / "profiles" / "eastron_sdm120.yaml",
        "{address: 0x00,",
        "{address: zero,",
        "registers.voltage_v.address",
    ),
    (
        "community",
        load_community,
        DEMO / "demo_community.yaml",
        "  order: [m-dorpshuis, m-4c1e7a, m-9b2d05, m-e83f61]\n",
        "  order: dorpshuis\n",
        "key.order",
    ),
    (
        "tariff",
        load_tariff,
        ROOT / "settlement" / "data" / "tariffs_2026.yaml",
        '    vat_pct: "21"\n',
        "    vat_pct: twenty-one\n",
        "versions[0].vat_pct",
    ),
    (
        "scenario",
        load_scenario,
        ROOT / "optimizer" / "examples" / "dorpshuis.yaml",
        "  capacity_kwh: 50\n  max_charge_kw: 15\n",
        "  capacity_kwh: fifty\n  max_charge_kw: 15\n",
        "battery.capacity_kwh",
    ),
    (
        "emission factors",
        load_emission_factors,
        ROOT / "meetkoffer" / "data" / "emission_factors.yaml",
        "  - year: 2021\n    kg_co2_per_kwh: 0.374\n",
        "  - year: 2021\n    kg_co2_per_kwh: lots\n",
        "factors[0]",
    ),
]
IDS = [c[0] for c in CASES]
LOADERS = [
    *((name, loader) for name, loader, *_ in CASES),
    ("sessions", ev_sessions_from_yaml),
    ("campaign", _campaign),
]


@pytest.mark.parametrize(("name", "loader"), LOADERS, ids=[n for n, _ in LOADERS])
def test_malformed_file_names_file_and_line(
    tmp_path: Path, name: str, loader: Callable[[Path], Any]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(MALFORMED, encoding="utf-8")
    with pytest.raises(ValidationError) as err:
        loader(bad)
    msg = str(err.value)
    assert msg.startswith(f"{bad}:line 3, column 5: malformed YAML"), msg
    assert "started at line 2" in msg and "\n" not in msg
    assert err.value.line == 3


@pytest.mark.parametrize(("name", "loader"), LOADERS, ids=[n for n, _ in LOADERS])
def test_missing_file_names_it(tmp_path: Path, name: str, loader: Callable[[Path], Any]) -> None:
    with pytest.raises(ValidationError, match="not found") as err:
        loader(tmp_path / "nope.yaml")
    assert str(tmp_path / "nope.yaml") in str(err.value)


@pytest.mark.parametrize(("name", "loader", "shipped", "good", "bad", "where"), CASES, ids=IDS)
def test_wrong_type_names_file_path_and_line(
    tmp_path: Path,
    name: str,
    loader: Callable[[Path], Any],
    shipped: Path,
    good: str,
    bad: str,
    where: str,
) -> None:
    for f in shipped.parent.glob("*.csv"):  # the scenario's series
        shutil.copy(f, tmp_path)
    text = shipped.read_text(encoding="utf-8")
    assert text.count(good) == 1
    f = tmp_path / shipped.name
    f.write_text(text.replace(good, bad), encoding="utf-8")
    with pytest.raises(ValidationError) as err:
        loader(f)
    msg = str(err.value)
    assert msg.startswith(f"{f}:{where}:"), msg
    assert err.value.location == where
    assert err.value.line == text[: text.index(good)].count("\n") + 1


def test_sessions_and_campaign_of_the_wrong_type_name_the_file(tmp_path: Path) -> None:
    f = tmp_path / "sessions.yaml"
    f.write_text("ev-1:\n  - {arrival: 2026-06-15T17:00:00+02:00}\nev-2: tonight\n")
    with pytest.raises(ValidationError, match=f"{f}:ev-2: must map EV names") as err:
        ev_sessions_from_yaml(f)
    assert err.value.line == 3
    f.write_text("- a campaign\n- is not a list\n")
    with pytest.raises(ValidationError, match=f"{f}: must be a mapping"):
        _campaign(f)


def test_yamlio_locates_paths_and_bad_characters() -> None:
    text = "site:\n  name: a\nassets:\n  - name: x\n  - name: y\n    channels:\n      - key: k\n"
    assert line_of(text, "assets[1].channels[0].key") == 7
    assert line_of(text, "assets[1].channels[0].unit") == 7  # missing: its mapping
    assert line_of(text, "site.name") == 2
    assert line_of(text, "(top)") is None
    assert load_yaml_text(text, "t.yaml")["site"] == {"name": "a"}
    with pytest.raises(ValidationError, match=r"^t.yaml:line 2, column 5: malformed YAML: "):
        load_yaml_text("a: 1\nb: x\x07y\n", "t.yaml")
    with pytest.raises(ValidationError, match=r"site.yaml:site.ean:") as err:
        load_site_text("site:\n  name: a\n  ean: [1]\n", "site.yaml")
    assert err.value.line == 3


def test_not_utf8_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "latin1.yaml"
    f.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValidationError, match=f"{f}: site file is not UTF-8 text"):
        load_yaml_file(f, "site file")


def test_cli_prints_one_line_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(MALFORMED, encoding="utf-8")
    env = {**os.environ, "NOABER_DATA_DIR": str(tmp_path / "data"), "NOABER_MODE": "local"}
    env["COLUMNS"] = "300"
    env.pop("NOABER_DATABASE_URL", None)
    out = subprocess.run(
        [sys.executable, "-m", "noaber.cli", "optimize", "plan", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{bad}:line 3, column 5: malformed YAML" in lines[0], lines
