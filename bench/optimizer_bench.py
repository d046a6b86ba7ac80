"""Optimizer benchmark: plans, MPC re-plans and batches at two or more sizes (issue 18).

    python bench/optimizer_bench.py           # everything, full sizes (make bench)
    python bench/optimizer_bench.py --quick   # small sizes, few repeats (run by the tests)

Every figure is printed with its baseline measured in the same run: the same LP built and
solved directly in highspy (:func:`highspy_direct`, written independently of
``optimizer/lp.py``; its objective is a second check of the plan's). Targets:

(a) 48 h at 15 min, battery + 4 V2G EVs: build + solve <= 0.05 s, build <= 10x raw highspy
(b) 7 days at 15 min, battery + 20 V2G EVs: <= 0.6 s
(m) MPC re-plan step (48 h horizon, 4 EVs): <= 20 ms
(c) 100 sites of kind (a) on 2 cores: <= 4 s and >= 1.8x over one process (also 25 and 200)
(r) a day's MPC replayed through an in-process plant: realised cost within 1 % of the plan's,
    grid limits held in every step (:mod:`optimizer.replay`)
Each is printed at two or more sizes (steps, EVs, sites) so the scaling shows. The machine
is shared: the load average is printed first; read the ratios, not only the seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import highspy  # imported here so no import time lands in a timing
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optimizer.batch import chunks_of, ping, pool_context, run_batch, worker_imports
from optimizer.lp import new_highs
from optimizer.model import (
    ModelParams,
    Plan,
    SolveOptions,
    params_from_scenario,
    plan,
)
from optimizer.mpc import MPCController, RecordingSink
from optimizer.scenario import Scenario
from optimizer.synthetic import synthetic_scenario

OPTS = SolveOptions(threads=1, time_limit_s=120)


def highspy_direct(p: ModelParams) -> tuple[float, float, float]:
    """The LP of :func:`optimizer.model.build_model` written straight into highspy.

    Returns (build_s, solve_s, objective_eur). Only for scenarios that need no binaries
    and have no capacity tariff (as (a) here); the bench checks both.
    """
    t0 = time.perf_counter()
    n, dt = p.n, p.dt_h
    inf = highspy.kHighsInf
    lb: list[np.ndarray] = []
    ub: list[np.ndarray] = []
    cost: list[np.ndarray] = []
    offset = 0

    def add_cols(lo: np.ndarray, hi: np.ndarray, c: np.ndarray) -> int:
        nonlocal offset
        lb.append(lo)
        ub.append(hi)
        cost.append(c)
        start = offset
        offset += len(lo)
        return start

    z = np.zeros(n)
    imp = add_cols(z, p.import_limit_kw, dt * p.import_price_eur_per_kwh)
    exp = add_cols(z, p.export_limit_kw, -dt * p.export_price_eur_per_kwh)
    pv = add_cols(z, p.pv_kw, z)
    # import beyond the limit, priced (the model's soft site limit)
    breach = add_cols(
        z, np.full(n, inf), dt * (p.import_price_eur_per_kwh + p.breach_price_eur_per_kwh)
    )
    rows_i: list[np.ndarray] = []
    rows_j: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    row_lo: list[np.ndarray] = []
    row_hi: list[np.ndarray] = []
    nrows = 0

    def entries(r: np.ndarray, c: np.ndarray, v: np.ndarray | float) -> None:
        rows_i.append(np.asarray(r))
        rows_j.append(np.asarray(c))
        vals.append(np.broadcast_to(np.asarray(v, float), np.shape(r)).copy())

    T = np.arange(n)
    bal = nrows
    nrows += n
    row_lo.append(p.load_kw)
    row_hi.append(p.load_kw)
    entries(bal + T, imp + T, 1.0)
    entries(bal + T, exp + T, -1.0)
    entries(bal + T, pv + T, 1.0)
    entries(bal + T, breach + T, 1.0)
    if p.battery is not None:
        b = p.battery
        deg = dt * b.degradation_eur_per_kwh
        ch = add_cols(z, np.full(n, b.max_charge_kw), np.full(n, deg))
        dis = add_cols(z, np.full(n, b.max_discharge_kw), np.full(n, deg))
        soc = add_cols(np.full(n, b.soc_min_kwh), np.full(n, b.soc_max_kwh), z)
        entries(bal + T, ch + T, -1.0)
        entries(bal + T, dis + T, 1.0)
        r = nrows
        nrows += n  # soc[t] - soc[t-1] - dt*ec*ch + dt*dis/ed = 0 (soc[-1] = soc0 on the rhs)
        rhs = np.zeros(n)
        rhs[0] = b.soc_initial_kwh
        row_lo.append(rhs)
        row_hi.append(rhs)
        entries(r + T, soc + T, 1.0)
        entries(r + T[1:], soc + T[:-1], -1.0)
        entries(r + T, ch + T, -dt * b.efficiency_charge)
        entries(r + T, dis + T, dt / b.efficiency_discharge)
        lb[-1][-1] = max(lb[-1][-1], b.soc_final_min_kwh)  # final floor as a bound
    for ev in p.evs:
        m = len(ev.steps)
        if m == 0:
            continue
        steps = ev.steps
        deg = dt * ev.degradation_eur_per_kwh  # on V2G discharge only, as the model
        first = np.array([s.first_step for s in ev.sessions])[ev.session_of]
        lo_soc = np.array([s.soc_lb_kwh for s in ev.sessions])[ev.session_of]
        ch = add_cols(np.zeros(m), np.full(m, ev.max_charge_kw), np.zeros(m))
        dis = add_cols(np.zeros(m), np.full(m, ev.max_discharge_kw), np.full(m, deg))
        soc = add_cols(lo_soc, np.full(m, ev.capacity_kwh), np.zeros(m))
        k = np.arange(m)
        entries(bal + steps, ch + k, -1.0)
        entries(bal + steps, dis + k, 1.0)
        r = nrows
        nrows += m
        is_first = steps == first
        rhs = np.where(
            is_first, np.array([s.soc_start_kwh for s in ev.sessions])[ev.session_of], 0.0
        )
        row_lo.append(rhs)
        row_hi.append(rhs)
        entries(r + k, soc + k, 1.0)
        cont = np.flatnonzero(~is_first)
        entries(r + cont, soc + cont - 1, -1.0)
        entries(r + k, ch + k, -dt * ev.efficiency)
        entries(r + k, dis + k, dt / ev.efficiency)
        for j, s in enumerate(ev.sessions):  # soft targets: soc[last] + short >= target
            if s.first_step >= 0:
                last = int(np.flatnonzero(ev.session_of == j)[-1])
                short = add_cols(
                    np.zeros(1), np.full(1, inf), np.full(1, p.shortage_price_eur_per_kwh)
                )
                entries(np.array([nrows]), np.array([soc + last]), 1.0)
                entries(np.array([nrows]), np.array([short]), 1.0)
                row_lo.append(np.array([s.soc_target_kwh]))
                row_hi.append(np.array([inf]))
                nrows += 1
    # column-wise (CSC) by sorting the triplets; no scipy: a main module that imports scipy
    # makes every fork-server worker of the batch (c) slow to start
    a_row, a_col, a_val = np.concatenate(rows_i), np.concatenate(rows_j), np.concatenate(vals)
    order = np.lexsort((a_row, a_col))
    a_start = np.concatenate([[0], np.cumsum(np.bincount(a_col, minlength=offset))])
    lp = highspy.HighsLp()
    lp.num_col_ = offset
    lp.num_row_ = nrows
    lp.col_cost_ = np.concatenate(cost)
    lp.col_lower_ = np.concatenate(lb)
    lp.col_upper_ = np.where(np.isfinite(np.concatenate(ub)), np.concatenate(ub), inf)
    lp.row_lower_ = np.concatenate(row_lo)
    lp.row_upper_ = np.concatenate(row_hi)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a_start.astype(np.int32)
    lp.a_matrix_.index_ = a_row[order].astype(np.int32)
    lp.a_matrix_.value_ = a_val[order]
    h = new_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.passModel(lp)
    t1 = time.perf_counter()
    h.run()
    t2 = time.perf_counter()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"highspy direct: {h.modelStatusToString(h.getModelStatus())}")
    return t1 - t0, t2 - t1, h.getInfo().objective_function_value


def _best(fn, repeats: int):  # the fastest of ``repeats`` runs (the least disturbed by others)
    return min((fn() for _ in range(repeats)), key=lambda r: r[0])


def _noaber(sc: Scenario, engine: str) -> tuple[float, float, float, Plan]:
    """(total, build, solve, plan) of one plan as ``noaber optimize`` makes it."""
    t0 = time.perf_counter()
    result = plan(sc, OPTS, engine=engine)
    return time.perf_counter() - t0, result.build_s, result.solve_s, result


def _raw(p: ModelParams) -> tuple[float, float, float, float]:
    build, solve, objective = highspy_direct(p)
    return build + solve, build, solve, objective


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _check(a: float, b: float, what: str) -> None:
    if abs(a - b) > 1e-6 * max(1.0, abs(b)):
        raise SystemExit(f"{what}: objectives disagree, {a!r} against {b!r}")


def bench_plan(label: str, sc: Scenario, repeats: int, pyomo: bool) -> dict[str, float]:
    """One site: the highspy path, the Pyomo reference and raw highspy, best of ``repeats``."""
    p = params_from_scenario(sc)
    assert p.capacity_tariff_eur_per_kw == 0  # highspy_direct has no tariff
    fast = _best(lambda: _noaber(sc, "highs"), repeats)
    raw = _best(lambda: _raw(p), repeats)
    if fast[3].mip:
        raise SystemExit(f"{label}: the plan needed binaries; highspy_direct has none")
    _check(fast[3].objective_eur, raw[3], label)
    print(
        f"{label}: {p.n} steps, {len(p.evs)} EVs, {sum(len(e.steps) for e in p.evs)} plugged EV-steps"
    )
    print(
        f"    noaber (highspy path)  total {fast[0]:.4f} s  build {fast[1]:.4f} s  "
        f"solve {fast[2]:.4f} s  objective {fast[3].objective_eur:.6f} EUR"
    )
    print(
        f"    raw highspy (baseline) total {raw[0]:.4f} s  build {raw[1]:.4f} s  "
        f"solve {raw[2]:.4f} s  objective {raw[3]:.6f} EUR"
    )
    out = {"total": fast[0], "build": fast[1], "raw_total": raw[0], "raw_build": raw[1]}
    line = f"    ratio to raw highspy: total x{fast[0] / raw[0]:.2f}, build x{fast[1] / raw[1]:.1f}"
    if pyomo:
        ref = _best(lambda: _noaber(sc, "pyomo"), max(1, repeats // 2))
        _check(ref[3].objective_eur, fast[3].objective_eur, label + " (pyomo)")
        print(
            f"    pyomo reference        total {ref[0]:.4f} s  build {ref[1]:.4f} s  "
            f"solve {ref[2]:.4f} s  objective {ref[3].objective_eur:.6f} EUR"
        )
        line += f"; pyomo total x{ref[0] / raw[0]:.1f}, pyomo build x{ref[1] / raw[1]:.1f}"
        out["pyomo_total"] = ref[0]
    print(line)
    return out


def bench_a(quick: bool) -> None:
    repeats = 3 if quick else 7
    sizes = (1, 2) if quick else (1, 2, 4)
    for days in sizes:
        sc = synthetic_scenario(days=days, n_evs=4, seed=1)
        # the Pyomo reference is slow; tests/optimizer/test_lp.py checks it in the suite
        r = bench_plan(f"(a) {24 * days} h x 15 min, battery + 4 V2G EVs", sc, repeats, not quick)
        if days == 2:
            print(
                f"    target (48 h) build + solve <= 0.05 s: {_met(r['total'] <= 0.05)}; "
                f"build <= 10x raw highspy: {_met(r['build'] <= 10 * r['raw_build'])}"
            )


def bench_b(quick: bool) -> None:
    cases = ((2, 10),) if quick else ((2, 20), (7, 20))
    for days, n_evs in cases:
        sc = synthetic_scenario(days=days, n_evs=n_evs, seed=2, negative_prices=True)
        r = bench_plan(
            f"(b) {days} days x 15 min, battery + {n_evs} V2G EVs, negative prices",
            sc,
            2 if quick else 3,
            pyomo=not quick,
        )
        if days == 7:
            print(f"    target (7 days, 20 EVs) <= 0.6 s: {_met(r['total'] <= 0.6)}")


class _Clock:
    def __init__(self, start: pd.Timestamp):
        self.now = start

    def __call__(self) -> pd.Timestamp:
        return self.now


def mpc_steps(hours: int, n_steps: int) -> tuple[list[float], MPCController]:
    """Wall time of each MPC step (plan + setpoints) over ``n_steps`` 15-minute steps."""
    full = synthetic_scenario(days=hours / 24 + 1, n_evs=4, seed=3)
    horizon = pd.Timedelta(hours=hours)

    def window(now: pd.Timestamp) -> Scenario:
        s = full.series
        return full.replace(series=s[(s.index >= now) & (s.index < now + horizon)])

    clock = _Clock(full.start + pd.Timedelta(hours=6))

    async def measure() -> dict[str, float]:
        return {"battery": 50.0}

    mpc = MPCController(window, measure, RecordingSink(), clock=clock, options=OPTS)

    async def go() -> list[float]:
        times = []
        for _ in range(n_steps):
            t0 = time.perf_counter()
            await mpc.step()
            times.append(time.perf_counter() - t0)
            clock.now += pd.Timedelta(minutes=15)
        return times

    return asyncio.run(go()), mpc


def bench_m(quick: bool) -> None:
    n_steps = 4 if quick else 24
    for hours in (24, 48):
        times, mpc = mpc_steps(hours, n_steps)
        st = mpc.status
        if st.failures:
            raise SystemExit(f"MPC failed: {st.last_error}")
        replans = times[1:]  # the first step builds the model
        assert mpc.last_scenario is not None
        last = params_from_scenario(mpc.last_scenario)
        raw = _best(lambda last=last: _raw(last), 3)
        med = statistics.median(replans)
        print(
            f"(m) MPC, {hours} h horizon, battery + 4 V2G EVs: {n_steps} steps, {st.rebuilds} "
            f"build(s); re-plan step median {1000 * med:.1f} ms, max {1000 * max(replans):.1f} ms "
            f"(first step with build {1000 * times[0]:.1f} ms)"
        )
        print(
            f"    raw highspy build + solve of the last window {1000 * raw[0]:.1f} ms: "
            f"re-plan step x{med / raw[0]:.2f}"
            + (f"  target <= 20 ms: {_met(med <= 0.020)}" if hours == 48 else "")
        )


def bench_replay(quick: bool) -> None:
    """(r) The MPC's setpoints and PV limits replayed through an in-process plant
    (:mod:`optimizer.replay`): the realised cost of what the grid meter measured against the
    first plan's, and the steps where a grid limit broke (target: within 1 %, none)."""
    from optimizer.replay import replay

    n_evs, steps = (1, 72) if quick else (4, 96)
    sc = synthetic_scenario(days=1, n_evs=n_evs, seed=3)
    series = sc.series.iloc[96 - steps :].copy()
    series["grid_export_limit_kw"] = 0.0  # no export allowed: curtailment at noon
    t0 = time.perf_counter()
    r = replay(sc.replace(series=series, pv_assets={"pv": 40.0}), OPTS)
    wall = time.perf_counter() - t0
    print(
        f"(r) replay of {r.steps} MPC steps (battery + {n_evs} V2G EV(s), no export allowed): "
        f"realised EUR {r.realised_eur:.4f} vs planned EUR {r.planned_eur:.4f}, "
        f"realised/planned x{r.ratio:.6f}; curtailed {r.curtailed_kwh:.1f} kWh; steps over the "
        f"import/export limit {r.import_over_limit_steps}/{r.export_over_limit_steps}; "
        f"{r.failures} failed; {wall:.1f} s ({1000 * wall / r.steps:.0f} ms a step)"
    )
    ok = abs(r.ratio - 1) <= 0.01 and not (r.import_over_limit_steps or r.export_over_limit_steps)
    print(f"    target within 1 %, no limit broken: {_met(ok)}")
    if not ok or r.failures:
        raise SystemExit("the replay did not carry out the plan (see the (r) line)")


