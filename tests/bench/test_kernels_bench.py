"""The kernels benchmark runs in its quick form and prints its figures (no time is asserted)."""

from __future__ import annotations

import re
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
    text = out.stdout
    for figure in ("polars group_by_dynamic", "pandas resample", "memory above input", "speed-up"):
        assert figure in text
    assert text.count("agrees") == 2 and "load average" in text
    # The summary has a row per size and thread count, each with its ratio to the floor.
    rows = re.findall(r"^\s+([\d,]+)\s+(\d+)\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s", text, re.M)
    sizes = {r[0] for r in rows}
    assert len(sizes) >= 2 and {"1"} <= {r[1] for r in rows}
    assert all(float(r[2]) > 0 for r in rows)
