"""Dependency rule: the gateway imports only the core of ``energy`` (ARCHITECTURE.md)."""

from __future__ import annotations

import json
import subprocess
import sys

MODULES = [
    "modbus_gateway.profiles", "modbus_gateway.config", "modbus_gateway.plan",
    "modbus_gateway.driver", "modbus_gateway.poller", "modbus_gateway.writes",
    "modbus_gateway.spool", "modbus_gateway.sunspec", "modbus_gateway.simulator",
    "modbus_gateway.service", "modbus_gateway.mqtt", "modbus_gateway.capabilities",
    "modbus_gateway.demo", "modbus_gateway.cli",
]  # fmt: skip
FORBIDDEN = ("energy.api", "energy.cli", "fastapi", "optimizer", "settlement", "meetkoffer")


def test_gateway_imports_only_the_core():
    code = "import json, sys\n" + "".join(f"import {m}\n" for m in MODULES)
    code += "print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = json.loads(out.stdout)
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == []
