"""Allocation of shared energy per ISP: pure functions over integer NumPy arrays [Wh].

Every function takes per-ISP, per-member volumes as ``int64`` arrays of shape ``(T, N)``
(``T`` ISPs, ``N`` members) and returns integer results of the same shape. Members are
identified by pseudonymous refs; results never depend on the order in which members are
listed, because members are put in ref order before any arithmetic and ties in rounding are
broken by ref, not by position.

Rules that hold for every key (Fluvius, "Protocol energiedelen"; Austrian EEG rules):

* a receiver never gets more than its own offtake: ``0 <= shared_wh <= offtake_wh``;
* nothing is shared within one meter (a member's injection never covers its own offtake);
* what is not shared stays with the injector and goes to the grid;
* energy is conserved per ISP in integers: ``sum(shared_wh) == sum(supplied_wh)`` and
  ``supplied_wh <= injection_wh``;
* real-valued parts are turned into integers by the largest-remainder method
  (:func:`largest_remainder`), so the parts always sum exactly to the whole.

The keys, per ISP, with ``f`` the members' keys (summing to 1), ``I`` injection, ``O`` offtake:

* ``fixed`` (Flemish "vast", Austrian static): receiver ``r`` is offered ``f_r`` of every
  other injector's injection, once; an injector's own share stays with it.
* ``relative`` (Flemish "relatief"): injector ``j``'s keys renormalised over the receivers
  other than itself, ``f_r / (1 - f_j)``, once.
* ``optimal`` (Flemish "optimaal", iterative): the relative key, round after round, over the
  receivers still short, until nothing more can be shared. Per ISP it shares at least as much
  as ``relative``, which shares at least as much as ``fixed``.
* ``matrix`` (Dutch energy-sharing agreement, Energiewet): giver ``j`` shares a fixed
  fraction ``key[j, r]`` of its injection with each named receiver ``r`` (a row sums to at
  most 1), once.
* ``proportional`` (Austrian dynamic): the pool pro rata to offtake.
* ``priority``: receivers in a given order each fill their offtake from the pool.

In every key that offers an injector's energy to named receivers (``fixed``, ``relative``,
``optimal``, ``matrix``) what a receiver cannot use returns to the injectors pro rata to
their offers. Self-supply in the pooled keys (``proportional``, ``priority``): the pool is the
community's total injection and each receiver gets a mix of it pro rata to each injector's
injection (the EEG model). The part of that mix that would come from the receiver's own
injection is not shared; it stays on the grid for both sides. For members that do not inject
and offtake in the same ISP (the usual case) this changes nothing.

References
----------
.. [1] Fluvius, "Hoe wordt de injectie verdeeld bij energiedelen?" (vaste, relatieve en
       optimale verdeelsleutel); Sibelga, "Verdeelmethodes" (one round or several rounds).
.. [2] E-Control, "Erneuerbare-Energie-Gemeinschaften: statischer und dynamischer
       Verteilungsschlüssel", 2022: ``A_i = f_i * P`` (static), ``A_i = P * C_i / sum(C)``
       (dynamic), billable ``min(A_i, C_i)``, surplus ``max(0, P - sum(min(A_i, C_i)))``.
.. [3] Energiewet (NL): an energy-sharing agreement registered with the DSO names the giver,
       the receivers and the percentage shared per quarter-hour. See ``docs/SOURCES.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

KEY_TYPES = ("fixed", "relative", "proportional", "optimal", "priority", "matrix")
"""The allocation keys this module implements."""

_SNAP = 1e-6
"""Real values closer than this to an integer [Wh] are taken as that integer before rounding
(it removes floating-point noise so that exact results round exactly)."""


@dataclass(frozen=True)
class Allocation:
    """Result of an allocation: per ISP and member [Wh], members in the caller's order.

    Attributes
    ----------
    members : tuple[str, ...]
        Member refs, in the order the caller gave them.
    offtake_wh, injection_wh : numpy.ndarray
        Metered offtake and injection, ``int64`` ``(T, N)`` [Wh].
    shared_wh : numpy.ndarray
        Energy each member received from the community [Wh].
    supplied_wh : numpy.ndarray
        Energy each member's injection delivered to other members [Wh].
    """

    members: tuple[str, ...]
    offtake_wh: np.ndarray
    injection_wh: np.ndarray
    shared_wh: np.ndarray
    supplied_wh: np.ndarray

    @property
    def net_offtake_wh(self) -> np.ndarray:
        """Offtake not covered by the community (bought from the grid) [Wh]."""
        return self.offtake_wh - self.shared_wh

    @property
    def net_injection_wh(self) -> np.ndarray:
        """Injection not shared (to the grid) [Wh]."""
        return self.injection_wh - self.supplied_wh

    def check(self) -> None:
        """Assert every invariant of the module docstring; raises AssertionError if one fails."""
        for name in ("offtake_wh", "injection_wh", "shared_wh", "supplied_wh"):
            arr = getattr(self, name)
            if arr.dtype != np.int64:
                raise AssertionError(f"{name} has dtype {arr.dtype}, expected int64")
        if (self.shared_wh < 0).any() or (self.shared_wh > self.offtake_wh).any():
            raise AssertionError("shared_wh outside [0, offtake_wh]")
        if (self.supplied_wh < 0).any() or (self.supplied_wh > self.injection_wh).any():
            raise AssertionError("supplied_wh outside [0, injection_wh]")
        if not np.array_equal(self.shared_wh.sum(axis=1), self.supplied_wh.sum(axis=1)):
            raise AssertionError("energy not conserved: sum(shared_wh) != sum(supplied_wh)")


def ref_order(refs: Sequence[str]) -> np.ndarray:
    """Indices of the members sorted by ref: the canonical order of an allocation."""
    return np.array(sorted(range(len(refs)), key=lambda i: refs[i]), dtype=np.int64)


def ref_rank(refs: Sequence[str]) -> np.ndarray:
    """Position of each member when sorted by ref (the deterministic tie-break), ``int64``."""
    order = ref_order(refs)
    rank = np.empty(len(refs), dtype=np.int64)
    rank[order] = np.arange(len(refs))
    return rank


def largest_remainder(
    values: np.ndarray, total: np.ndarray | None = None, tiebreak: np.ndarray | None = None
) -> np.ndarray:
    """Round reals to integers that sum exactly to ``total``, row by row.

    Hamilton's largest-remainder method: every part gets the floor of its value and the
    ``total - sum(floor)`` units left go, one each, to the parts with the largest fractional
    remainders. Ties go to the part with the smallest ``tiebreak`` key (not list position).

    Parameters
    ----------
    values : numpy.ndarray
        Real parts, shape ``(T, N)`` or ``(N,)`` (negative parts round the same way: floor
        plus one unit for the largest remainders).
    total : numpy.ndarray, optional
        Integer whole per row; default ``round(sum(values))``. Must lie between the sum of the
        floors and the sum of the ceilings of the row.
    tiebreak : numpy.ndarray, optional
        Integer key per column (e.g. the rank of the member ref); default the column index.

    Returns
    -------
    numpy.ndarray
        ``int64`` of the shape of ``values``; each part is the floor or ceiling of its value.
    """
    vals = np.asarray(values, dtype=np.float64)
    one_d = vals.ndim == 1
    if one_d:
        vals = vals[None, :]
    if not np.isfinite(vals).all():
        raise ValueError("largest_remainder needs finite values")
    near = np.rint(vals)
    vals = np.where(np.abs(vals - near) < _SNAP, near, vals)
    floors = np.floor(vals)
    rem = vals - floors
    base = floors.astype(np.int64)
    if total is None:
        tot = np.rint(vals.sum(axis=1)).astype(np.int64)
    else:
        tot = np.broadcast_to(np.asarray(total, dtype=np.int64), (vals.shape[0],)).copy()
    n_ceil = (rem > 0).sum(axis=1)
    extra = tot - base.sum(axis=1)
    if (extra < 0).any() or (extra > n_ceil).any():
        bad = int(np.flatnonzero((extra < 0) | (extra > n_ceil))[0])
        raise ValueError(
            f"row {bad}: total {int(tot[bad])} is outside [sum of floors, sum of ceilings]"
        )
    if not extra.any():
        return base[0] if one_d else base
    n = vals.shape[1]
    tb = np.arange(n, dtype=np.int64) if tiebreak is None else np.asarray(tiebreak, np.int64)
    rows = np.flatnonzero(extra)
    sub = rem[rows]
    # sort by remainder descending, then by tie-break key ascending (lexsort: last key first)
    order = np.lexsort((np.broadcast_to(tb, sub.shape), -sub), axis=-1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(n)[None, :].repeat(len(rows), axis=0), axis=-1)
    base[rows] += (ranks < extra[rows, None]).astype(np.int64)
    return base[0] if one_d else base


def _as_2d_int(name: str, arr: np.ndarray) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a (T, N) array, got shape {a.shape}")
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers [Wh], got dtype {a.dtype}")
    a = a.astype(np.int64)
    if (a < 0).any():
        t, i = np.argwhere(a < 0)[0]
        raise ValueError(f"{name} must be >= 0, got {int(a[t, i])} at ISP {t}, member {i}")
    return a


def _shares_2d(shares: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    f = np.asarray(shares, dtype=np.float64)
    if f.ndim == 1:
        f = np.broadcast_to(f, shape)
    if f.shape != shape:
        raise ValueError(f"shares must have shape (N,) or {shape}, got {f.shape}")
    if (f < 0).any() or not np.isfinite(f).all():
        raise ValueError("shares must be finite and >= 0")
    sums = f.sum(axis=1)
    if (np.abs(sums - 1.0) > 1e-9).any():
        t = int(np.flatnonzero(np.abs(sums - 1.0) > 1e-9)[0])
        raise ValueError(f"shares must sum to 1 per ISP, got {sums[t]:.9f} at ISP {t}")
    return f


def _matrix_key(matrix: np.ndarray, n: int) -> np.ndarray:
    key = np.asarray(matrix, dtype=np.float64)
    if key.shape != (n, n):
        raise ValueError(f"matrix must have shape ({n}, {n}), got {key.shape}")
    if (key < 0).any() or not np.isfinite(key).all():
        raise ValueError("matrix parts must be finite and >= 0")
    if np.diagonal(key).any():
        raise ValueError("matrix diagonal must be 0: nothing is shared within one meter")
    rows = key.sum(axis=1)
    if (rows > 1.0 + 1e-9).any():
        j = int(np.flatnonzero(rows > 1.0 + 1e-9)[0])
        raise ValueError(f"matrix row {j} sums to {rows[j]:.9f}, more than 1")
    return key


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast_shapes(num.shape, den.shape))
    np.divide(num, den, out=out, where=den > 0)
    return out


def _integerize(
    shared: np.ndarray,
    supplied: np.ndarray,
    offtake: np.ndarray,
    injection: np.ndarray,
    tiebreak: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Round real shared/supplied parts to integers with equal row sums and within caps: the
    row total is the real total rounded half up, split by :func:`largest_remainder`."""
    shared = np.minimum(np.maximum(shared, 0.0), offtake)
    supplied = np.minimum(np.maximum(supplied, 0.0), injection)
    lo = np.maximum(np.floor(_snap(shared)).sum(axis=1), np.floor(_snap(supplied)).sum(axis=1))
    hi = np.minimum(np.ceil(_snap(shared)).sum(axis=1), np.ceil(_snap(supplied)).sum(axis=1))
    # halves round up, with a tolerance, so that two keys that share the same real energy
    # along different floating-point paths round to the same integer
    total = np.clip(np.floor(shared.sum(axis=1) + 0.5 + _SNAP), lo, hi).astype(np.int64)
    return (
        largest_remainder(shared, total, tiebreak),
        largest_remainder(supplied, total, tiebreak),
    )


