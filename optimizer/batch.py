"""Many independent sites planned in parallel: a process pool over scenarios.

Each worker reads, plans and writes one scenario; a failure of one site is recorded with its
reason and does not stop the others (a province-wide nightly run must not lose 99 plans
because of one bad file).
"""

from __future__ import annotations

import multiprocessing
import os
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
    """The outcome of one site: ``summary`` (see :func:`optimizer.report.compare`) or ``error``."""

    name: str
    ok: bool
    summary: dict[str, Any] | None
    error: str | None
    wall_s: float
    schedule_csv: str | None = None


def plan_one(
    job: Scenario | str | Path, out_dir: str | None = None, options: SolveOptions | None = None
) -> BatchItem:
    """Plan one scenario (object or YAML path); never raises for a user error."""
    t0 = time.perf_counter()
    name = str(job) if not isinstance(job, Scenario) else job.site.name
    try:
        scenario = job if isinstance(job, Scenario) else load_scenario(job)
        name = scenario.site.name
        result = plan(scenario, options)
        summary = compare(scenario, result)
        csv = None
        if out_dir is not None:
            csv = str(write_schedule_csv(result.flows, Path(out_dir) / f"{name}.csv"))
        return BatchItem(name, True, summary, None, time.perf_counter() - t0, csv)
    except (NoaberError, ValueError, OSError) as exc:
        return BatchItem(name, False, None, str(exc), time.perf_counter() - t0)


def run_batch(
    jobs: Iterable[Scenario | str | Path],
    workers: int | None = None,
    out_dir: str | Path | None = None,
    options: SolveOptions | None = None,
    on_done: Callable[[BatchItem], None] | None = None,
) -> list[BatchItem]:
    """Plan every job in a process pool of ``workers`` processes (default: all cores).

    Each HiGHS run is single-threaded (``threads=1``) so the pool, not the solver, uses the
    cores. Results come back in the order of ``jobs``. Workers are spawned processes.
    """
    jobs = list(jobs)
    workers = workers or os.cpu_count() or 1
    opts = options or SolveOptions(threads=1)
    out = str(out_dir) if out_dir is not None else None
    results: list[BatchItem | None] = [None] * len(jobs)
    if workers == 1:
        for i, job in enumerate(jobs):
            results[i] = plan_one(job, out, opts)
            if on_done:
                on_done(results[i])  # type: ignore[arg-type]
    else:
        # spawn, not fork: a forked copy of a process that has run HiGHS (threads) can hang
        # or fail; spawned workers import the optimizer once and then plan many sites.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(plan_one, job, out, opts): i for i, job in enumerate(jobs)}
            for fut in as_completed(futures):
                item = fut.result()
                results[futures[fut]] = item
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
