"""Solver robustness: thread counts that change within a process, HiGHS's own failure message."""

from __future__ import annotations

import threading

import pytest

from optimizer.model import SolveError, SolveOptions, plan
from optimizer.scenario import load_scenario
from tests.optimizer.helpers import DATA


def test_solves_with_changing_thread_counts_in_one_process() -> None:
    """HiGHS keeps the thread count of a thread's first run; a later count used to fail with
    "unknown after 0.0 s" (HiGHS: "Option 'threads' is set to 1 but the scheduler has already
    been initialized to use 2 threads")."""
    sc = load_scenario(DATA / "price_step.yaml")
    for threads in (2, 1, None, 1, 2, 2):
        result = plan(sc, SolveOptions(threads=threads))
        assert result.status == "optimal"
        assert result.objective_eur == pytest.approx(0.80, abs=1e-6)  # by hand, test_model.py


def test_thread_counts_change_in_another_thread_too() -> None:
    """The scheduler is per calling thread: a worker thread changes its count on its own."""
    sc = load_scenario(DATA / "price_step.yaml")
    objectives: list[float] = []

    def worker() -> None:
        for threads in (1, 2):
            objectives.append(plan(sc, SolveOptions(threads=threads)).objective_eur)

    plan(sc, SolveOptions(threads=2))  # this thread: 2
    t = threading.Thread(target=worker)
    t.start()
    t.join(120)
    assert objectives == [pytest.approx(0.80, abs=1e-6)] * 2
    assert plan(sc, SolveOptions(threads=2)).objective_eur == pytest.approx(0.80, abs=1e-6)


def test_a_solver_failure_shows_highs_status_text() -> None:
    sc = load_scenario(DATA / "price_step.yaml")
    with pytest.raises(SolveError) as ei:
        plan(sc, SolveOptions(time_limit_s=0.0))  # HiGHS stops before any solution
    msg = str(ei.value)
    assert "maxTimeLimit" in msg
    assert "HiGHS model status 'Time limit reached'" in msg  # highspy modelStatusToString


def test_the_failure_shows_the_highs_log_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the scheduler reset, HiGHS's own reason reaches the message (not "unknown")."""
    import optimizer.model

    sc = load_scenario(DATA / "price_step.yaml")
    plan(sc, SolveOptions(threads=2))
    monkeypatch.setattr(optimizer.model, "use_threads", lambda threads: None)
    with pytest.raises(SolveError) as ei:
        plan(sc, SolveOptions(threads=1))
    msg = str(ei.value)
    assert "HiGHS model status 'Not Set'" in msg
    assert "ERROR: Option 'threads' is set to 1 but" in msg
    monkeypatch.undo()
    assert plan(sc, SolveOptions(threads=1)).objective_eur == pytest.approx(0.80, abs=1e-6)
