"""The Meetkoffer benchmark runs end to end in its --quick version (two sizes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "bench" / "meetkoffer_bench.py"


def test_bench_quick(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("meetkoffer_bench", BENCH)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    figures = mod.main(["--quick"])
    out = capsys.readouterr().out
    assert out.count("pyarrow read_csv of the same file") == 2  # both sizes, with the ratio
    assert "x reading the CSV" in out and "hourly temperature (8,760 rows)" in out
    assert "total" in out and "peak memory" in out and "faster" in out
    # 4 channels x 2 days at 1 Hz, 0.1 % dropped: every sample of the CSV reached the pipeline.
    assert 0.998 * 4 * 2 * 86_400 < figures["samples"] < 4 * 2 * 86_400
    assert figures["isps"] == 4 * 2 * 96
    assert figures["findings"] >= 1
    assert figures["total_s"] == pytest.approx(
        sum(figures[f"{k}_s"] for k in ("import", "aggregate", "load", "findings", "report")),
        rel=0.05,
    )
    # Every stage is printed with its wall and CPU time; the CPU of the stages adds up to at
    # most the pipeline's (measured separately around all of them).
    stages = ("import", "aggregate", "load", "findings", "report")
    assert all(f"CPU {figures[f'{k}_cpu_s']:6.2f} s" in out for k in stages)
    assert sum(figures[f"{k}_cpu_s"] for k in stages) == pytest.approx(
        figures["total_cpu_s"], rel=0.05
    )
    assert figures["samples@1d"] < figures["samples@2d"]
    assert figures["peak_rss_mb"] < 4096
