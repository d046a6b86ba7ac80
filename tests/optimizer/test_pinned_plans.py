"""Today's plans are the plans of main before the speed work (issue 18), to 1e-6 relative.

The pinned figures were computed with main's code at commit 434732f (see
:mod:`tests.optimizer.pinned_cases`); the model has been rebuilt since, so these compare the
new code with the old one, not with itself.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.optimizer.pinned_cases import CASES, PINNED, mpc_run, plan_case, summary

REL = 1e-6


@pytest.fixture(scope="module")
def pinned() -> dict[str, Any]:
    return json.loads(PINNED.read_text())


def _close(expected: float) -> Any:
    return pytest.approx(expected, rel=REL, abs=REL)


@pytest.mark.parametrize("name", sorted(CASES))
def test_plan_is_the_pinned_plan(name: str, pinned: dict[str, Any]) -> None:
    want = pinned[name]
    got = summary(plan_case(name))
    assert got["objective"] == _close(want["objective"])
    assert (got["mip"], got["n_binaries"]) == (want["mip"], want["n_binaries"])
    assert got["totals"].keys() == want["totals"].keys()
    for column, total in want["totals"].items():
        assert got["totals"][column] == _close(total), column


def test_mpc_replans_are_the_pinned_ones(pinned: dict[str, Any]) -> None:
    want = pinned["mpc-dorpshuis-10h"]
    got = mpc_run()
    assert got["rebuilds"] == want["rebuilds"]
    assert got["objectives"] == [pytest.approx(o, rel=REL, abs=REL) for o in want["objectives"]]
    for sent, expected in zip(got["setpoints"], want["setpoints"], strict=True):
        assert sent.keys() == expected.keys()
        for asset, power_w in expected.items():
            assert sent[asset] == pytest.approx(power_w, abs=1e-3), asset
