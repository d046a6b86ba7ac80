"""The benchmark script runs in its quick form and reports its figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gateway_bench.py"


def test_gateway_bench_quick():
    out = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--devices", "5"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    m = re.search(r"requests per poll cycle: ([\d.]+) \(minimum possible (\d+)", out)
    assert m, out
    assert float(m.group(1)) == float(m.group(2)) == 15  # coalescing reaches the minimum
    assert re.search(r"baseline 250\.0 \(ratio 16\.67\)", out), out
    assert "polls on time" in out and "gateway CPU" in out
    assert "all devices ok: True" in out
