"""The optimizer benchmark runs in its quick variant (small sizes) and checks its own figures.

It exits non-zero when the plan's objective differs from the raw highspy baseline's or from
the Pyomo reference's, or when a batch site fails; no time is asserted here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "optimizer_bench.py"


def test_bench_quick_prints_every_figure_at_two_sizes() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.startswith("load average")
    assert "(a) 24 h x 15 min" in out and "(a) 48 h x 15 min" in out
    assert out.count("raw highspy (baseline)") >= 3 and "ratio to raw highspy" in out
    assert "target (48 h) build + solve <= 0.05 s" in out
    assert "(b) 2 days" in out
    assert "(m) MPC, 24 h horizon" in out and "(m) MPC, 48 h horizon" in out
    assert "re-plan step median" in out and "target <= 20 ms" in out
    assert "(c) pool start-up (forkserver" in out
    assert "(r) replay of 72 MPC steps" in out and "realised/planned x" in out
    # the MPC bench measures no car SoC: each car's fallback is said once per run (two runs of
    # four cars), not once per step
    said = proc.stderr.count("the charger reports no SoC")
    assert said <= 8, proc.stderr[-2000:]
    assert "(c) 2 sites" in out and "(c) 4 sites" in out and "speed-up x" in out
