"""The plan's LP written straight into highspy: the hot path behind :class:`optimizer.model.Planner`.

Why a second writer: building the Pyomo model of a 48 h site with a battery and 4 cars and
passing it to HiGHS through Pyomo's persistent interface costs 30-100x what HiGHS needs to
solve it (issue 18), and an MPC re-plan that walks every mutable parameter through Pyomo costs
30-60 ms. Pyomo stays the modelling layer and the reference: :func:`optimizer.model.build_model`
says what the model is, and this module writes exactly that LP (the same columns and rows in
the same order, the same coefficients, bounds and costs) from NumPy arrays.
``tests/optimizer/test_lp.py`` compares the two matrix by matrix (the LP Pyomo hands to HiGHS,
read back with ``Highs.getLp()``) on every scenario of the tests, so the two cannot drift: a
change to the Pyomo model that is not made here fails that test.

The order is the one Pyomo's persistent HiGHS interface produces (rows in declaration order,
columns in the order the rows first mention them):

* columns, per step ``t``: ``grid.imp``, ``grid.exp``, ``pv.used``, with a battery
  ``battery.dis`` and ``battery.ch``, then ``evs.ch[k, t]`` of the cars plugged in at ``t``,
  ``evs.dis[k, t]`` of the V2G ones and ``breach_kw[t]`` (import beyond the limit); then
  ``grid.peak`` (capacity tariff only), the battery SoC per step, the EV SoC per plugged-in
  (car, step), car by car, and ``evs.short_kwh[k, j]`` per session (the missed target);
* rows: ``balance[t]``, ``grid.peak_c[t]`` and ``grid.peak_floor_c`` (tariff only),
  ``battery.soc_c[t]`` and ``battery.final_c``, ``evs.soc_c[k, t]`` and ``evs.target_c[k, j]``,
  ``groups.limit_c[g, t]`` (charger groups: the net power of the cars behind one fuse).

Only numbers change between re-plans: :func:`lp_numbers` computes the costs and bounds of
both the first build and every update (one function, so a re-plan and a fresh build agree),
and :class:`HighsLP` hands the changed arrays to the live HiGHS model, which re-solves from
its last basis.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import highspy
import numpy as np
from numpy.typing import ArrayLike
from pyomo.common.tee import capture_output

if TYPE_CHECKING:  # the parameters are defined with the Pyomo model they describe
    from optimizer.model import ModelParams


INF = highspy.kHighsInf

_banner_lock = threading.Lock()
_banner_done = False


def new_highs() -> highspy.Highs:
    """A HiGHS instance that logs to nobody's console.

    HiGHS prints its banner to the process's stdout when the first instance is made; that
    would land in the CLI's output, so the first one is made with stdout captured.
    """
    global _banner_done
    with _banner_lock:
        if not _banner_done:
            with capture_output(capture_fd=True):
                h = highspy.Highs()
            _banner_done = True
        else:
            h = highspy.Highs()
    h.setOptionValue("log_to_console", False)
    return h


@dataclass(frozen=True)
class Layout:
    """Where each variable and constraint of the model sits in the LP (column / row numbers).

    EV arrays follow the model's index sets: ``ev_ch``, ``ev_soc``, ``ev_k``, ``ev_t`` per
    plugged-in (car, step) in ``evs.P`` order; ``ev_dis`` per V2G (car, step) in ``evs.V``
    order; ``target_k``, ``target_j`` per session in ``evs.S`` order.
    """

    n: int
    imp: np.ndarray
    exp: np.ndarray
    used: np.ndarray
    breach: np.ndarray
    bat_ch: np.ndarray | None
    bat_dis: np.ndarray | None
    bat_soc: np.ndarray | None
    peak: int | None
    ev_k: np.ndarray
    ev_t: np.ndarray
    ev_ch: np.ndarray
    ev_soc: np.ndarray
    ev_first: np.ndarray
    ev_session: np.ndarray
    v2g: np.ndarray
    ev_dis: np.ndarray
    ev_dis_of: np.ndarray
    target_k: np.ndarray
    target_j: np.ndarray
    short: np.ndarray
    n_cols: int
    n_rows: int
    rows_balance: int
    rows_bat_soc: int
    rows_ev_soc: int
    rows_target: int
    rows_group: int
    group_limit_kw: np.ndarray


@dataclass
class Matrix:
    """A row-wise sparse matrix being assembled, row by row in order."""

    starts: list[np.ndarray] = field(default_factory=list)
    index: list[np.ndarray] = field(default_factory=list)
    value: list[np.ndarray] = field(default_factory=list)
    n_rows: int = 0
    n_nz: int = 0

    def add(self, counts: ArrayLike, index: ArrayLike, value: ArrayLike) -> int:
        """Append ``len(counts)`` rows with ``counts`` entries each; returns the first row."""
        first = self.n_rows
        counts = np.asarray(counts, np.int64)
        self.starts.append(self.n_nz + np.concatenate([[0], np.cumsum(counts)[:-1]]))
        self.index.append(np.asarray(index, np.int32))
        self.value.append(np.asarray(value, float))
        self.n_rows += len(counts)
        self.n_nz += int(counts.sum())
        return first

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        return cat(self.starts, np.int32), cat(self.index, np.int32), cat(self.value, float)


def _interleave(per_row: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Row-major (index, value) arrays from equal-length columns of entries (one per row)."""
    idx = np.stack([i for i, _ in per_row], axis=1).ravel()
    val = np.stack([np.broadcast_to(v, i.shape) for i, v in per_row], axis=1).ravel()
    return idx, val


