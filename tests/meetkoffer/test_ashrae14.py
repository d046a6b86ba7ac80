"""ASHRAE 14 metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from meetkoffer import ashrae14 as a14


def test_cv_rmse_nmbe_r2_by_hand() -> None:
    y = np.array([10.0, 20.0, 30.0])
    yhat = np.array([12.0, 18.0, 27.0])
    # residuals -2, 2, 3: SS = 17, n - p = 2, mean 20
    assert a14.cv_rmse(y, yhat, p=1) == pytest.approx(math.sqrt(8.5) / 20)
    assert a14.nmbe(y, yhat, p=1) == pytest.approx(3 / (2 * 20))
    assert a14.r_squared(y, yhat) == pytest.approx(1 - 17 / 200)
    # centred residuals -3, 1, 2: lag-1 sum (1*-3 + 2*1) = -1 over 14
    assert a14.lag1_autocorrelation(y - yhat) == pytest.approx(-1 / 14)


def test_symmetric_residuals_have_zero_bias() -> None:
    y = np.array([10.0, 12.0, 14.0, 16.0])
    yhat = np.array([11.0, 11.0, 15.0, 15.0])
    assert a14.nmbe(y, yhat, 2) == 0.0
    assert a14.cv_rmse(y, yhat, 2) == pytest.approx(math.sqrt(4 / 2) / 13)


def test_pass_fail_against_limits() -> None:
    y = np.full(10, 100.0) + np.arange(10)
    good = a14.fit_metrics(y, y + np.tile([1.0, -1.0], 5), p=2, interval="monthly")
    assert good.passes and good.cv_rmse_max == 0.15 and good.nmbe_max == 0.05
    biased = a14.fit_metrics(y, y - 8.0, p=2, interval="monthly")  # NMBE = 8*10/(8*104.5) > 5 %
    assert biased.cv_rmse_ok is False or biased.nmbe_ok is False
    assert not biased.passes
    assert biased.nmbe == pytest.approx(80 / (8 * 104.5))
    hourly = a14.fit_metrics(y, y - 8.0, p=2, interval="hourly")
    assert hourly.nmbe_ok  # 9.6 % <= 10 %
    with pytest.raises(ValueError, match="interval"):
        a14.fit_metrics(y, y, 2, interval="weekly")


def test_fsu_by_hand_with_and_without_autocorrelation() -> None:
    t90_28 = 1.701131  # Student t, two-sided 90 %, 28 degrees of freedom (tables)
    assert a14.t_value(0.90, 28) == pytest.approx(t90_28, abs=1e-6)
    fsu = a14.fractional_savings_uncertainty(0.1, n=30, p=2, m=30, fraction_saved=0.2)
    assert fsu == pytest.approx(t90_28 * 1.26 * 0.1 * math.sqrt((1 + 2 / 30) / 30) / 0.2, rel=1e-6)
    # rho = 0.5 -> n' = 10: sqrt(3 * 1.2 / 30)
    fsu_rho = a14.fractional_savings_uncertainty(0.1, 30, 2, 30, 0.2, rho=0.5)
    assert fsu_rho == pytest.approx(t90_28 * 1.26 * 0.1 * math.sqrt(0.12) / 0.2, rel=1e-6)
    t68 = a14.t_value(0.68, 28)
    assert 0.99 < t68 < 1.02
    assert a14.fractional_savings_uncertainty(0.1, 30, 2, 30, 0.2, confidence=0.68) < fsu
    # CalTRACK polynomial for 12 reporting months replaces 1.26
    k12 = -0.00024 * 144 + 0.03535 * 12 + 1.00286
    fsu_ct = a14.fractional_savings_uncertainty(0.1, 30, 2, 30, 0.2, reporting_months=12)
    assert fsu_ct == pytest.approx(fsu / 1.26 * k12, rel=1e-9)
    assert a14.fractional_savings_uncertainty(0.1, 30, 2, 30, 0.0) == math.inf
