"""Batch pool helpers: chunks that keep the job order, what the fork server preloads.

The pool itself runs in ``test_cli.py::test_batch_plans_every_file_and_reports_failures``
(two workers from the fork server, one failing site) and below (what a worker imports).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from concurrent.futures import ProcessPoolExecutor

import pytest

from optimizer.batch import (
    MAIN_PATH_ENV,
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
    monkeypatch.setenv(MAIN_PATH_ENV, "")  # preload_modules sets it: restored after the test
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


HELPER = '''
import os
import sys


def imported_by_the_worker(_=None):
    """The modules this worker imported beyond its fork server's preload."""
    from optimizer import batch_preload

    return os.getpid(), sorted(set(sys.modules) - batch_preload.PRELOADED)
'''

SCRIPT = """
import json
import os

import noaber_test_script_helper as helper  # a module only this script imports

with open(os.environ["RUNS_FILE"], "a") as fh:  # one line each time the top level runs
    fh.write(f"{os.getpid()}\\n")

if __name__ == "__main__":
    from concurrent.futures import ProcessPoolExecutor

    from optimizer.batch import pool_context

    ctx = pool_context("forkserver")
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        answers = [pool.submit(helper.imported_by_the_worker) for _ in range(4)]
        print(json.dumps([a.result() for a in answers]))
"""


def test_the_fork_server_imports_a_main_script_so_its_workers_do_not(tmp_path) -> None:
    """CPython 3.11's fork server drops the main script's path: each worker then ran the
    script (and its imports) again. The script's top level now runs in the parent and once
    in the fork server; the workers fork with its modules and import none of them."""
    if pool_context("forkserver").get_start_method() != "forkserver":
        pytest.skip("no fork server on this platform")
    (tmp_path / "noaber_test_script_helper.py").write_text(HELPER)
    script = tmp_path / "plan_all.py"
    script.write_text(SCRIPT)
    runs = tmp_path / "runs.txt"
    env = {k: v for k, v in os.environ.items() if k != MAIN_PATH_ENV} | {"RUNS_FILE": str(runs)}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    workers = {pid for pid, _extra in answers}
    ran_in = [int(line) for line in runs.read_text().split()]
    assert len(ran_in) == 2  # the parent and the fork server
    assert not workers & set(ran_in)
    for _pid, extra in answers:
        assert "noaber_test_script_helper" not in extra
        assert [m for m in extra if not m.startswith("multiprocessing.")] == []


def test_the_main_script_path_is_what_multiprocessing_hands_a_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = types.ModuleType("__main__")
    script.__file__ = "/somewhere/tools/../bench.py"
    script.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", script)
    monkeypatch.setenv(MAIN_PATH_ENV, "/a/stale/path.py")  # restored after the test
    preload_modules()
    assert os.environ[MAIN_PATH_ENV] == "/somewhere/bench.py"
    module = types.ModuleType("__main__")
    module.__spec__ = types.SimpleNamespace(name="tools.plan_all")  # type: ignore[assignment]
    monkeypatch.setitem(sys.modules, "__main__", module)
    preload_modules()
    assert MAIN_PATH_ENV not in os.environ  # a module main is imported by name