def _ev_index(p: ModelParams) -> tuple[np.ndarray, ...]:
    """The EV index sets as arrays: (k, t, session, is_first) per plugged (car, step), V2G mask."""
    ks, ts, js, first, v2g = [], [], [], [], []
    for k, ev in enumerate(p.evs):
        m = len(ev.steps)
        if not m:
            continue
        ks.append(np.full(m, k))
        ts.append(np.asarray(ev.steps, np.int64))
        js.append(np.asarray(ev.session_of, np.int64))
        starts = np.array([s.first_step for s in ev.sessions])[ev.session_of]
        first.append(np.asarray(ev.steps) == starts)
        v2g.append(np.full(m, ev.max_discharge_kw > 0))

    def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    return (
        cat(ks, np.int64),
        cat(ts, np.int64),
        cat(js, np.int64),
        cat(first, bool),
        cat(v2g, bool),
    )


def layout_of(p: ModelParams) -> tuple[Layout, Matrix]:
    """The column and row numbers of the model of ``p`` and its constraint matrix.

    The matrix depends only on the structure (:func:`optimizer.model.structure_of`): steps,
    battery efficiencies, the cars' plugged-in steps and efficiencies.
    """
    cols = _columns(p)
    a = Matrix()
    rows_balance = _balance_rows(a, cols)
    if cols["peak"] is not None:  # imp[t] + breach[t] - peak <= 0, then peak >= floor
        n, peak = cols["n"], cols["peak"]
        idx, val = _interleave(
            [
                (cols["imp"], np.array(1.0)),
                (cols["breach"], np.array(1.0)),
                (np.full(n, peak), np.array(-1.0)),
            ]
        )
        a.add(np.full(n, 3), idx, val)
        a.add(np.ones(1), np.array([peak]), np.ones(1))
    rows_bat_soc = a.n_rows
    if p.battery is not None:
        _battery_rows(a, p, cols)
    rows_ev_soc = a.n_rows
    if len(cols["ev_k"]):
        _ev_soc_rows(a, p, cols)
    rows_target = a.n_rows
    if len(cols["target_k"]):
        _target_rows(a, p, cols)
    rows_group = a.n_rows
    group_limit = _group_rows(a, p, cols)
    layout = Layout(
        **cols,
        n_rows=a.n_rows,
        rows_balance=rows_balance,
        rows_bat_soc=rows_bat_soc,
        rows_ev_soc=rows_ev_soc,
        rows_target=rows_target,
        rows_group=rows_group,
        group_limit_kw=group_limit,
    )
    return layout, a


