"""The ingest benchmark runs in its quick form on this machine's PostgreSQL and Mosquitto and
prints its figures (no time is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import need, need_executable

ROOT = Path(__file__).resolve().parents[2]


def test_ingest_bench_quick(pg_template):
    need(pg_template is not None, "PostgreSQL is not reachable")
    need_executable("mosquitto")
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ingest_bench.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    rows = dict(re.findall(r"^\s+(baseline raw COPY|one consumer|two consumers)\s+([\d,]+) samples",
                           text, re.M))  # fmt: skip
    # every phase stored every sample it was given: 20 sites x 2 channels x 1,200 s
    assert rows == {k: "48,000" for k in ("baseline raw COPY", "one consumer", "two consumers")}
    assert re.search(r"scaling two / one consumer: [\d.]+ x", text)
    assert re.search(r"per consumer core: [\d,]+ samples per CPU-second", text)
    m = re.search(r"\(([\d,]+) samples\): poll -> queryable sample p50 \d+ ms, p95 \d+ ms", text)
    assert m and int(m.group(1).replace(",", "")) > 0
    assert "poll -> interval reading" in text and "nan ms" not in text
    assert "load average" in text and "x baseline" in text
