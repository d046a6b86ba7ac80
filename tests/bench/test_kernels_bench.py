"""The kernels benchmark runs in its quick form and prints its figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_kernels_bench_quick():
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "kernels_bench.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    for figure in ("ratio to floor", "polars group_by_dynamic", "pandas resample", "peak memory"):
        assert figure in out.stdout
    assert "agrees" in out.stdout and "speed-up" in out.stdout