def _columns(p: ModelParams) -> dict[str, Any]:
    """The column numbers of every variable (see the module docstring for the order)."""
    n = p.n
    bat = p.battery is not None
    ev_k, ev_t, ev_j, ev_first, ev_v2g = _ev_index(p)
    n_ev = len(ev_k)
    # columns per step: imp, exp, used, [dis, ch], ev ch (by car), ev dis (V2G, by car), breach
    n_plug = np.bincount(ev_t, minlength=n)
    fixed = 5 if bat else 3
    per_step = fixed + n_plug + np.bincount(ev_t[ev_v2g], minlength=n) + 1
    step0 = np.concatenate([[0], np.cumsum(per_step)[:-1]])
    ev_ch = np.zeros(n_ev, np.int64)
    ev_dis_all = np.zeros(n_ev, np.int64)
    if n_ev:
        by_step = np.lexsort((ev_k, ev_t))  # plugged (car, step) sorted by step, then car
        t_sorted = ev_t[by_step]
        group = np.searchsorted(t_sorted, t_sorted)  # first entry of the same step
        ev_ch[by_step] = step0[t_sorted] + fixed + np.arange(n_ev) - group
        v_sorted = ev_v2g[by_step].astype(np.int64)
        v_seen = np.cumsum(v_sorted)  # V2G cars up to and including this entry
        v_rank = v_seen - 1 - (v_seen[group] - v_sorted[group])
        ev_dis_all[by_step] = step0[t_sorted] + fixed + n_plug[t_sorted] + v_rank
    nxt = int(per_step.sum())
    peak = None
    if p.capacity_tariff_eur_per_kw > 0:
        peak, nxt = nxt, nxt + 1
    bat_soc = None
    if bat:
        bat_soc, nxt = nxt + np.arange(n), nxt + n
    dis_of = np.full(n_ev, -1)
    dis_of[ev_v2g] = np.arange(int(ev_v2g.sum()))
    sessions = [(k, j) for k, ev in enumerate(p.evs) for j, s in enumerate(ev.sessions)]
    live = [(k, j) for k, j in sessions if p.evs[k].sessions[j].first_step >= 0]
    short0 = nxt + n_ev
    return {
        "n": n,
        "imp": step0,
        "exp": step0 + 1,
        "used": step0 + 2,
        "breach": step0 + per_step - 1,
        "bat_ch": step0 + 4 if bat else None,
        "bat_dis": step0 + 3 if bat else None,
        "bat_soc": bat_soc,
        "peak": peak,
        "ev_k": ev_k,
        "ev_t": ev_t,
        "ev_ch": ev_ch,
        "ev_soc": nxt + np.arange(n_ev),
        "ev_first": ev_first,
        "ev_session": ev_j,
        "v2g": ev_v2g,
        "ev_dis": ev_dis_all[ev_v2g],
        "ev_dis_of": dis_of,
        "target_k": np.array([k for k, _ in live], np.int64),
        "target_j": np.array([j for _, j in live], np.int64),
        "short": short0 + np.arange(len(live)),
        "n_cols": short0 + len(live),
    }


def _balance_rows(a: Matrix, c: dict[str, Any]) -> int:
    """``balance[t]``: the step's own columns, in order, +1 for supply and -1 for demand."""
    total = _step_columns_total(c)
    sign = np.ones(total)
    sign[c["exp"]] = -1.0
    if c["bat_ch"] is not None:
        sign[c["bat_ch"]] = -1.0
    sign[c["ev_ch"]] = -1.0
    per_step = np.diff(np.append(c["imp"], total))  # ends with the step's breach (+1)
    return a.add(per_step, np.arange(total), sign)


