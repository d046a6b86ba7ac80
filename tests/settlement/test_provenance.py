"""Storage provenance: green share carried through a battery or EV, losses included."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.provenance import storage_provenance


def test_discharge_carries_the_stored_green_share():
    # charge 1000 Wh of which 600 green; discharge 500 -> 300 green; 200 -> 120 green
    p = storage_provenance(np.array([1000, 0, 0]), np.array([600, 0, 0]), np.array([0, 500, 200]))
    assert p.green_discharge_wh.tolist() == [0, 300, 120]
    assert p.contents_wh.tolist() == [1000, 500, 300]
    assert p.green_contents_wh.tolist() == [600, 300, 180]


def test_losses_are_taken_pro_rata():
    # eta 0.9: 1000 Wh charged (500 green) stores 900 (450 green); discharging all 900 gives 450 green
    p = storage_provenance(
        np.array([1000, 0]), np.array([500, 0]), np.array([0, 900]), Decimal("0.9")
    )
    assert p.green_discharge_wh.tolist() == [0, 450]
    assert p.contents_wh.tolist() == [900, 0]


def test_discharge_beyond_known_contents_is_grey():
    p = storage_provenance(np.array([100, 0]), np.array([100, 0]), np.array([0, 300]))
    assert p.green_discharge_wh.tolist() == [0, 100]


def test_rejects_more_green_than_charge():
    with pytest.raises(ValueError, match="green_charge_wh"):
        storage_provenance(np.array([1]), np.array([2]), np.array([0]))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2000), st.integers(0, 100), st.integers(0, 2000)),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(["1", "0.95", "0.9"]),
)
def test_green_never_exceeds_what_went_in(steps, eta):
    c = np.array([s[0] for s in steps])
    g = np.array([s[0] * s[1] // 100 for s in steps])
    d = np.array([s[2] for s in steps])
    p = storage_provenance(c, g, d, Decimal(eta))
    assert (p.green_discharge_wh <= d).all() and (p.green_discharge_wh >= 0).all()
    assert int(p.green_discharge_wh.sum()) <= int(g.sum())
    assert (p.green_contents_wh <= p.contents_wh).all()
