"""Storage provenance: how much of what a battery or EV delivers is green.

A store carries the origin of its contents. Energy charged from shared community solar is
green, energy from the grid is not. A charge of ``C`` Wh of which ``G`` Wh green adds
``eta * C`` to the contents and ``eta * G`` to the green contents (``eta`` the one-way
efficiency; the losses ``(1 - eta) * C`` are taken pro rata from green and grey). A discharge
of ``D`` Wh carries the stored green share pro rata: ``D * green / contents``. Discharge beyond
the known contents (a store that started with unknown contents) counts as grey.

All arithmetic is exact in integers: with ``eta = p / q`` contents are kept in units of
``1/q`` Wh and the green part of a discharge is rounded down to whole Wh, the remainder
staying in the store for later (so green is never overstated and nothing drifts).

References
----------
GHG Protocol Scope 2 Guidance (2015), ch. 6: storage passes on the attributes of the energy
it was charged with; EN 16325 guarantees-of-origin treatment of storage (pro rata).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

import numpy as np


@dataclass(frozen=True)
class Provenance:
    """Per ISP: green part of each discharge, contents and green contents at the end [Wh]."""

    green_discharge_wh: np.ndarray
    contents_wh: np.ndarray
    green_contents_wh: np.ndarray


def storage_provenance(
    charge_wh: np.ndarray,
    green_charge_wh: np.ndarray,
    discharge_wh: np.ndarray,
    efficiency: Decimal | float = Decimal(1),
) -> Provenance:
    """Track green contents of a store through charges and discharges (one store).

    Parameters
    ----------
    charge_wh, green_charge_wh, discharge_wh : numpy.ndarray
        Per ISP, integers ``>= 0`` [Wh]; ``green_charge_wh <= charge_wh``. Within one ISP the
        charge is applied before the discharge.
    efficiency : Decimal
        One-way charging efficiency ``eta`` in ``(0, 1]`` [-].

    Returns
    -------
    Provenance
        ``green_discharge_wh <= discharge_wh`` per ISP (integers).
    """
    c = np.asarray(charge_wh, dtype=np.int64)
    g = np.asarray(green_charge_wh, dtype=np.int64)
    d = np.asarray(discharge_wh, dtype=np.int64)
    if not (c.shape == g.shape == d.shape):
        raise ValueError("charge_wh, green_charge_wh and discharge_wh must have the same shape")
    if (g > c).any() or (g < 0).any() or (d < 0).any():
        raise ValueError("need 0 <= green_charge_wh <= charge_wh and discharge_wh >= 0")
    eta = Fraction(str(efficiency))
    if not 0 < eta <= 1:
        raise ValueError(f"efficiency must lie in (0, 1], got {efficiency}")
    p, q = eta.numerator, eta.denominator
    contents = 0  # [1/q Wh]
    green = 0  # [1/q Wh]
    n = len(c)
    out_green = np.zeros(n, dtype=np.int64)
    out_contents = np.zeros(n, dtype=np.int64)
    out_gcontents = np.zeros(n, dtype=np.int64)
    for k in range(n):
        contents += int(c[k]) * p
        green += int(g[k]) * p
        dk = int(d[k])
        if dk:
            take = min(dk * q, contents)
            if take and contents:
                gd = (take * green // contents) // q
                green -= gd * q
                out_green[k] = gd
                contents -= take
                green = min(green, contents)
        out_contents[k] = contents // q
        out_gcontents[k] = green // q
    return Provenance(out_green, out_contents, out_gcontents)