def _step_columns_total(c: dict[str, Any]) -> int:
    """How many columns the per-step block has (everything before the peak and the SoCs)."""
    if c["peak"] is not None:
        return int(c["peak"])
    if c["bat_soc"] is not None:
        return int(c["bat_soc"][0])
    return int(c["n_cols"]) - len(c["ev_k"]) - len(c["short"])


def _battery_rows(a: Matrix, p: ModelParams, c: dict[str, Any]) -> None:
    """``battery.soc_c[t]``: soc[t], charge, discharge (and -soc[t-1]); then ``final_c``."""
    assert p.battery is not None
    n, soc, ch, dis = c["n"], c["bat_soc"], c["bat_ch"], c["bat_dis"]
    ch_c = -(p.dt_h * p.battery.efficiency_charge)
    dis_c = p.dt_h * (1.0 / p.battery.efficiency_discharge)
    a.add(np.ones(1, int) * 3, [soc[0], ch[0], dis[0]], [1.0, ch_c, dis_c])
    if n > 1:
        idx, val = _interleave(
            [
                (soc[1:], np.array(1.0)),
                (ch[1:], np.array(ch_c)),
                (dis[1:], np.array(dis_c)),
                (soc[:-1], np.array(-1.0)),
            ]
        )
        a.add(np.full(n - 1, 4), idx, val)
    a.add(np.ones(1), soc[-1:], np.ones(1))  # final_c


def _ev_soc_rows(a: Matrix, p: ModelParams, c: dict[str, Any]) -> None:
    """``evs.soc_c[k, t]``: soc, charge, discharge (V2G) and -soc[k, t-1] (within a session)."""
    v2g, first = c["v2g"], c["ev_first"]
    n_ev = len(c["ev_k"])
    eff = np.array([p.evs[k].efficiency for k in c["ev_k"]])
    idx = np.full((n_ev, 4), -1, np.int64)
    val = np.zeros((n_ev, 4))
    idx[:, 0], val[:, 0] = c["ev_soc"], 1.0
    idx[:, 1], val[:, 1] = c["ev_ch"], -(p.dt_h * eff)
    idx[v2g, 2], val[v2g, 2] = c["ev_dis"], p.dt_h * (1.0 / eff[v2g])
    cont = ~first
    prev_col = np.where(v2g, 3, 2)[cont]
    idx[cont, prev_col], val[cont, prev_col] = c["ev_soc"][cont] - 1, -1.0
    keep = idx.ravel() >= 0
    counts = 2 + v2g.astype(int) + cont.astype(int)
    a.add(counts, idx.ravel()[keep], val.ravel()[keep])


def _target_rows(a: Matrix, p: ModelParams, c: dict[str, Any]) -> None:
    """``evs.target_c[k, j]``: the SoC at the session's last step plus the shortfall, per
    session."""
    ev_k, ev_t, ev_soc = c["ev_k"], c["ev_t"], c["ev_soc"]
    last = np.array(
        [
            ev_soc[(ev_k == k) & (ev_t == p.evs[k].sessions[j].last_step)][0]
            for k, j in zip(c["target_k"], c["target_j"], strict=True)
        ]
    )
    idx, val = _interleave([(last, np.array(1.0)), (c["short"], np.array(1.0))])
    a.add(np.full(len(last), 2), idx, val)


