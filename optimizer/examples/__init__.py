"""Example scenarios shipped with the optimizer (a package so its YAML and CSV are package data).

``dorpshuis.yaml`` (+ ``dorpshuis.csv``): a dorpshuis with 40 kWp PV, a 50 kWh battery, a
25 kW connection with an evening congestion window and four volunteers' cars, two days at
15 minutes: ``noaber optimize $(python -c "import optimizer.examples as e; print(e.path('dorpshuis.yaml'))")``.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent


def path(name: str) -> Path:
    """The path of a shipped example file; ``FileNotFoundError`` naming the choices otherwise."""
    p = EXAMPLES_DIR / name
    if not p.is_file():
        choices = ", ".join(sorted(f.name for f in EXAMPLES_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"no example {name!r} (examples: {choices})")
    return p
