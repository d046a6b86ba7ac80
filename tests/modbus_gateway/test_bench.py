"""The benchmark script runs in its quick form and reports its figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gateway_bench.py"


@pytest.mark.slow
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
    # coalescing reaches the minimum (a poll lost to a timeout on a loaded machine reads less)
    assert int(m.group(2)) == 15 and 13.0 <= float(m.group(1)) <= 15.0, out
    base = re.search(r"baseline ([\d.]+) \(ratio ([\d.]+)\)", out)
    assert base and float(base.group(1)) > 200, out  # one request per value: 50 per device
    assert "polls on time" in out and "gateway CPU" in out
    # the shipped profiles, counted at the simulator: SunSpec in 2 requests, SDM630 in 1
    per = dict(re.findall(r"one request per value: (\w+) (\d+) vs (\d+)", out)[i][:2]
               for i in range(2))  # fmt: skip
    assert per == {"sunspec_inverter": "2", "eastron_sdm630": "1"}, out
    naive = [int(n) for _, _, n in re.findall(r"one request per value: (\w+) (\d+) vs (\d+)", out)]
    assert naive[0] > 2 and naive[1] > 1, out
    lib = re.search(r"device library: (\d+) profiles; .*: (\d+) vs (\d+)", out)
    assert lib and int(lib.group(1)) >= 30 and int(lib.group(2)) < int(lib.group(3)), out