def _group_rows(a: Matrix, p: ModelParams, c: dict[str, Any]) -> np.ndarray:
    """``groups.limit_c[g, t]``: + charge, - V2G discharge of each member plugged in at ``t``
    (:func:`optimizer.model.group_steps`); returns each row's limit [kW]."""
    from optimizer.model import group_steps

    rows = group_steps(p)
    if not rows:
        return np.zeros(0)
    pos = {(int(k), int(t)): i for i, (k, t) in enumerate(zip(c["ev_k"], c["ev_t"], strict=True))}
    counts, index, value, limit = [], [], [], []
    for g, t, cars in rows:
        n = 0
        for k in cars:
            i = pos[k, t]
            index.append(int(c["ev_ch"][i]))
            value.append(1.0)
            n += 1
            if c["v2g"][i]:
                index.append(int(c["ev_dis"][c["ev_dis_of"][i]]))
                value.append(-1.0)
                n += 1
        counts.append(n)
        limit.append(p.groups[g].limit_kw)
    a.add(np.array(counts), np.array(index), np.array(value))
    return np.array(limit, float)


@dataclass
class Numbers:
    """The numbers of the LP that change between re-plans (costs and bounds)."""

    col_cost: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray


def lp_numbers(p: ModelParams, lay: Layout, frozen_steps: int | None = None) -> Numbers:
    """Costs and bounds of the LP of ``p``, as :func:`optimizer.model.build_model` writes them
    (``frozen_steps=None``) or as :meth:`optimizer.model.Planner.update` sets them after a
    re-plan (``frozen_steps=k``: steps before ``k`` get zero limits and zero load, the battery's
    start SoC is clipped to its range, sessions gone before ``k`` lose their constraints)."""
    n, dt = p.n, p.dt_h
    live = np.ones(n, bool) if frozen_steps is None else np.arange(n) >= frozen_steps
    z = np.zeros(lay.n_cols)
    cost, lo, hi = z.copy(), z.copy(), z.copy()
    cost[lay.imp] = dt * p.import_price_eur_per_kwh
    cost[lay.exp] = -(dt * p.export_price_eur_per_kwh)
    hi[lay.imp] = np.where(live, p.import_limit_kw, 0.0)
    hi[lay.exp] = np.where(live, p.export_limit_kw, 0.0)
    hi[lay.used] = np.where(live, p.pv_kw, 0.0)
    cost[lay.breach] = dt * (p.import_price_eur_per_kwh + p.breach_price_eur_per_kwh)
    hi[lay.breach] = INF
    cost[lay.short] = p.shortage_price_eur_per_kwh
    hi[lay.short] = INF
    rlo = np.zeros(lay.n_rows)
    rhi = np.zeros(lay.n_rows)
    bal = slice(lay.rows_balance, lay.rows_balance + n)
    rlo[bal] = rhi[bal] = np.where(live, p.load_kw, 0.0)
    if lay.peak is not None:
        hi[lay.peak] = INF
        cost[lay.peak] = p.capacity_tariff_eur_per_kw
        rlo[n : 2 * n] = -INF
        rlo[2 * n], rhi[2 * n] = p.peak_floor_kw, INF
    b = p.battery
    if b is not None:
        assert lay.bat_ch is not None and lay.bat_dis is not None and lay.bat_soc is not None
        cost[lay.bat_ch] = cost[lay.bat_dis] = b.degradation_eur_per_kwh * dt
        hi[lay.bat_ch] = np.where(live, b.max_charge_kw, 0.0)
        hi[lay.bat_dis] = np.where(live, b.max_discharge_kw, 0.0)
        lo[lay.bat_soc], hi[lay.bat_soc] = b.soc_min_kwh, b.soc_max_kwh
        soc0 = b.soc_initial_kwh
        if frozen_steps is not None:
            soc0 = float(np.clip(soc0, b.soc_min_kwh, b.soc_max_kwh))
        r = lay.rows_bat_soc
        rlo[r] = rhi[r] = soc0
        rlo[r + n], rhi[r + n] = b.soc_final_min_kwh, INF
    if len(lay.ev_k):
        _ev_numbers(p, lay, live, frozen_steps, (cost, lo, hi, rlo, rhi))
    gr = slice(lay.rows_group, lay.rows_group + len(lay.group_limit_kw))
    rlo[gr], rhi[gr] = -lay.group_limit_kw, lay.group_limit_kw
    return Numbers(cost, lo, hi, rlo, rhi)


