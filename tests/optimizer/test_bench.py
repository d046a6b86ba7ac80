"""The optimizer benchmark runs (quick variant: case (a) and the highspy comparison)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "optimizer_bench.py"


def test_bench_quick_runs_and_agrees_with_highspy() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "(a) 48 h x 15 min" in out and "ratio pyomo/highspy" in out
    assert "build" in out and "solve" in out and "objective" in out
    assert "(b)" not in out and "(c)" not in out
