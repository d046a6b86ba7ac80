"""The Meetkoffer benchmark runs end to end in its --quick version."""

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
    assert "total" in out and "peak memory" in out and "faster" in out
    assert figures["samples"] > 1_000_000
    assert figures["findings"] >= 1
    assert figures["total_s"] == pytest.approx(
        sum(figures[f"{k}_s"] for k in ("aggregate", "load", "findings", "report")), rel=0.05
    )
    assert figures["peak_rss_mb"] < 4096
