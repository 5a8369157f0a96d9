"""The skfolio optimisers (mean_risk, hrp, risk_parity) on small hand-made panels: the weight cap reaches
skfolio, a failed solve falls back (counted and logged), config errors name their key, and the
minimum-risk behaviour is plain where it must be (a very volatile stock gets little weight)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from skfolio import RiskMeasure
from skfolio.exceptions import OptimizationError

from treum.core.config import build_spec_config
from treum.core.errors import ConfigError, TreumError
from treum.core.model import build_model
from treum.core.task import build_task
from treum.core.weights import drift, wide_closes
from treum.plugins.tasks.portfolio import Portfolio
from treum.zoo import skfolio_optimisers as sk

NAMES = ["mean_risk", "hrp", "risk_parity"]
SPECS = {spec.name: spec for spec in sk.MODELS}
SMALL = {"lookback": 120, "min_history": 60}  # a short window: the panels below are 300 bars


def panel(vols: dict[str, float], bars: int = 300, seed: int = 0) -> pd.DataFrame:
    """Closes of independent stocks with the given daily volatilities (zero mean), as a (timestamp, entity) frame."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2019-01-01", periods=bars)
    closes = {name: 100 * np.cumprod(1 + rng.normal(0.0, vol, bars)) for name, vol in vols.items()}
    wide = pd.DataFrame(closes, index=days)
    wide.index.name, wide.columns.name = "timestamp", "entity"
    return wide.stack().rename("close").to_frame().sort_index()


def model(name: str, task_config: dict | None = None, **config):
    spec = SPECS[name]
    task = build_task(Portfolio.spec, dict(task_config or {}))
    return build_model(spec, build_spec_config(spec, {**SMALL, **config}), task).fit(None)


def targets(pred: pd.DataFrame) -> pd.DataFrame:
    """The target weights at each monthly rebalance date with a decision (dates x entities)."""
    wide = pred["weight"].unstack("entity")
    return wide.loc[build_task(Portfolio.spec, {}).rebalance_dates(wide.index)].dropna(how="all")


def returns_history(data: pd.DataFrame) -> pd.DataFrame:
    return wide_closes(data).pct_change(fill_method=None).iloc[1:]


@pytest.mark.parametrize("name", NAMES)
def test_a_very_volatile_stock_gets_the_least_weight(name):
    data = panel({"A": 0.01, "B": 0.01, "C": 0.01, "D": 0.01, "WILD": 0.05})
    w = targets(model(name).predict(data))
    assert len(w) >= 5
    assert np.allclose(w.sum(axis=1), 1.0)
    assert w.mean().idxmin() == "WILD"
    # with independent stocks, risk parity in variance is 1/vol: 0.2 / 4.2 = 0.048 for WILD (1/N would be 0.2)
    assert (w["WILD"] < 0.08).all()


def test_minimum_cvar_puts_most_weight_in_the_calmest_stock():
    data = panel({"CALM": 0.002, "B": 0.02, "C": 0.02, "D": 0.02})
    w = targets(model("mean_risk").predict(data))
    assert (w["CALM"] > 0.9).all()


@pytest.mark.parametrize("name", NAMES)
def test_the_task_weight_cap_reaches_skfolio_and_holds(name):
    data = panel({"CALM": 0.002, "B": 0.02, "C": 0.02, "D": 0.02, "E": 0.02})
    m = model(name, {"max_weight": 0.3})
    raw = m.decide(returns_history(data).iloc[-120:], data.index.get_level_values("timestamp").max(), None)
    assert raw.max() <= 0.3 + 1e-6, "skfolio was given max_weights=0.3"
    assert abs(raw.sum() - 1) < 1e-6
    w = targets(m.predict(data))
    assert (w.max(axis=1) <= 0.3 + 1e-9).all() and np.allclose(w.sum(axis=1), 1.0)
    if name != "hrp":  # the calm stock wants far more than 30% of a min-risk or risk-parity portfolio
        assert np.allclose(w["CALM"], 0.3, atol=1e-4)


class Failing:
    """An optimiser that raises on chosen calls and otherwise delegates to the real one."""

    calls = 0

    def __init__(self, inner, fail_on: set[int]):
        self.inner, self.fail_on = inner, fail_on

    def fit(self, x):
        Failing.calls += 1
        if Failing.calls in self.fail_on:
            raise OptimizationError("forced failure")
        self.inner.fit(x)
        self.weights_ = self.inner.weights_
        return self