def _snap(x: np.ndarray) -> np.ndarray:
    near = np.rint(x)
    return np.where(np.abs(x - near) < _SNAP, near, x)


def _pooled_without_self(
    received: np.ndarray, injection: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Split a pooled allocation over injectors pro rata to injection, minus self-supply.

    ``received`` [Wh] comes from a pool of total injection ``P``; receiver ``r`` gets the
    share ``I_j / P`` of it from injector ``j``. The part with ``j == r`` is not shared.
    """
    inj = injection.astype(np.float64)
    pool = inj.sum(axis=1, keepdims=True)
    self_part = _safe_div(received * inj, pool)
    shared = received - self_part
    total_received = received.sum(axis=1, keepdims=True)
    supplied = _safe_div(inj * (total_received - received), pool)
    return shared, supplied


def allocate_fixed(offtake: np.ndarray, injection: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Real-valued ``fixed`` key (Fluvius "vaste verdeelsleutel").

    Receiver ``r`` is entitled to ``f_r * I_j`` of every other injector ``j``; it receives
    ``min(f_r * sum_{j != r} I_j, O_r)``. What it cannot use returns to the injectors pro rata
    to their contribution and is not passed to others; an injector's own share stays with it.

    Returns
    -------
    numpy.ndarray
        Stacked ``(2, T, N)`` real shared and supplied energy [Wh].
    """
    inj = injection.astype(np.float64)
    others = inj.sum(axis=1, keepdims=True) - inj
    received = np.minimum(shares * others, offtake)
    ratio = _safe_div(received, others)  # share of each other injector's injection taken
    supplied = inj * (ratio.sum(axis=1, keepdims=True) - ratio)
    return np.stack([received, supplied])


def allocate_relative(offtake: np.ndarray, injection: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Real-valued ``relative`` key (Fluvius "relatieve verdeelsleutel").

    For injector ``j`` the shares are renormalised over the receivers other than ``j``:
    ``g_jr = f_r / (1 - f_j)``. Receiver ``r`` is entitled to ``sum_{j != r} g_jr I_j`` and
    receives at most its offtake; what exceeds its offtake returns to the injectors pro rata to
    what each contributed to it (that is, to their injection weighted by the renormalised
    keys). An injector whose own share is 1 has no one to share with.
    """
    inj = injection.astype(np.float64)
    weight = _safe_div(inj, 1.0 - shares)  # I_j / (1 - f_j); 0 where f_j == 1
    others = weight.sum(axis=1, keepdims=True) - weight
    entitled = shares * others
    received = np.minimum(entitled, offtake)
    ratio = _safe_div(received, others)
    supplied = weight * (ratio.sum(axis=1, keepdims=True) - ratio)
    return np.stack([received, supplied])


def allocate_proportional(offtake: np.ndarray, injection: np.ndarray) -> np.ndarray:
    """Real-valued ``proportional`` key (Austrian dynamic key): ``min(P * O_r / sum(O), O_r)``."""
    off = offtake.astype(np.float64)
    pool = injection.sum(axis=1, keepdims=True).astype(np.float64)
    demand = off.sum(axis=1, keepdims=True)
    received = off * np.minimum(1.0, _safe_div(pool, demand))
    return np.stack(_pooled_without_self(received, injection))


def allocate_matrix(offtake: np.ndarray, injection: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Real-valued ``matrix`` key (Dutch energy-sharing agreement, Energiewet).

    ``key[j, r]`` is the fraction of giver ``j``'s injection that receiver ``r`` is entitled
    to in every ISP (``key[j, j] == 0``, each row sums to at most 1). Receiver ``r`` receives
    ``min(sum_j key[j, r] * I_j, O_r)``; what exceeds its offtake returns to the givers pro
    rata to what each offered it, and so does the part of a row a giver did not share: both go
    to the grid. One round, like :func:`allocate_fixed`.

    Returns
    -------
    numpy.ndarray
        Stacked ``(2, T, N)`` real shared and supplied energy [Wh].
    """
    inj = injection.astype(np.float64)
    offer = inj @ key
    received = np.minimum(offer, offtake)
    accepted = _safe_div(received, offer)  # fraction of each receiver's offers it takes
    supplied = inj * (accepted @ key.T)
    return np.stack([received, supplied])


_TOL_WH = 1e-7
"""Real energy [Wh] below this counts as nothing left (an ISP holds at most ~1e9 Wh, so the
floating-point error of one round stays well below it)."""


def allocate_optimal(offtake: np.ndarray, injection: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Real-valued ``optimal`` key (Fluvius "optimale verdeelsleutel"): the relative key,
    round after round, over the receivers still short.

    In each round, every injector ``j`` offers what it has left, ``R_j``, to the receivers that
    still have unmet offtake and a key ``f_r > 0``, other than itself, by its keys renormalised
    over them: ``R_j * f_r / sum_{s short, s != j} f_s``. A receiver takes at most what it
    still needs; what it cannot take returns to the injectors pro rata to their offers and is
    offered again in the next round. The rounds stop when no injector has anything left for a
    receiver that is still short (at most ``N + 1`` rounds: a round that fills no receiver
    hands out everything that can be handed out). What is left goes to the grid.

    Each round is vectorised over the ISPs still in play: with ``w_j = R_j / F_j`` (``F_j``
    the key weight of the short receivers other than ``j``), receiver ``r`` is offered
    ``f_r * (sum_j w_j - w_r)`` and injector ``j`` gives ``w_j * (S - a_j)`` where ``a_r`` is
    ``f_r`` times the fraction of its offer receiver ``r`` took and ``S = sum_r a_r``.

    Returns
    -------
    numpy.ndarray
        Stacked ``(2, T, N)`` real shared and supplied energy [Wh].
    """
    n = offtake.shape[1]
    off = offtake.astype(np.float64)
    inj = injection.astype(np.float64)
    got = np.zeros_like(off)
    left = inj.copy()
    rows = np.arange(off.shape[0])
    for _ in range(n + 1):
        need = off[rows] - got[rows]
        f = shares[rows]
        short = (need > _TOL_WH) & (f > 0)
        f_short = np.where(short, f, 0.0)
        others = short.sum(axis=1, keepdims=True) - short  # short receivers other than j
        weight = np.where(others > 0, f_short.sum(axis=1, keepdims=True) - f_short, 0.0)
        r_left = left[rows]
        giving = (r_left > _TOL_WH) & (others > 0)
        keep = giving.any(axis=1)
        if not keep.all():
            rows, need, f_short, weight, r_left, giving, short = (
                a[keep] for a in (rows, need, f_short, weight, r_left, giving, short)
            )
        if rows.size == 0:
            break
        w = np.where(giving, _safe_div(r_left, weight), 0.0)
        offer = f_short * (w.sum(axis=1, keepdims=True) - w)
        take = np.minimum(offer, need)
        full = short & (offer >= need)
        a = f_short * _safe_div(take, offer)
        given = w * (a.sum(axis=1, keepdims=True) - a)
        got[rows] = np.where(full, off[rows], got[rows] + take)
        rest = r_left - given
        left[rows] = np.where(rest > _TOL_WH, rest, 0.0)
    return np.stack([got, inj - left])


def allocate_priority(offtake: np.ndarray, injection: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Real-valued ``priority`` key: receivers in ``rank`` order each fill their offtake.

    ``rank[i]`` is the position of member ``i`` in the priority order, ``-1`` for a member that
    is not a receiver.
    """
    off = np.where(rank[None, :] >= 0, offtake, 0).astype(np.float64)
    order = np.argsort(np.where(rank >= 0, rank, np.iinfo(np.int64).max), kind="stable")
    pool = injection.sum(axis=1, keepdims=True).astype(np.float64)
    o_sorted = off[:, order]
    before = np.cumsum(o_sorted, axis=1) - o_sorted
    got_sorted = np.clip(pool - before, 0.0, o_sorted)
    received = np.empty_like(got_sorted)
    received[:, order] = got_sorted
    return np.stack(_pooled_without_self(received, injection))


def allocate(
    key_type: str,
    members: Sequence[str],
    offtake_wh: np.ndarray,
    injection_wh: np.ndarray,
    shares: np.ndarray | None = None,
    order: Sequence[str] | None = None,
    matrix: np.ndarray | None = None,
) -> Allocation:
    """Allocate shared energy per ISP by one of :data:`KEY_TYPES`, in integer Wh.

    Parameters
    ----------
    key_type : str
        ``fixed``, ``relative``, ``proportional``, ``optimal``, ``priority`` or ``matrix``.
    members : sequence of str
        Member refs (unique), one per column.
    offtake_wh, injection_wh : numpy.ndarray
        Metered offtake and injection per ISP and member, integers ``>= 0``, ``(T, N)`` [Wh].
    shares : numpy.ndarray, optional
        Keys for ``fixed``, ``relative`` and ``optimal``: fractions per member ``(N,)`` or per
        ISP and member ``(T, N)``, summing to 1 per ISP [-].
    order : sequence of str, optional
        For ``priority``: member refs in order of priority; members not listed receive nothing.
    matrix : numpy.ndarray, optional
        For ``matrix``: ``(N, N)`` fractions, ``matrix[j, r]`` the part of member ``j``'s
        injection that member ``r`` is entitled to (members in the order given, zero
        diagonal, each row summing to at most 1) [-].

    Returns
    -------
    Allocation
        Integer results, members in the order given; :meth:`Allocation.check` holds.

    Raises
    ------
    ValueError
        For an unknown key, duplicate members, shapes that do not match, negative volumes,
        shares that do not sum to 1, a priority order naming an unknown member or a matrix
        with a negative part, a non-zero diagonal or a row summing to more than 1.
    """
    if key_type not in KEY_TYPES:
        raise ValueError(f"key type must be one of {', '.join(KEY_TYPES)}, got {key_type!r}")
    refs = tuple(members)
    if len(set(refs)) != len(refs):
        dup = next(m for m in refs if refs.count(m) > 1)
        raise ValueError(f"member {dup!r} appears twice")
    off = _as_2d_int("offtake_wh", offtake_wh)
    inj = _as_2d_int("injection_wh", injection_wh)
    if off.shape != inj.shape or off.shape[1] != len(refs):
        raise ValueError(
            f"offtake_wh {off.shape} and injection_wh {inj.shape} must both be (T, {len(refs)})"
        )
    # canonical (ref) order so that results cannot depend on the caller's member order
    perm = ref_order(refs)
    off_s, inj_s = off[:, perm], inj[:, perm]
    tiebreak = np.arange(len(refs), dtype=np.int64)
    if key_type in ("fixed", "relative", "optimal"):
        if shares is None:
            raise ValueError(f"key type {key_type!r} needs shares")
        f = np.asarray(shares, dtype=np.float64)
        f = f[perm] if f.ndim == 1 else f[:, perm]
        f = _shares_2d(f, off.shape)
        if key_type == "fixed":
            real = allocate_fixed(off_s, inj_s, f)
        elif key_type == "relative":
            real = allocate_relative(off_s, inj_s, f)
        else:
            real = allocate_optimal(off_s, inj_s, f)
    elif key_type == "proportional":
        real = allocate_proportional(off_s, inj_s)
    elif key_type == "matrix":
        if matrix is None:
            raise ValueError("key type 'matrix' needs a matrix")
        real = allocate_matrix(off_s, inj_s, _matrix_key(matrix, len(refs))[np.ix_(perm, perm)])
    else:
        if not order:
            raise ValueError("key type 'priority' needs an order of member refs")
        pos = {m: k for k, m in enumerate(order)}
        unknown = [m for m in order if m not in refs]
        if unknown:
            raise ValueError(f"priority order names unknown member {unknown[0]!r}")
        rank = np.array([pos.get(refs[i], -1) for i in perm], dtype=np.int64)
        real = allocate_priority(off_s, inj_s, rank)
    shared_s, supplied_s = _integerize(real[0], real[1], off_s, inj_s, tiebreak)
    inv = ref_rank(refs)
    result = Allocation(refs, off, inj, shared_s[:, inv], supplied_s[:, inv])
    result.check()
    return result
