"""Optimizer benchmark: build and solve times, objective, batch throughput, Pyomo overhead.

    python bench/optimizer_bench.py           # (a), (a) direct in highspy, (b), (c)
    python bench/optimizer_bench.py --quick   # (a) and its highspy comparison only

(a) 48 h at 15 min, battery + 4 V2G EVs        target: build + solve <= 0.5 s
(b) 7 days at 15 min, battery + 20 V2G EVs     target: <= 5 s at <= 0.5 % gap
(c) 100 sites of kind (a), process pool, 2 cores  target: <= 30 s
and (a) built directly with highspy (same LP, same data) as the baseline for what Pyomo
costs: the ratios printed are Pyomo / highspy. The machine is shared: figures are noisy.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import highspy  # imported here so no import time lands in a timing
import numpy as np
from scipy.sparse import coo_matrix

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optimizer.batch import run_batch
from optimizer.model import (
    ModelParams,
    Planner,
    SolveOptions,
    params_from_scenario,
    steps_needing_binaries,
)
from optimizer.synthetic import synthetic_scenario


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
        deg = dt * ev.degradation_eur_per_kwh
        first = np.array([s.first_step for s in ev.sessions])[ev.session_of]
        lo_soc = np.array([s.soc_lb_kwh for s in ev.sessions])[ev.session_of]
        ch = add_cols(np.zeros(m), np.full(m, ev.max_charge_kw), np.full(m, deg))
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
        for j, s in enumerate(ev.sessions):  # departure targets as bounds on the last SoC
            if s.first_step >= 0:
                last = int(np.flatnonzero(ev.session_of == j)[-1])
                lb[-1][last] = max(lb[-1][last], s.soc_target_kwh)
    A = coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows_i), np.concatenate(rows_j))),
        shape=(nrows, offset),
    ).tocsc()
    lp = highspy.HighsLp()
    lp.num_col_ = offset
    lp.num_row_ = nrows
    lp.col_cost_ = np.concatenate(cost)
    lp.col_lower_ = np.concatenate(lb)
    lp.col_upper_ = np.where(np.isfinite(np.concatenate(ub)), np.concatenate(ub), inf)
    lp.row_lower_ = np.concatenate(row_lo)
    lp.row_upper_ = np.concatenate(row_hi)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr
    lp.a_matrix_.index_ = A.indices
    lp.a_matrix_.value_ = A.data
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(lp)
    t1 = time.perf_counter()
    h.run()
    t2 = time.perf_counter()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"highspy direct: {h.modelStatusToString(h.getModelStatus())}")
    return t1 - t0, t2 - t1, h.getInfo().objective_function_value


def pyomo_run(
    sc, gap: float = 0.005, mutable_bounds: bool = False
) -> tuple[float, float, float, object]:
    """One plan as ``noaber optimize`` makes it (fixed bounds), or MPC-ready (mutable bounds)."""
    p = params_from_scenario(sc)
    t0 = time.perf_counter()
    planner = Planner(p, SolveOptions(mip_gap=gap, time_limit_s=120), mutable_bounds=mutable_bounds)
    result = planner.solve()
    total = time.perf_counter() - t0
    return planner.build_s, result.solve_s, total, result


def bench_a(repeats: int) -> dict:
    sc = synthetic_scenario(days=2, n_evs=4, seed=1)
    p = params_from_scenario(sc)
    assert len(steps_needing_binaries(p)) == 0 and p.capacity_tariff_eur_per_kw == 0
    best = None
    for _ in range(repeats):
        build, solve, total, result = pyomo_run(sc)
        if best is None or total < best[2]:
            best = (build, solve, total, result)
    mpc = min((pyomo_run(sc, mutable_bounds=True) for _ in range(repeats)), key=lambda x: x[2])
    hb = min((highspy_direct(p) for _ in range(repeats)), key=lambda x: x[0] + x[1])
    assert best is not None
    build, solve, total, result = best
    print(
        f"(a) 48 h x 15 min, battery + 4 V2G EVs: {p.n} steps, {sum(len(e.steps) for e in p.evs)} plugged EV-steps"
    )
    print(
        f"    pyomo+HiGHS  build {build:.3f} s  solve {solve:.3f} s  total {total:.3f} s  "
        f"objective {result.objective_eur:.4f} EUR  ({'MIP' if result.mip else 'LP'}, {result.status})  "
        f"target <= 0.5 s: {'met' if total <= 0.5 else 'NOT met'}"
    )
    print(
        f"    pyomo+HiGHS, mutable bounds (MPC-ready model)  build {mpc[0]:.3f} s  solve {mpc[1]:.3f} s  "
        f"total {mpc[2]:.3f} s  objective {mpc[3].objective_eur:.4f} EUR"
    )
    print(
        f"    highspy      build {hb[0]:.3f} s  solve {hb[1]:.3f} s  total {hb[0] + hb[1]:.3f} s  objective {hb[2]:.4f} EUR"
    )
    print(
        f"    ratio pyomo/highspy: build x{build / hb[0]:.1f}, solve x{solve / hb[1]:.1f}, "
        f"total x{total / (hb[0] + hb[1]):.1f}; objectives differ by {abs(result.objective_eur - hb[2]):.2e} EUR"
    )
    if abs(result.objective_eur - hb[2]) > 1e-4 * max(1.0, abs(hb[2])):
        raise SystemExit("pyomo and highspy objectives disagree")
    return {"total_s": total}


def bench_b() -> None:
    sc = synthetic_scenario(days=7, n_evs=20, seed=2, negative_prices=True)
    build, solve, total, result = pyomo_run(sc, gap=0.005)
    gap = result.gap if result.gap is not None else 0.0
    print(
        f"(b) 7 days x 15 min, battery + 20 V2G EVs (negative prices around noon): {result.params.n} steps"
    )
    print(
        f"    pyomo+HiGHS  build {build:.3f} s  solve {solve:.3f} s  total {total:.3f} s  objective "
        f"{result.objective_eur:.4f} EUR  ({f'MIP, {result.n_binaries} binaries' if result.mip else 'LP'}, "
        f"gap {100 * gap:.3f} %)  target <= 5 s at <= 0.5 %: {'met' if total <= 5 and gap <= 0.005 else 'NOT met'}"
    )


def bench_c(n_sites: int, workers: int) -> None:
    jobs = [synthetic_scenario(days=2, n_evs=4, seed=100 + i) for i in range(n_sites)]
    t0 = time.perf_counter()
    items = run_batch(jobs, workers=workers)
    wall = time.perf_counter() - t0
    ok = [i for i in items if i.ok]
    serial = sum(i.wall_s for i in ok)
    print(
        f"(c) {n_sites} sites of kind (a), process pool of {workers}: wall {wall:.2f} s "
        f"({len(ok)} ok, {len(items) - len(ok)} failed); sum of per-site times {serial:.2f} s, "
        f"speed-up x{serial / wall:.2f} over one process  target <= 30 s: {'met' if wall <= 30 else 'NOT met'}"
    )
    if len(ok) != len(items):
        raise SystemExit(f"batch failures: {[i.error for i in items if not i.ok][:3]}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="run (a) and its highspy comparison only")
    ap.add_argument("--sites", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    bench_a(repeats=2 if args.quick else 3)
    if not args.quick:
        bench_b()
        bench_c(args.sites, args.workers)
    print(f"bench wall time {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