@pytest.mark.parametrize("fail_on,kept", [({3}, True), ({1}, False)])
def test_a_failed_optimisation_keeps_the_previous_target_or_equal_weights(monkeypatch, caplog, fail_on, kept):
    data = panel({"A": 0.01, "B": 0.015, "C": 0.02, "D": 0.03})
    m = model("mean_risk")
    real = m.estimator
    Failing.calls = 0
    monkeypatch.setattr(m, "estimator", lambda cap: Failing(real(cap), fail_on))
    with caplog.at_level(logging.WARNING, logger=sk.__name__):
        pred = m.predict(data)
    assert m.fallbacks_ == 1 and len(m.fallback_dates_) == 1
    assert "failed" in caplog.text and "OptimizationError" in caplog.text
    w = targets(pred)
    failed = pd.Timestamp(m.fallback_dates_[0])
    assert failed in w.index and len(w) >= 5
    if kept:  # the previous target, drifted with prices to the failed date: no trade
        prev = w.index[w.index.get_loc(failed) - 1]
        rets = returns_history(data)
        expected = drift(w.loc[prev], rets.loc[(rets.index > prev) & (rets.index <= failed)])
        np.testing.assert_allclose(w.loc[failed].to_numpy(), expected.to_numpy(), atol=1e-9)
    else:  # nothing held yet: equal weights
        assert failed == w.index[0]
        np.testing.assert_allclose(w.loc[failed].to_numpy(), 0.25, atol=1e-12)
    m.predict(data)
    assert m.fallbacks_ == 0  # counted per predict: the next one had no forced failure


def test_every_optimisation_failing_is_an_error_not_a_backtest_of_fallbacks(monkeypatch):
    data = panel({"A": 0.01, "B": 0.02})
    m = model("hrp")
    real = m.estimator
    Failing.calls = 0
    monkeypatch.setattr(m, "estimator", lambda cap: Failing(real(cap), set(range(1, 100))))
    with pytest.raises(TreumError, match="all .* optimisations failed, the first with OptimizationError: forced"):
        m.predict(data)


def test_weights_that_are_not_a_portfolio_count_as_a_failure(monkeypatch):
    data = panel({"A": 0.01, "B": 0.02})

    class Broken:
        calls = 0

        def fit(self, x):
            Broken.calls += 1
            self.weights_ = np.array([np.nan, 1.0]) if Broken.calls == 2 else np.array([0.5, 0.5])
            return self

    m = model("risk_parity")
    monkeypatch.setattr(m, "estimator", lambda cap: Broken())
    w = targets(m.predict(data))
    assert m.fallbacks_ == 1 and np.allclose(w.sum(axis=1), 1.0) and np.isfinite(w.to_numpy()).all()


@pytest.mark.parametrize("name,values,key", [
    ("mean_risk", {"lookback": 50, "min_history": 126}, "lookback"),
    ("mean_risk", {"risk_measure": "sharpe"}, "risk_measure"),
    ("mean_risk", {"objective": "max_return"}, "objective"),
    ("mean_risk", {"beta": 1.5}, "beta"),
    ("mean_risk", {"mu": "oracle"}, "mu"),
    ("hrp", {"linkage": "wards"}, "linkage"),
    ("hrp", {"covariance": "sample"}, "covariance"),
    ("hrp", {"beta": 0.9}, "beta"),  # HRP takes no beta: an unknown key
    ("risk_parity", {"min_history": 1}, "min_history"),
    ("risk_parity", {"half_life": 0}, "half_life"),
])
def test_config_errors_name_the_bad_key(name, values, key):
    with pytest.raises(ConfigError, match=key):
        build_spec_config(SPECS[name], values)


def test_every_risk_measure_and_linkage_of_the_configs_is_one_skfolio_knows():
    from typing import get_args

    from skfolio.cluster import LinkageMethod

    for risk in get_args(sk.RiskName):
        assert isinstance(sk._risk(risk), RiskMeasure)
    for linkage in get_args(sk.LinkageName):
        LinkageMethod[linkage.upper()]


@pytest.mark.filterwarnings("ignore:invalid value encountered in scalar divide:RuntimeWarning")  # skfolio's denoise
@pytest.mark.parametrize("values", [{"objective": "max_sharpe", "risk_measure": "variance", "mu": "ew"},
                                    {"risk_measure": "cdar", "covariance": "denoise"}])
def test_other_mean_risk_choices_give_portfolios(values):
    data = panel({"A": 0.01, "B": 0.015, "C": 0.02, "D": 0.03}, seed=1)
    m = model("mean_risk", **values)
    w = targets(m.predict(data))
    assert len(w) >= 5 and np.allclose(w.sum(axis=1), 1.0) and (w.to_numpy() >= 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_every_risk_measure_of_the_config_solves(name):
    from typing import get_args

    x = pd.DataFrame(np.random.default_rng(2).normal(3e-4, 0.01, (126, 8)), columns=list("ABCDEFGH"))
    for risk in get_args(sk.RiskName):
        m = model(name, risk_measure=risk)
        w = m.decide(x, pd.Timestamp("2020-01-02"), None)
        assert m.fallbacks_ == 0, f"{name} with risk_measure={risk} failed: {m._first_failure}"
        assert abs(w.sum() - 1) < 1e-6 and (w >= 0).all(), risk