def _ev_numbers(
    p: ModelParams,
    lay: Layout,
    live: np.ndarray,
    frozen_steps: int | None,
    out: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """The EV part of :func:`lp_numbers` (written into ``out``: cost, lo, hi, row lo, row hi)."""
    cost, lo, hi, rlo, rhi = out
    dt, evs = p.dt_h, p.evs
    k, t = lay.ev_k, lay.ev_t
    on = live[t]
    hi[lay.ev_ch] = np.where(on, np.array([ev.max_charge_kw for ev in evs])[k], 0.0)
    v = lay.v2g  # wear on what a car discharges only (optimizer.model._ev_flows)
    cost[lay.ev_dis] = np.array([ev.degradation_eur_per_kwh * dt for ev in evs])[k[v]]
    hi[lay.ev_dis] = np.where(on[v], np.array([ev.max_discharge_kw for ev in evs])[k[v]], 0.0)
    # per session (car, j): start, target and SoC floor
    start: dict[tuple[int, int], float] = {}
    target: dict[tuple[int, int], float] = {}
    floor: dict[tuple[int, int], float] = {}
    for kk, ev in enumerate(evs):
        for j, s in enumerate(ev.sessions):
            if s.first_step < 0:
                continue
            if frozen_steps is None:
                start[kk, j], target[kk, j], floor[kk, j] = (
                    s.soc_start_kwh,
                    s.soc_target_kwh,
                    s.soc_lb_kwh,
                )
            elif s.last_step < frozen_steps:  # gone: no constraint left
                start[kk, j] = target[kk, j] = floor[kk, j] = 0.0
            else:
                start[kk, j], target[kk, j] = s.soc_start_kwh, s.soc_target_kwh
                floor[kk, j] = min(ev.soc_min_kwh, s.soc_start_kwh)
    keys = list(zip(k.tolist(), lay.ev_session.tolist(), strict=True))
    lo[lay.ev_soc] = [floor[kj] for kj in keys]
    hi[lay.ev_soc] = np.array([ev.capacity_kwh for ev in evs])[k]
    rows = lay.rows_ev_soc + np.arange(len(k))
    first = lay.ev_first
    rlo[rows[first]] = rhi[rows[first]] = [start[kj] for kj, f in zip(keys, first) if f]
    tr = lay.rows_target + np.arange(len(lay.target_k))
    rlo[tr] = [target[kj] for kj in zip(lay.target_k.tolist(), lay.target_j.tolist())]
    rhi[tr] = INF


_PROBLEMS = {highspy.HighsLogType.kWarning: "WARNING", highspy.HighsLogType.kError: "ERROR"}


def _keep_problems(log: list[str], event: highspy.HighsCallbackEvent) -> None:
    """Keep HiGHS's warning and error lines (as its console log writes them) for messages."""
    kind = _PROBLEMS.get(event.data_out.log_type)
    if kind is not None:
        log.append(f"{kind}: {event.message.strip()}")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One HiGHS run: its model status, objective and dual bound (None without), its log."""

    status: highspy.HighsModelStatus
    has_solution: bool
    objective: float | None
    bound: float | None
    log_text: str


class HighsLP:
    """The plan's LP live in one ``highspy.Highs``: build once, change numbers, re-solve.

    ``exclusive`` holds the binaries added so far as (up column, down column, y column,
    up row, down row), so a re-plan can change their big-M coefficients with the limits.
    """

    def __init__(self, p: ModelParams):
        self.layout, matrix = layout_of(p)
        self.numbers = lp_numbers(p, self.layout)
        starts, index, value = matrix.arrays()
        self.highs = h = new_highs()
        self._log: list[str] = []
        log = self._log  # the callback holds the list, not self: no cycle through HiGHS
        h.cbLogging.subscribe(lambda event: _keep_problems(log, event))
        num = self.numbers
        lay = self.layout
        h.addVars(lay.n_cols, num.col_lower, num.col_upper)
        h.changeColsCost(lay.n_cols, np.arange(lay.n_cols, dtype=np.int32), num.col_cost)
        h.addRows(lay.n_rows, num.row_lower, num.row_upper, len(index), starts, index, value)
        self.exclusive: list[tuple[int, int, int, int, int]] = []
        self.min_power: list[tuple[int, int, int]] = []  # (column, y, cap row)
        self._ev_pos = {
            (int(k), int(t)): i for i, (k, t) in enumerate(zip(lay.ev_k, lay.ev_t, strict=True))
        }

    def update(self, p: ModelParams, frozen_steps: int) -> None:
        """Load the numbers of ``p`` (same structure) with the first ``frozen_steps`` frozen."""
        old, new = self.numbers, lp_numbers(p, self.layout, frozen_steps)
        h, nr = self.highs, self.layout.n_rows
        cols = np.flatnonzero(
            (old.col_lower != new.col_lower) | (old.col_upper != new.col_upper)
        ).astype(np.int32)
        if len(cols):
            h.changeColsBounds(len(cols), cols, new.col_lower[cols], new.col_upper[cols])
        cols = np.flatnonzero(old.col_cost != new.col_cost).astype(np.int32)
        if len(cols):
            h.changeColsCost(len(cols), cols, new.col_cost[cols])
        rows = np.flatnonzero(
            (old.row_lower[:nr] != new.row_lower) | (old.row_upper[:nr] != new.row_upper)
        ).astype(np.int32)
        if len(rows):
            h.changeRowsBounds(  # type: ignore[attr-defined]  # in highspy, not in its stubs
                len(rows), rows, new.row_lower[rows], new.row_upper[rows]
            )
        self.numbers = new
        for up, down, y, r_up, r_down in self.exclusive:
            h.changeCoeff(r_up, y, -float(new.col_upper[up]))
            h.changeCoeff(r_down, y, float(new.col_upper[down]))
            h.changeRowBounds(r_down, -INF, float(new.col_upper[down]))
        for col, y, r_cap in self.min_power:
            h.changeCoeff(r_cap, y, -float(new.col_upper[col]))

    def columns_of(self, asset: str, t: int, ev_names: dict[str, int]) -> tuple[int, int] | None:
        """The (up, down) columns of an asset at step ``t`` that can flow both ways, or None."""
        lay = self.layout
        if asset == "grid":
            return int(lay.imp[t]), int(lay.exp[t])
        if asset == "battery" and lay.bat_ch is not None and lay.bat_dis is not None:
            return int(lay.bat_ch[t]), int(lay.bat_dis[t])
        pos = self._ev_pos.get((ev_names.get(asset, -1), t))
        if pos is None or not lay.v2g[pos]:
            return None
        return int(lay.ev_ch[pos]), int(lay.ev_dis[lay.ev_dis_of[pos]])

    def ev_columns(self, k: int, t: int) -> tuple[int, int | None]:
        """The (charge, discharge or None) columns of car ``k`` at plugged-in step ``t``."""
        lay = self.layout
        pos = self._ev_pos[k, t]
        dis = int(lay.ev_dis[lay.ev_dis_of[pos]]) if lay.v2g[pos] else None
        return int(lay.ev_ch[pos]), dis

    def add_min_power(self, items: list[tuple[int, int | float]]) -> None:
        """Binaries ``y`` with ``x <= x_max * y`` and ``min * y <= x`` per (column, min), as
        :func:`optimizer.model.add_min_power` writes them (zero big-M entries left out)."""
        h, hi = self.highs, self.numbers.col_upper
        m = len(items)
        first_y = h.getNumCol()
        ys = first_y + np.arange(m, dtype=np.int32)
        h.addVars(m, np.zeros(m), np.ones(m))
        h.changeColsIntegrality(m, ys, np.full(m, highspy.HighsVarType.kInteger))
        first_row = h.getNumRow()
        counts, index, value = [], [], []
        for (col, _), y in zip(items, ys, strict=True):  # cap rows: x - x_max * y <= 0
            coef = -float(hi[int(col)])
            entries = [(int(col), 1.0)] + ([(int(y), coef)] if coef != 0 else [])
            counts.append(len(entries))
            index += [c for c, _v in entries]
            value += [v for _c, v in entries]
        for (col, low), y in zip(items, ys, strict=True):  # floor rows: min * y - x <= 0
            entries = [(int(y), float(low)), (int(col), -1.0)]
            counts.append(len(entries))
            index += [c for c, _v in entries]
            value += [v for _c, v in entries]
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int32)
        h.addRows(
            2 * m,
            np.full(2 * m, -INF),
            np.zeros(2 * m),
            len(index),
            starts,
            np.array(index, np.int32),
            np.array(value),
        )
        for i, (col, _) in enumerate(items):
            self.min_power.append((int(col), int(ys[i]), first_row + i))

    def add_exclusivity(self, items: list[tuple[int, int]]) -> None:
        """Binaries ``y`` with ``up <= up_max * y`` and ``down <= down_max * (1 - y)``, as
        :func:`optimizer.model.add_exclusivity` writes them (zero big-M entries left out)."""
        h, hi = self.highs, self.numbers.col_upper
        m = len(items)
        first_y = h.getNumCol()
        ys = first_y + np.arange(m, dtype=np.int32)
        h.addVars(m, np.zeros(m), np.ones(m))
        h.changeColsIntegrality(m, ys, np.full(m, highspy.HighsVarType.kInteger))
        first_row = h.getNumRow()
        counts, index, value, upper = [], [], [], []
        for (col, _), y in zip(items, ys, strict=True):  # up rows: up - up_max * y <= 0
            coef = -float(hi[col])
            entries = [(col, 1.0)] + ([(int(y), coef)] if coef != 0 else [])
            counts.append(len(entries))
            index += [c for c, _v in entries]
            value += [v for _c, v in entries]
            upper.append(0.0)
        for (_, col), y in zip(items, ys, strict=True):  # down rows: down + down_max * y <= max
            coef = float(hi[col])
            entries = [(col, 1.0)] + ([(int(y), coef)] if coef != 0 else [])
            counts.append(len(entries))
            index += [c for c, _v in entries]
            value += [v for _c, v in entries]
            upper.append(coef)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int32)
        h.addRows(
            2 * m,
            np.full(2 * m, -INF),
            np.array(upper),
            len(index),
            starts,
            np.array(index, np.int32),
            np.array(value),
        )
        for i, (up, down) in enumerate(items):
            self.exclusive.append((up, down, int(ys[i]), first_row + i, first_row + m + i))

    def run(self, threads: int | None, time_limit_s: float, mip_gap: float) -> Outcome:
        """Solve with these options (as Pyomo's HiGHS interface sets them) and report."""
        h = self.highs
        if threads is not None:
            h.setOptionValue("threads", threads)
        h.setOptionValue("time_limit", float(time_limit_s))
        h.setOptionValue("mip_rel_gap", float(mip_gap))
        self._log.clear()
        h.run()
        info = h.getInfo()
        has = info.primal_solution_status == 2
        status = h.getModelStatus()
        bound: float | None = None
        if info.mip_node_count == -1:
            if has and status == highspy.HighsModelStatus.kOptimal:
                bound = info.objective_function_value
        else:
            bound = info.mip_dual_bound
        return Outcome(
            status,
            has,
            info.objective_function_value if has else None,
            bound,
            "\n".join(self._log),
        )

    def values(self) -> np.ndarray:
        """The primal solution of the last run, one value per column."""
        return np.asarray(self.highs.getSolution().col_value, float)
