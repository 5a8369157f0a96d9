"""The risk math of treum.core.risk against known answers: backtests, estimators, losses, the factor model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from treum.core.risk import (
    christoffersen,
    christoffersen_from_counts,
    factor_var_es,
    fhs_var_es,
    fz0_loss,
    historical_var_es,
    kupiec_pof,
    level_key,
    newey_west_dm,
    normal_var_es,
    pinball_loss,
    portfolio_risk,
    transition_counts,
    var_backtest,
)


# Kupiec ------------------------------------------------------------------------------
def test_kupiec_on_a_hand_counted_case():
    # 5 exceptions in 250 days of a 99% VaR: LR = -2 [245 ln(.99/.98) + 5 ln(.01/.02)]
    lr, p = kupiec_pof(5, 250, 0.01)
    by_hand = -2 * (245 * np.log(0.99 / 0.98) + 5 * np.log(0.01 / 0.02))
    assert lr == pytest.approx(by_hand, rel=1e-12)
    assert lr == pytest.approx(1.9568, abs=1e-4)
    assert p == pytest.approx(stats.chi2.sf(by_hand, 1))
    assert 0.16 < p < 0.17  # 2% against 1% in a year: not rejected at 5%


@pytest.mark.parametrize("x,n,p", [(3, 250, 0.01), (14, 250, 0.05), (40, 1000, 0.05), (1, 10, 0.2)])
def test_kupiec_matches_the_likelihood_ratio_written_out(x, n, p):
    direct = -2 * np.log(((1 - p) ** (n - x) * p**x) / ((1 - x / n) ** (n - x) * (x / n) ** x))
    lr, pv = kupiec_pof(x, n, p)
    assert lr == pytest.approx(direct, rel=1e-9)
    assert pv == pytest.approx(stats.chi2.sf(direct, 1), rel=1e-9)


def test_kupiec_without_exceptions_and_with_only_exceptions_is_finite():
    lr0, p0 = kupiec_pof(0, 250, 0.01)
    assert lr0 == pytest.approx(-2 * 250 * np.log(0.99)) and 0 < p0 < 1
    lr_all, p_all = kupiec_pof(4, 4, 0.01)
    assert lr_all == pytest.approx(-2 * 4 * np.log(0.01)) and p_all < 1e-6
    assert kupiec_pof(1, 100, 0.01) == (0.0, 1.0)  # exactly as many as expected
    with pytest.raises(ValueError, match="exceptions"):
        kupiec_pof(5, 4, 0.01)
    with pytest.raises(ValueError, match="exception probability"):
        kupiec_pof(1, 10, 0.99 * 2)


# Christoffersen --------------------------------------------------------------------------
def test_christoffersen_on_a_hand_made_sequence():
    hits = np.array([0, 0, 0, 0, 1, 1, 1, 0, 0, 0])  # a cluster of three exceptions
    assert transition_counts(hits) == (5, 1, 1, 2)
    pi, pi01, pi11 = 3 / 9, 1 / 6, 2 / 3
    null = 6 * np.log(1 - pi) + 3 * np.log(pi)
    alt = 5 * np.log(1 - pi01) + 1 * np.log(pi01) + 1 * np.log(1 - pi11) + 2 * np.log(pi11)
    out = christoffersen(hits, 0.05)
    assert out["lr_ind"] == pytest.approx(-2 * (null - alt))
    assert out["pvalue_ind"] == pytest.approx(stats.chi2.sf(-2 * (null - alt), 1))
    pof, _ = kupiec_pof(3, 10, 0.05)
    assert out["lr_cc"] == pytest.approx(pof + out["lr_ind"])
    assert out["pvalue_cc"] == pytest.approx(stats.chi2.sf(pof + out["lr_ind"], 2))


def test_christoffersen_is_zero_when_an_exception_does_not_change_the_odds():
    hits = np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 0])  # pi01 = 2/6 = pi11 = 1/3
    assert transition_counts(hits) == (4, 2, 2, 1)
    out = christoffersen(hits, 0.3)
    assert out["lr_ind"] == pytest.approx(0.0, abs=1e-12) and out["pvalue_ind"] == pytest.approx(1.0)


@pytest.mark.parametrize("hits", [
    [0] * 50,  # no exception at all
    [0] * 49 + [1],  # the only exception is the last day: no transition out of an exception
    [1] + [0] * 49,  # never an exception after an exception
    [1] * 10,  # only exceptions
    [1],  # one day
])
def test_christoffersen_handles_degenerate_transition_counts(hits):
    out = christoffersen(np.array(hits), 0.01)
    assert all(np.isfinite(v) for v in out.values()), out
    assert 0 <= out["pvalue_ind"] <= 1 and 0 <= out["pvalue_cc"] <= 1


def test_var_backtest_counts_exceptions_per_level_and_pools_groups():
    y = np.array([-3.0, 0.5, -1.0, 2.0, -2.5, 0.1, np.nan, -0.2])
    var = {0.95: np.full(8, 1.5), 0.99: np.full(8, 2.8)}
    bt = var_backtest(y, var)
    assert bt[0.95]["n"] == 7 and bt[0.95]["exceptions"] == 2  # -3.0 and -2.5 (the NaN day is left out)
    assert bt[0.99]["exceptions"] == 1 and bt[0.99]["exception_rate"] == pytest.approx(1 / 7)
    assert bt[0.95]["expected_exceptions"] == pytest.approx(0.35)
    assert bt[0.95]["kupiec_pvalue"] == pytest.approx(kupiec_pof(2, 7, 0.05)[1])
    # two series of hits [1, 1] and [0, 0]: pooled, the pair across the boundary (1 -> 0) is not a transition
    two = var_backtest(np.array([-5.0, -5.0, 1.0, 1.0]), {0.99: np.ones(4)}, groups=np.array(["a", "a", "b", "b"]))
    pooled = christoffersen_from_counts((1, 0, 0, 1), 2, 4, 0.01)
    assert two[0.99]["exceptions"] == 2
    assert two[0.99]["christoffersen_ind_lr"] == pytest.approx(pooled["lr_ind"])
    assert two[0.99]["christoffersen_ind_lr"] != pytest.approx(christoffersen(np.array([1, 1, 0, 0]), 0.01)["lr_ind"])
    with pytest.raises(ValueError, match="values"):
        var_backtest(y, {0.99: np.ones(3)})


# losses -----------------------------------------------------------------------------
def test_pinball_and_fz0_losses_on_known_values():
    # VaR 2 at 99%: a return of -3 is an exception, of +1 is not
    assert pinball_loss(np.array([-3.0, 1.0]), np.array([2.0, 2.0]), 0.99) == pytest.approx([0.99, 0.03])
    # FZ0 in positive losses: 1{y < -VaR}(-VaR - y)/(alpha ES) + VaR/ES + log(ES) - 1
    got = fz0_loss(np.array([-3.0, 1.0]), np.array([2.0, 2.0]), np.array([2.5, 2.5]), 0.99)
    assert got == pytest.approx([1 / (0.01 * 2.5) + 0.8 + np.log(2.5) - 1, 0.8 + np.log(2.5) - 1])


def test_fz0_ranks_the_true_var_and_es_first():
    y = np.random.default_rng(3).standard_normal(200_000)
    true_var, true_es = normal_var_es(1.0, 0.975)
    loss = lambda v, e: fz0_loss(y, np.full(len(y), v), np.full(len(y), e), 0.975).mean()  # noqa: E731
    best = loss(true_var, true_es)
    for scale in (0.8, 1.25):
        assert best < loss(true_var * scale, true_es * scale)
        assert best < loss(true_var, true_es * scale)


def test_newey_west_dm_sees_a_lower_loss():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(2000), rng.standard_normal(2000) + 0.2
    stat, p = newey_west_dm(a, b)
    assert stat < -3 and p < 0.01
    assert np.isnan(newey_west_dm(a, a)[0])


# estimators ---------------------------------------------------------------------------
def test_level_keys():
    assert level_key(0.99) == "99" and level_key(0.95) == "95" and level_key(0.975) == "97_5"


def test_historical_var_is_the_empirical_quantile():
    r = np.random.default_rng(1).standard_t(4, 1500) * 0.01
    out = historical_var_es(r, levels=(0.95, 0.99), horizons=(1, 10))
    q = np.quantile(r, 0.01)
    assert out["var_99_h1"] == pytest.approx(-q) and out["es_99_h1"] == pytest.approx(-r[r <= q].mean())
    ten = np.array([np.prod(1 + r[i:i + 10]) - 1 for i in range(len(r) - 9)])  # overlapping 10-day windows
    assert out["scenarios_h10"] == len(ten) == 1491
    assert out["var_95_h10"] == pytest.approx(-np.quantile(ten, 0.05))
    assert out["es_95_h10"] == pytest.approx(-ten[ten <= np.quantile(ten, 0.05)].mean())
    assert 0 < out["var_95_h1"] < out["var_99_h1"] < out["es_99_h1"]
    with pytest.raises(ValueError, match="at least"):
        historical_var_es(r[:25], horizons=(10,))


@pytest.fixture(scope="module")
def gaussian():
    return np.random.default_rng(7).standard_normal(2000) * 0.01  # 1% a day, constant variance


def test_fhs_is_repeatable_with_a_seed_and_near_the_normal_var_for_gaussian_data(gaussian):
    a = fhs_var_es(gaussian, n_sims=5000, seed=11)
    b = fhs_var_es(gaussian, n_sims=5000, seed=11)
    c = fhs_var_es(gaussian, n_sims=5000, seed=12)
    assert a == b
    assert a["var_99_h1"] != c["var_99_h1"]
    sigma = gaussian.std()
    assert a["var_99_h1"] == pytest.approx(stats.norm.ppf(0.99) * sigma, rel=0.10)
    assert a["es_99_h1"] == pytest.approx(stats.norm.pdf(stats.norm.ppf(0.99)) / 0.01 * sigma, rel=0.10)
    assert a["var_99_h10"] == pytest.approx(stats.norm.ppf(0.99) * sigma * np.sqrt(10), rel=0.15)
    assert a["sigma_next"] == pytest.approx(sigma, rel=0.15)
    # the fitted parameters given back give the same answer without a refit
    again = fhs_var_es(gaussian, n_sims=5000, seed=11, params=a["params"])
    assert again["var_99_h10"] == pytest.approx(a["var_99_h10"], rel=1e-6)
    with pytest.raises(ValueError, match="lacks"):
        fhs_var_es(gaussian, params={"mu": 0.0})


# the factor model ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def factor_world():
    """120 months of three factors (percent) and four assets with known loadings (fractions)."""
    rng = np.random.default_rng(5)
    months = pd.period_range("2000-01", periods=120, freq="M")
    f = pd.DataFrame(rng.standard_normal((120, 3)) * [4.0, 3.0, 3.0], index=months, columns=["Mkt-RF", "SMB", "HML"])
    f["RF"] = 0.2
    beta = np.array([[1.0, 0.2, -0.1], [0.8, -0.3, 0.5], [1.2, 0.6, 0.0], [0.5, 0.0, 0.3]])
    r = f[["Mkt-RF", "SMB", "HML"]].to_numpy() / 100 @ beta.T + 0.002 + rng.standard_normal((120, 4)) * 0.02
    assets = pd.DataFrame(r, index=months.to_timestamp("M"), columns=["A", "B", "C", "D"])
    return assets, f, beta


def test_factor_model_contributions_sum_to_one_and_a_zero_weight_adds_nothing(factor_world):
    assets, f, beta = factor_world
    w = pd.Series({"A": 0.5, "B": 0.3, "C": 0.2, "D": 0.0})
    out = factor_var_es(assets, f, w, window=60)
    assert sum(out["risk_by_factor"].values()) == pytest.approx(1.0)
    assert sum(out["risk_by_asset"].values()) == pytest.approx(1.0)
    assert out["risk_by_asset"]["D"] == 0.0
    assert set(out["risk_by_factor"]) == {"mkt_rf", "smb", "hml", "residual"}
    assert out["months_used"] == 60 and out["first_month"] == "2005-01" and out["last_month"] == "2009-12"
    assert out["months_after_factors"] == 0 and out["note"] == ""
    assert out["loadings"]["A"]["mkt_rf"] == pytest.approx(1.0, abs=0.15)
    # normal VaR of the monthly volatility scaled by h/21
    sigma_10 = out["monthly_volatility"] * np.sqrt(10 / 21)
    assert out["var_99_h10"] == pytest.approx(stats.norm.ppf(0.99) * sigma_10)
    assert out["es_95_h1"] > out["var_95_h1"] > 0


def test_factor_model_says_when_the_factors_end_before_the_assets(factor_world):
    assets, f, _ = factor_world
    out = factor_var_es(assets, f.iloc[:100], pd.Series({"A": 0.6, "B": 0.4}), window=60)
    assert out["last_month"] == "2008-04" and out["factors_end"] == "2008-04"
    assert out["months_after_factors"] == 20 and "2008-04" in out["note"]


def test_factor_model_refuses_factors_in_fractions(factor_world):
    assets, f, _ = factor_world
    frac = f / 100
    with pytest.raises(ValueError, match="percent"):
        factor_var_es(assets, frac, pd.Series({"A": 1.0}))


# portfolio_risk --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prices():
    rng = np.random.default_rng(9)
    days = pd.bdate_range("2014-01-01", "2019-06-28")
    r = rng.standard_normal((len(days), 3)) * [0.01, 0.012, 0.008] + 0.0003
    return pd.DataFrame(100 * np.exp(np.cumsum(r, axis=0)), index=days, columns=["AAA", "BBB", "CCC"])


def test_portfolio_risk_is_json_and_covers_every_method(prices):
    months = pd.date_range("2009-01-31", "2018-11-30", freq="ME")  # factors that end as arch's copy does
    rng = np.random.default_rng(2)
    ff3 = pd.DataFrame(rng.standard_normal((len(months), 3)) * 3, index=months, columns=["mkt_rf", "smb", "hml"])
    ff3["rf"] = 0.1
    out = portfolio_risk(prices, pd.Series({"AAA": 0.5, "BBB": 0.3, "CCC": 0.2}), ff3, window=1000)
    json.dumps(out, allow_nan=False)
    assert out["window"] == {"first": str(prices.index[-1000].date()), "last": "2019-06-28", "days": 1000}
    for method in ("historical", "filtered_historical", "factor"):
        assert 0 < out[method]["var_95_h1"] < out[method]["var_99_h1"] < out[method]["var_99_h10"], method
    fac = out["factor"]
    assert fac["factors_end"] == "2018-11" and fac["last_month"] == "2018-11" and fac["months_after_factors"] == 7
    assert fac["note"]
    assert sum(fac["risk_by_asset"].values()) == pytest.approx(1.0)
    assert portfolio_risk(prices, pd.Series({"AAA": 1.0}), None)["factor"] is None


@pytest.mark.parametrize("weights,message", [
    ({"AAA": 0.5, "ZZZ": 0.5}, "not in the prices"),
    ({"AAA": 1.2, "BBB": -0.2}, "negative"),
    ({"AAA": 0.5, "BBB": float("nan")}, "not numbers"),
    ({"AAA": 0.5, "BBB": 0.4}, "sum to 0.9"),
    ({}, "non-empty"),
])
def test_portfolio_risk_refuses_bad_weights_and_says_how_to_fix_them(prices, weights, message):
    with pytest.raises(ValueError, match=message):
        portfolio_risk(prices, pd.Series(weights, dtype=float), None)


def test_portfolio_risk_refuses_too_short_a_history(prices):
    with pytest.raises(ValueError, match="250 or more"):
        portfolio_risk(prices.iloc[:100], pd.Series({"AAA": 1.0}), None)
