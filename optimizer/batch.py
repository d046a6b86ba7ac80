"""Many independent sites planned in parallel: a process pool over scenarios.

Each worker reads, plans and writes one scenario; a failure of one site is recorded with its
reason and does not stop the others (a province-wide nightly run must not lose 99 plans
because of one bad file).

What the pool costs, and how it is kept small (issue 18; ``bench/optimizer_bench.py`` (c)
prints each figure):

* start-up: workers are forked from a fork server that imported the optimizer once
  (``forkserver`` with this module, the program's main module and
  :mod:`optimizer.batch_preload` preloaded), so no worker imports pandas, Pyomo and highspy
  again (a spawned worker needs ~1-2 s for that). The preload ends with a collection and
  :func:`gc.freeze`, so a worker's collector never walks (and copies on write) the imported
  modules' objects. The fork server itself never runs HiGHS, so no worker inherits HiGHS's
  threads (forking a process that has run HiGHS can hang);
* per task: jobs go out in balanced chunks, the larger first and many per worker (one site
  each up to ``32 x workers`` sites), so the last chunks are one site and no core waits long
  for another at the end; results come back as they finish, as compact :class:`BatchItem`
  records (a summary dict, no schedule frame);
* the parent: it only waits while the workers plan (it does not plan itself, so it does not
  compete with them for a core); ``on_done`` runs in it per site;
* per site: HiGHS runs single-threaded; the cores are the pool's.

The nightly run of the deployment does not go through this pool: the ``nightly`` job
(:mod:`noaber.services.jobs.tasks`) fans out one ``replan`` job per site to the queue's
workers. This pool is for scenario files (``noaber optimize batch``) and the benchmark.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from energy.errors import NoaberError
from optimizer.model import SolveOptions, plan
from optimizer.report import compare, write_schedule_csv
from optimizer.scenario import Scenario, load_scenario


@dataclass(frozen=True, slots=True)
class BatchItem:
    """The outcome of one site: ``summary`` (see :func:`optimizer.report.compare`) or ``error``.

    ``wall_s`` and ``cpu_s`` [s] are the site's wall and CPU time in its process: on a shared
    machine the CPU time shows what a site costs when the wall time shows what others took.
    """

    name: str
    ok: bool
    summary: dict[str, Any] | None
    error: str | None
    wall_s: float
    schedule_csv: str | None = None
    cpu_s: float = 0.0


def plan_one(
    job: Scenario | str | Path, out_dir: str | None = None, options: SolveOptions | None = None
) -> BatchItem:
    """Plan one scenario (object or YAML path); never raises for a user error."""
    t0, c0 = time.perf_counter(), time.process_time()
    name = str(job) if not isinstance(job, Scenario) else job.site.name
    try:
        scenario = job if isinstance(job, Scenario) else load_scenario(job)
        name = scenario.site.name
        result = plan(scenario, options)
        summary = compare(scenario, result, values=False)  # one solve per site
        csv = None
        if out_dir is not None:
            csv = str(write_schedule_csv(result.flows, Path(out_dir) / f"{name}.csv"))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return BatchItem(name, True, summary, None, wall, csv, cpu)
    except (NoaberError, ValueError, OSError) as exc:
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return BatchItem(name, False, None, str(exc), wall, None, cpu)


Job = Scenario | str | Path


def _plan_chunk(
    chunk: list[tuple[int, Job]], out_dir: str | None, options: SolveOptions
) -> list[tuple[int, BatchItem]]:
    """Plan a chunk of (position, job) in a worker; the positions keep the order of the jobs."""
    return [(i, plan_one(job, out_dir, options)) for i, job in chunk]


def ping(_: object = None) -> int:
    """A task that does nothing: measures what a pool costs before any plan (the benchmark)."""
    return os.getpid()


def worker_imports(job: Job) -> tuple[int, list[str]]:
    """Plan ``job`` in a worker, then name the modules it imported beyond the fork server's.

    What a worker imports itself it imports again in every worker (the benchmark prints it;
    empty when the preload covers solving). Only meaningful in a ``forkserver`` pool.
    """
    from optimizer import batch_preload

    plan_one(job, None, SolveOptions(threads=1))
    return os.getpid(), sorted(set(sys.modules) - batch_preload.PRELOADED)


def pool_context(method: str = "forkserver") -> multiprocessing.context.BaseContext:
    """The multiprocessing context of the batch pool (see the module docstring).

    ``forkserver`` (default) preloads this module in the fork server; ``spawn`` starts each
    worker from scratch (the benchmark's comparison, and the fallback where there is no fork).
    """
    if method == "forkserver" and "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(preload_modules())
        return ctx
    return multiprocessing.get_context("spawn")


def preload_modules() -> list[str]:
    """What the fork server imports once: this module and the program's main module.

    A worker prepares itself as a spawned process would: it imports the parent's main module
    (a script such as the benchmark, or ``python -m pkg.mod``) unless its fork server already
    has it, which costs each worker that module's imports again. Multiprocessing never imports
    a ``__main__`` module by name (``python -m pkg``), so neither does this.
    """
    modules = [__name__]
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    os.environ.pop(MAIN_PATH_ENV, None)
    if spec is not None and spec.name and not spec.name.endswith("__main__"):
        modules.append(spec.name)
    elif spec is None and getattr(main, "__file__", None):
        # A script: the fork server imports it from its path. CPython 3.11's fork server
        # drops that path (it keeps a "main_path" key its preparation data never has), so
        # the path also goes in MAIN_PATH_ENV, which the fork server inherits and
        # optimizer.batch_preload reads.
        modules.append("__main__")
        os.environ[MAIN_PATH_ENV] = main_script_path(str(main.__file__))  # type: ignore[union-attr]
    modules.append(PRELOAD_LAST)  # after every other import: it freezes what they made
    return modules


def main_script_path(path: str) -> str:
    """A main script's path as multiprocessing hands it to a worker (absolute, normalised), so
    the worker finds its fork server's ``__main__`` to be that script and does not run it
    again."""
    original_dir = getattr(multiprocessing.process, "ORIGINAL_DIR", None)  # the cwd at start-up
    if not os.path.isabs(path) and original_dir is not None:
        path = os.path.join(original_dir, path)
    return os.path.normpath(path)


#: Environment variable with the main script's path, for the fork server's preload.
MAIN_PATH_ENV = "NOABER_BATCH_MAIN_PATH"


#: Imported last by the fork server (see :mod:`optimizer.batch_preload`).
PRELOAD_LAST = "optimizer.batch_preload"


def chunks_of(n_jobs: int, workers: int, per_worker: int = 32) -> list[range]:
    """Positions of ``n_jobs`` in at most ``per_worker`` chunks per worker, in order.

    The chunks are balanced (their sizes differ by at most one) and the larger come first,
    so the chunks handed out last are the smallest: the workers finish close together.
    """
    if n_jobs <= 0:
        return []
    n_chunks = min(n_jobs, max(1, workers * per_worker))
    size, larger = divmod(n_jobs, n_chunks)
    out, start = [], 0
    for k in range(n_chunks):
        stop = start + size + (1 if k < larger else 0)
        out.append(range(start, stop))
        start = stop
    return out


def run_batch(
    jobs: Iterable[Job],
    workers: int | None = None,
    out_dir: str | Path | None = None,
    options: SolveOptions | None = None,
    on_done: Callable[[BatchItem], None] | None = None,
    start_method: str = "forkserver",
) -> list[BatchItem]:
    """Plan every job in a process pool of ``workers`` processes (default: all cores).

    Each HiGHS run is single-threaded (``threads=1``) so the pool, not the solver, uses the
    cores. Results come back in the order of ``jobs``; ``on_done`` is called per site as its
    chunk finishes. ``workers=1`` plans in this process.
    """
    jobs = list(jobs)
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    opts = options or SolveOptions(threads=1)
    out = str(out_dir) if out_dir is not None else None
    results: list[BatchItem | None] = [None] * len(jobs)
    if workers == 1:
        for i, job in enumerate(jobs):
            results[i] = item = plan_one(job, out, opts)
            if on_done:
                on_done(item)
        return [r for r in results if r is not None]
    ctx = pool_context(start_method)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [
            pool.submit(_plan_chunk, [(i, jobs[i]) for i in chunk], out, opts)
            for chunk in chunks_of(len(jobs), workers)
        ]
        for fut in as_completed(futures):
            for i, item in fut.result():
                results[i] = item
                if on_done:
                    on_done(item)
    return [r for r in results if r is not None]


def scenario_files(directory: str | Path) -> list[Path]:
    """The scenario YAML files of a directory (sorted); an error if there are none."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NoaberError(f"not a directory: {directory}")
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        raise NoaberError(f"no scenario files (*.yaml) in {directory}")
    return files