def _autogroup() -> bool:
    """Whether Linux groups the CPU share per session (``kernel.sched_autogroup_enabled``)."""
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


def bench_c(site_counts: tuple[int, ...], workers: int, methods: tuple[str, ...]) -> None:
    """(c) The batch pool: its start-up, what a worker imports, the transfer, then each size.

    Fairness: the one-process baseline plans the same sites in this (warm) process in the same
    run, just before the pool; both exclude the imports. The pool's time includes forking its
    workers from the fork server (already up: its own start-up is the first line, and is paid
    once per program), chunking, transfer and collecting the results.
    """
    startup: dict[str, float] = {}
    for method in methods:
        t0 = time.perf_counter()
        with ProcessPoolExecutor(max_workers=workers, mp_context=pool_context(method)) as pool:
            list(pool.map(ping, range(workers)))
        startup[method] = time.perf_counter() - t0
        print(
            f"(c) pool start-up ({method}, {workers} workers, until each answered once): "
            f"{startup[method]:.2f} s"
            + ("  (the fork server stays up for later pools)" if method == "forkserver" else "")
        )
    if "forkserver" in methods:
        probe = synthetic_scenario(days=2, n_evs=4, seed=99)
        ctx = pool_context("forkserver")
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            _pid, extra = pool.submit(worker_imports, probe).result()
        print(
            f"(c) a worker imports {len(extra)} module(s) itself beyond the fork server's "
            f"preload while planning a site" + (f": {', '.join(extra[:8])}" if extra else "")
        )
    if _autogroup() and os.getloadavg()[0] > (os.cpu_count() or 1):
        print(
            "(c) note: the kernel shares the CPU per session (sched_autogroup) and others are "
            "busy, so this session's share does not grow with its workers: the speed-up is "
            "only meaningful on a quiet machine"
        )
    for n_sites in site_counts:
        jobs = [synthetic_scenario(days=2, n_evs=4, seed=100 + i) for i in range(n_sites)]
        t0 = time.perf_counter()
        serial = run_batch(jobs, workers=1)
        serial_s = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        items = run_batch(jobs, workers=workers)
        wall, parent_cpu = time.perf_counter() - t0, time.process_time() - c0
        ok = [i for i in items if i.ok]
        if n_sites == site_counts[0]:
            print(
                f"(c) transfer per site: {len(pickle.dumps(jobs[0]))} bytes out (scenario), "
                f"{len(pickle.dumps(items[0]))} bytes back (summary); jobs go in "
                f"{len(chunks_of(n_sites, workers))} chunks for {n_sites} sites"
            )
        if len(ok) != len(items):
            raise SystemExit(f"batch failures: {[i.error for i in items if not i.ok][:3]}")
        for a, b in zip(serial, items, strict=True):
            assert a.summary is not None and b.summary is not None
            _check(b.summary["objective_eur"], a.summary["objective_eur"], f"site {a.name}")
        line = (
            f"(c) {n_sites} sites of kind (a): one process {serial_s:.2f} s, pool of {workers} "
            f"(forkserver) {wall:.2f} s, speed-up x{serial_s / wall:.2f}; "
            f"{1000 * wall / n_sites:.1f} ms per site"
        )
        if n_sites == 100:
            line += f"  target <= 4 s: {_met(wall <= 4)}, >= x1.8: {_met(serial_s / wall >= 1.8)}"
        print(line)
        print(
            f"    the parent's own CPU time while the pool ran: {parent_cpu:.2f} s "
            f"({100 * parent_cpu / wall:.0f} % of one core); with the fork server's start-up "
            f"the pool takes {wall + startup.get('forkserver', 0.0):.2f} s "
            f"(x{serial_s / (wall + startup.get('forkserver', 0.0)):.2f})"
        )
        cpu_serial = sum(i.cpu_s for i in serial)
        cpu_pool = sum(i.cpu_s for i in items)
        print(
            f"    CPU time of the sites (HiGHS single-threaded): one process {cpu_serial:.2f} s, "
            f"in the pool {cpu_pool:.2f} s (x{cpu_pool / cpu_serial:.2f}); on {workers} free "
            f"cores the pool would take about {cpu_pool / workers:.2f} s plus its start"
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average (1, 5, 15 min): {load} on {os.cpu_count()} cores")
    bench_a(args.quick)
    bench_b(args.quick)
    bench_m(args.quick)
    bench_replay(args.quick)
    if args.quick:
        bench_c((2, 4), args.workers, ("forkserver",))
    else:
        bench_c((25, 100, 200), args.workers, ("forkserver", "spawn"))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average at the end: {load}; bench wall time {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
