"""The settlement benchmark runs in its quick form and prints every figure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_bench_quick():
    proc = subprocess.run(
        [sys.executable, "bench/settlement_bench.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for label in (
        "allocation",
        "ratio allocation / baseline",
        "post to SQLite",
        "statements as HTML",
        "post to PostgreSQL",
        "ratio to raw insert of the same rows",
        "ratio to raw hashlib of the same lines",
        "transfers/s",
    ):
        assert label in out, out
