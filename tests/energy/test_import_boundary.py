"""``import energy`` (and its core modules) imports neither the API nor the domain packages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("energy.api", "fastapi", "modbus_gateway", "meetkoffer", "optimizer", "settlement")
CORE_MODULES = (
    "energy",
    "energy.timegrid",
    "energy.db",
    "energy.models",
    "energy.readings",
    "energy.samples",
    "energy.settings",
    "energy.security",
    "energy.users",
    "energy.demo",
)


def _imported_after(module: str) -> list[str]:
    code = f"import json, sys\nimport {module}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_import_does_not_pull_api_or_domain_packages(module: str) -> None:
    loaded = _imported_after(module)
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, f"import {module} imported {bad}"


def test_the_check_can_see_an_import() -> None:
    assert "energy.api" in _imported_after("energy.api")
