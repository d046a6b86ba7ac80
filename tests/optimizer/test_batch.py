"""Batch pool helpers: chunks that keep the job order, what the fork server preloads.

The pool itself runs in ``test_cli.py::test_batch_plans_every_file_and_reports_failures``
(two workers from the fork server, one failing site) and below (what a worker imports).
"""

from __future__ import annotations

import sys
import types
from concurrent.futures import ProcessPoolExecutor

import pytest

from optimizer.batch import (
    PRELOAD_LAST,
    chunks_of,
    pool_context,
    preload_modules,
    run_batch,
    worker_imports,
)
from optimizer.synthetic import synthetic_scenario


@pytest.mark.parametrize(
    ("n_jobs", "workers"), [(1, 2), (7, 2), (64, 2), (65, 2), (100, 2), (100, 3), (5, 8), (999, 2)]
)
def test_chunks_cover_every_job_once_in_order_balanced_larger_first(
    n_jobs: int, workers: int
) -> None:
    chunks = chunks_of(n_jobs, workers)
    assert [i for c in chunks for i in c] == list(range(n_jobs))
    assert len(chunks) == min(n_jobs, workers * 32)
    sizes = [len(c) for c in chunks]
    assert max(sizes) - min(sizes) <= 1  # balanced
    assert sizes == sorted(sizes, reverse=True)  # the last handed out are the smallest


def test_chunks_of_one_site_each_up_to_32_per_worker() -> None:
    assert [len(c) for c in chunks_of(64, 2)] == [1] * 64
    assert [len(c) for c in chunks_of(65, 2)] == [2] + [1] * 63
    assert chunks_of(0, 2) == []


def test_preload_names_this_module_and_a_main_that_is_safe_to_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = types.ModuleType("__main__")
    script.__file__ = "/somewhere/bench.py"
    script.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", script)
    assert preload_modules() == ["optimizer.batch", "__main__", PRELOAD_LAST]
    run_as_module = types.ModuleType("__main__")
    run_as_module.__spec__ = types.SimpleNamespace(name="noaber.cli.__main__")  # type: ignore[assignment]
    monkeypatch.setitem(sys.modules, "__main__", run_as_module)
    assert preload_modules() == ["optimizer.batch", PRELOAD_LAST]  # a __main__ runs on import
    mod = types.ModuleType("__main__")
    mod.__spec__ = types.SimpleNamespace(name="tools.plan_all")  # type: ignore[assignment]
    monkeypatch.setitem(sys.modules, "__main__", mod)
    assert preload_modules() == ["optimizer.batch", "tools.plan_all", PRELOAD_LAST]


def test_spawn_is_available_as_the_fallback() -> None:
    assert pool_context("spawn").get_start_method() == "spawn"
    assert pool_context().get_start_method() in ("forkserver", "spawn")


def test_a_forkserver_worker_plans_without_importing_a_module_itself() -> None:
    ctx = pool_context("forkserver")
    if ctx.get_start_method() != "forkserver":
        pytest.skip("no fork server on this platform")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        _pid, extra = pool.submit(worker_imports, synthetic_scenario(days=1, n_evs=1)).result()
    # multiprocessing's own process classes come with the pickled pool state; nothing else
    assert [m for m in extra if not m.startswith("multiprocessing.")] == []


def test_the_pool_gives_the_objectives_of_one_process_in_the_order_of_the_jobs() -> None:
    jobs = [synthetic_scenario(days=1, n_evs=2, seed=200 + i) for i in range(5)]
    serial = run_batch(jobs, workers=1)
    pooled = run_batch(jobs, workers=2)
    assert [i.name for i in pooled] == [i.name for i in serial] == [j.site.name for j in jobs]
    assert all(i.ok for i in pooled)
    assert [i.summary["objective_eur"] for i in pooled if i.summary] == [
        i.summary["objective_eur"] for i in serial if i.summary
    ]
