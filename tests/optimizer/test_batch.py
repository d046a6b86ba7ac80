"""Batch pool helpers: chunks that keep the job order, what the fork server preloads.

The pool itself runs in ``test_cli.py::test_batch_plans_every_file_and_reports_failures``
(two workers from the fork server, one failing site).
"""

from __future__ import annotations

import sys
import types

import pytest

from optimizer.batch import chunks_of, pool_context, preload_modules


@pytest.mark.parametrize(("n_jobs", "workers"), [(1, 2), (7, 2), (100, 2), (100, 3), (5, 8)])
def test_chunks_cover_every_job_once_in_order(n_jobs: int, workers: int) -> None:
    chunks = chunks_of(n_jobs, workers)
    assert [i for c in chunks for i in c] == list(range(n_jobs))
    assert len(chunks) <= max(1, workers * 4)
    assert max(len(c) for c in chunks) - min(len(c) for c in chunks[:-1] or chunks) <= 0


def test_preload_names_this_module_and_a_main_that_is_safe_to_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = types.ModuleType("__main__")
    script.__file__ = "/somewhere/bench.py"
    script.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", script)
    assert preload_modules() == ["optimizer.batch", "__main__"]
    run_as_module = types.ModuleType("__main__")
    run_as_module.__spec__ = types.SimpleNamespace(name="noaber.cli.__main__")  # type: ignore[assignment]
    monkeypatch.setitem(sys.modules, "__main__", run_as_module)
    assert preload_modules() == ["optimizer.batch"]  # a __main__ module runs on import
    mod = types.ModuleType("__main__")
    mod.__spec__ = types.SimpleNamespace(name="tools.plan_all")  # type: ignore[assignment]
    monkeypatch.setitem(sys.modules, "__main__", mod)
    assert preload_modules() == ["optimizer.batch", "tools.plan_all"]


def test_spawn_is_available_as_the_fallback() -> None:
    assert pool_context("spawn").get_start_method() == "spawn"
    assert pool_context().get_start_method() in ("forkserver", "spawn")
