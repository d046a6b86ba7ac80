"""Plain NumPy/pandas references for the Numba kernels (docs/SOURCES.md, Patterns: pvlib).

These compute the same results by a different route (cumulative integrals evaluated at the
bucket edges, pandas group-bys) and are used by the tests only; they are clear, not fast.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from energy.kernels.calendar import fixed_edges

WH_PER_WNS = 1.0 / 3.6e12


def effective_samples(
    ts: np.ndarray, values: np.ndarray, quality: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deduplicate (last of equal timestamps wins) and mark validity.

    Returns ``(ts, values, valid)`` of the surviving samples.
    """
    ts = np.asarray(ts, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    keep = ~pd.Index(ts).duplicated(keep="last")
    ts, values = ts[keep], values[keep]
    valid = np.isfinite(values)
    if quality is not None:
        valid &= np.asarray(quality)[keep] == 0
    return ts, values, valid


def _integrals(
    tv: np.ndarray, pv: np.ndarray, ok: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Energy [W*ns] and covered time [ns] from ``tv[0]`` to each ``x``.

    ``ok[j]`` tells whether segment ``j`` (``tv[j]`` to ``tv[j+1]``) is integrated.
    """
    if tv.size < 2:
        return np.zeros(x.shape), np.zeros(x.shape)
    dt = np.diff(tv).astype(np.float64)
    seg_e = np.where(ok, 0.5 * (pv[:-1] + pv[1:]) * dt, 0.0)
    seg_c = np.where(ok, dt, 0.0)
    cum_e = np.concatenate(([0.0], np.cumsum(seg_e)))
    cum_c = np.concatenate(([0.0], np.cumsum(seg_c)))
    j = np.clip(np.searchsorted(tv, x, side="right") - 1, 0, tv.size - 1)
    inside = (x > tv[0]) & (x < tv[-1])
    js = np.minimum(j, tv.size - 2)
    frac_t = (x - tv[js]).astype(np.float64)
    p_at = pv[js] + (pv[js + 1] - pv[js]) * frac_t / dt[js]
    part_e = np.where(inside & ok[js], 0.5 * (pv[js] + p_at) * frac_t, 0.0)
    part_c = np.where(inside & ok[js], frac_t, 0.0)
    e = np.where(x <= tv[0], 0.0, np.where(x >= tv[-1], cum_e[-1], cum_e[js] + part_e))
    c = np.where(x <= tv[0], 0.0, np.where(x >= tv[-1], cum_c[-1], cum_c[js] + part_c))
    return e, c


def power_to_edges_ref(
    ts: np.ndarray,
    power_w: np.ndarray,
    edges: np.ndarray,
    max_gap_ns: int,
    quality: np.ndarray | None = None,
) -> pd.DataFrame:
    """Reference of :func:`energy.kernels.power.power_to_edges` (timestamps sorted).

    Returns a DataFrame with one row per bucket: ``start_ns, energy_wh, mean_w, min_w, max_w,
    count, coverage, invalid_count``, and ``attrs["gaps_ns"]``, ``attrs["duplicates"]``.
    """
    ts = np.asarray(ts, dtype=np.int64)
    edges = np.asarray(edges, dtype=np.int64)
    n_dup = int(ts.size - np.unique(ts).size)
    t, v, valid = effective_samples(ts, power_w, quality)
    tv, pv = t[valid], v[valid]
    dts = np.diff(tv)
    ok = dts <= max_gap_ns
    e_cum, c_cum = _integrals(tv, pv, ok, edges)
    energy_wh = np.diff(e_cum) * WH_PER_WNS
    cov_ns = np.diff(c_cum)
    width = np.diff(edges).astype(np.float64)
    nbk = edges.size - 1
    frame = pd.DataFrame({"t": t, "v": v, "valid": valid})
    frame["b"] = np.searchsorted(edges, t, side="right") - 1
    frame = frame[(frame.b >= 0) & (frame.b < nbk)]
    good = frame[frame.valid].groupby("b")["v"].agg(["count", "min", "max", "sum", "first", "last"])
    bad = frame[~frame.valid].groupby("b")["v"].size()
    idx = np.arange(nbk)
    out = pd.DataFrame(
        {
            "start_ns": edges[:-1],
            "energy_wh": energy_wh,
            "mean_w": np.where(
                cov_ns > 0, np.diff(e_cum) / np.where(cov_ns > 0, cov_ns, 1), np.nan
            ),
            "min_w": good["min"].reindex(idx).to_numpy(),
            "max_w": good["max"].reindex(idx).to_numpy(),
            "count": good["count"].reindex(idx, fill_value=0).to_numpy().astype(np.int64),
            "coverage": cov_ns / width,
            "invalid_count": bad.reindex(idx, fill_value=0).to_numpy().astype(np.int64),
            "sum_w": good["sum"].reindex(idx, fill_value=0.0).to_numpy(),
            "first_w": good["first"].reindex(idx).to_numpy(),
            "last_w": good["last"].reindex(idx).to_numpy(),
        }
    )
    out.attrs["gaps_ns"] = np.stack([tv[:-1][~ok], tv[1:][~ok]], axis=1).astype(np.int64)
    out.attrs["duplicates"] = n_dup
    out.attrs["integral_wh"] = float(e_cum[-1] * WH_PER_WNS) if tv.size else 0.0
    return out


def power_to_buckets_ref(
    ts: np.ndarray,
    power_w: np.ndarray,
    bucket_ns: int,
    origin_ns: int,
    max_gap_ns: int,
    quality: np.ndarray | None = None,
) -> pd.DataFrame:
    """Reference of :func:`energy.kernels.power.power_to_buckets` (timestamps sorted)."""
    ts = np.asarray(ts, dtype=np.int64)
    if ts.size == 0:
        return power_to_edges_ref(ts, power_w, np.array([0, bucket_ns]), max_gap_ns).iloc[:0]
    edges = fixed_edges(int(ts.min()), int(ts.max()), bucket_ns, origin_ns)
    return power_to_edges_ref(ts, power_w, edges, max_gap_ns, quality)


def counter_to_buckets_ref(
    ts: np.ndarray,
    counter_wh: np.ndarray,
    bucket_ns: int,
    origin_ns: int,
    wrap_wh: float | None,
    max_gap_ns: int,
    quality: np.ndarray | None = None,
    wrap_tolerance: float = 0.1,
) -> pd.DataFrame:
    """Reference of :func:`energy.kernels.counters.counter_to_buckets` (timestamps sorted).

    Spreads each interval's counter advance through a cumulative, piecewise-linear energy
    curve evaluated at the bucket edges. ``attrs`` hold ``wraps_ns``, ``resets_ns``,
    ``gaps_ns`` and ``gap_energy_wh``.
    """
    ts = np.asarray(ts, dtype=np.int64)
    edges = fixed_edges(int(ts.min()), int(ts.max()), bucket_ns, origin_ns)
    t, c, valid = effective_samples(ts, counter_wh, quality)
    tv, cv = t[valid], c[valid]
    d = np.diff(cv)
    wrapped = np.zeros(d.shape, bool)
    if wrap_wh is not None:
        wrapped = (d < 0) & (d + wrap_wh <= wrap_tolerance * wrap_wh)
    reset = (d < 0) & ~wrapped
    d = np.where(wrapped, d + (wrap_wh or 0.0), np.where(reset, cv[1:], d))
    dt = np.diff(tv)
    ok = dt <= max_gap_ns
    # Energy as a piecewise-linear function of time: cumulative at the samples, gaps flat.
    cum = np.concatenate(([0.0], np.cumsum(np.where(ok, d, 0.0))))
    cov = np.concatenate(([0.0], np.cumsum(np.where(ok, dt, 0)).astype(np.float64)))

    def at(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if tv.size == 0:
            return np.zeros(x.shape)
        j = np.clip(np.searchsorted(tv, x, side="right") - 1, 0, max(tv.size - 2, 0))
        if tv.size == 1:
            return np.zeros(x.shape)
        frac = np.clip((x - tv[j]) / np.maximum(dt[j], 1), 0.0, 1.0)
        frac = np.where(ok[j], frac, 0.0)
        val = y[j] + (y[j + 1] - y[j]) * frac
        val = np.where(x <= tv[0], 0.0, val)
        return np.where(x >= tv[-1], y[-1], val)

    frame = pd.DataFrame({"t": t, "c": c, "valid": valid})
    frame["b"] = np.searchsorted(edges, t, side="right") - 1
    good = frame[frame.valid].groupby("b")["c"].agg(["count", "first", "last"])
    bad = frame[~frame.valid].groupby("b")["c"].size()
    idx = np.arange(edges.size - 1)
    out = pd.DataFrame(
        {
            "start_ns": edges[:-1],
            "energy_wh": np.diff(at(edges, cum)),
            "count": good["count"].reindex(idx, fill_value=0).to_numpy().astype(np.int64),
            "coverage": np.diff(at(edges, cov)) / np.diff(edges),
            "first_wh": good["first"].reindex(idx).to_numpy(),
            "last_wh": good["last"].reindex(idx).to_numpy(),
            "invalid_count": bad.reindex(idx, fill_value=0).to_numpy().astype(np.int64),
        }
    )
    out.attrs["wraps_ns"] = tv[1:][wrapped]
    out.attrs["resets_ns"] = tv[1:][reset]
    out.attrs["gaps_ns"] = np.stack([tv[:-1][~ok], tv[1:][~ok]], axis=1).astype(np.int64)
    out.attrs["gap_energy_wh"] = d[~ok]
    out.attrs["duplicates"] = int(ts.size - np.unique(ts).size)
    return out


def bucket_percentiles_ref(
    ts: np.ndarray,
    values: np.ndarray,
    percentiles: tuple[float, ...],
    edges: np.ndarray,
    quality: np.ndarray | None = None,
) -> pd.DataFrame:
    """Reference of :func:`energy.kernels.derived.bucket_percentiles` (pandas quantile)."""
    t, v, valid = effective_samples(ts, values, quality)
    b = np.searchsorted(edges, t, side="right") - 1
    inside = valid & (b >= 0) & (b < edges.size - 1)
    groups = pd.Series(v[inside]).groupby(b[inside])
    idx = np.arange(edges.size - 1)
    cols = {f"p{p:g}": groups.quantile(p / 100.0).reindex(idx).to_numpy() for p in percentiles}
    cols["count"] = groups.size().reindex(idx, fill_value=0).to_numpy()
    return pd.DataFrame(cols)
