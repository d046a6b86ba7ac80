"""The page benchmark runs in its quick form (so it cannot rot) and prints every figure."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.slow  # builds the whole demo, then 8 users against uvicorn (minutes on a busy box)
def test_pages_bench_quick() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/pages_bench.py", "--quick", "--rounds", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "8 users x 2 rounds x 4 routes: 64 requests" in out, out
    for label in ("baseline /health", "dashboard", "schedule", "statement"):
        line = next((ln for ln in out.splitlines() if ln.startswith(label)), None)
        assert line is not None, out
        p50, p95 = (float(x) for x in re.findall(r"p(?:50|95)\s+([\d.]+) ms", line))
        assert 0 < p50 <= p95, line
        if label != "baseline /health":
            assert "ratio p95 / baseline p95" in line, line
    assert "target p95 <= 150 ms:" in out
