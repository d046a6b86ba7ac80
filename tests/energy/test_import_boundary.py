"""``import energy`` (and its core modules) imports neither the API nor the domain packages."""

from __future__ import annotations

import json
import subprocess
import sys

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
    "energy.siteconfig",
    "energy.i18n",
    "energy.plots",
    "energy.pdf",
    "energy.kernels",
)


def _imported_after(*modules: str) -> list[str]:
    code = (
        "import json, sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout)


def test_core_import_does_not_pull_api_or_domain_packages() -> None:
    # One interpreter imports them all: if the union pulls nothing forbidden, neither does
    # any one of them.
    loaded = _imported_after(*CORE_MODULES)
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, f"importing the core ({', '.join(CORE_MODULES)}) imported {bad}"
    assert "energy.samples" in loaded


def test_the_check_can_see_an_import() -> None:
    assert "energy.api" in _imported_after("energy.api")
