"""The risk task (labels, columns from the config, backtest scoring, the Kupiec gate, serving), its
baselines on hand-made prices, and the ff3 data set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from treum.core.data import make_panel
from treum.core.model import build_model
from treum.core.risk import fz0_loss, kupiec_pof
from treum.core.task import build_task
from treum.plugins.datasets.french_data import load_ff3, month_ends
from treum.plugins.tasks.risk import EwmaVar, HistoricalVar, Risk


def _task(**values):
    return build_task(Risk.spec, values)


def _panel(prices, entity="X"):
    idx = pd.bdate_range("2020-01-01", periods=len(prices))
    return make_panel(pd.DataFrame({"close": prices}, index=idx), entity)


def test_the_label_is_the_next_bars_simple_return_in_percent():
    y = _task().make_targets(_panel([100.0, 102.0, 96.9, 96.9]))["target"].to_numpy()
    np.testing.assert_allclose(y[:3], [2.0, -5.0, 0.0])
    assert np.isnan(y[3]) and _task().label_horizon() == 1


def test_the_columns_derive_from_the_levels():
    assert _task().prediction_columns() == ("var_95", "es_95", "var_99", "es_99")
    task = _task(levels=[0.99, 0.975])
    assert task.prediction_columns() == ("var_97_5", "es_97_5", "var_99", "es_99")
    assert task.headline()[:4] == ("fz_loss", "exception_rate_99", "kupiec_pvalue_99", "christoffersen_cc_pvalue_99")


@pytest.mark.parametrize("levels", [[1.0], [0.2], [0.99, 0.99], []])
def test_bad_levels_are_refused(levels):
    from treum.core.errors import ConfigError

    with pytest.raises(ConfigError, match="levels"):
        _task(levels=levels)


def test_an_es_below_its_var_is_a_problem():
    task = _task()
    pred = pd.DataFrame({"var_95": [1.0], "es_95": [0.5], "var_99": [2.0], "es_99": [3.0]})
    assert any("es_95" in p for p in task.check_predictions(pred))
    pred["es_95"] = 1.5
    assert task.check_predictions(pred) == []


def _oos(n=1000, var99=2.33, seed=0, entities=("X",)):
    """Standard normal returns (percent) with constant forecasts; one or more entities."""
    rng = np.random.default_rng(seed)
    ts = pd.bdate_range("2015-01-01", periods=n)
    idx = pd.MultiIndex.from_product([ts, list(entities)], names=["timestamp", "entity"])
    frame = pd.DataFrame({"target": rng.standard_normal(len(idx))}, index=idx)
    scale = var99 / 2.3263
    for level in (0.95, 0.99):
        z = stats.norm.ppf(level)
        frame[f"var_{round(level * 100)}"] = z * scale
        frame[f"es_{round(level * 100)}"] = stats.norm.pdf(z) / (1 - level) * scale
    return frame


def test_score_backtests_each_level_and_the_fz_loss_is_primary():
    oos = _oos()
    m = _task().score(oos, n_boot=50, seed=0)
    y = oos["target"].to_numpy()
    hits = int((y < -oos["var_99"].to_numpy()).sum())
    assert m["n"] == 1000 and m["exceptions_99"] == hits and m["expected_exceptions_99"] == pytest.approx(10)
    assert m["kupiec_pvalue_99"] == pytest.approx(kupiec_pof(hits, 1000, 0.01)[1])
    fz = fz0_loss(y, oos["var_99"].to_numpy(), oos["es_99"].to_numpy(), 0.99).mean()
    assert m["fz_loss"] == m["fz_loss_99"] == pytest.approx(fz)
    assert m["fz_loss_ci_low"] < m["fz_loss"] < m["fz_loss_ci_high"]
    for key in ("exception_rate_95", "christoffersen_ind_pvalue_95", "christoffersen_cc_pvalue_99", "pinball_95"):
        assert np.isfinite(m[key]), key
    # the panel: exceptions add up over entities
    panel = _task().score(_oos(entities=("X", "Y")), n_boot=0, seed=0)
    assert panel["n"] == 2000 and np.isnan(panel["fz_loss_ci_low"])


def test_a_var_that_fails_kupiec_is_never_validated_and_the_right_one_wins_dm():
    task = _task()
    good, bad = _oos(var99=2.33), _oos(var99=1.2)  # the second is far too low: many exceptions
    mg, mb = task.score(good, 0, 0), task.score(bad, 0, 0)
    assert mb["kupiec_pvalue_99"] < 0.05 <= mg["kupiec_pvalue_99"]
    assert task.beats(mg, [mb]) and not task.beats(mb, [mg])
    assert not task.beats({**mb, "fz_loss": -1e9}, [mg])  # whatever its loss
    assert not task.beats({**mg, "n": 10}, [mb])  # fewer rows than a baseline
    cmp = task.compare(good, bad)
    assert cmp["dm_stat"] < 0 and cmp["fz_loss_diff"] < 0
    row = task.performance_row(mg)
    assert row["total_predictions"] == 1000 and row["failed_predictions"] == mg["exceptions_99"]
    assert row["successful_predictions"] == 1000 - mg["exceptions_99"]
    assert row["error_distribution"]["backtest"]["99"]["kupiec_pvalue"] == mg["kupiec_pvalue_99"]


def test_serving_logs_the_highest_var_and_scores_an_exception():
    task = _task()
    values = {"var_95": 1.6, "es_95": 2.1, "var_99": 2.4, "es_99": 2.9}
    logged = task.log_fields(values)
    assert logged["prediction_value"] == 2.4
    assert "probability 0.01" in task.describe(values)["var_99_meaning"]
    assert task.score_outcome(logged, -3.0) == (False, pytest.approx(0.6))  # an exception, 0.6 beyond the VaR
    assert task.score_outcome(logged, -1.0) == (True, 0.0)
    with pytest.raises(ValueError, match="-100"):
        task.score_outcome(logged, -150.0)


def _fitted(cls, config, data):
    model = build_model(cls.spec, cls.spec.config_cls(**config), _task())
    return model.fit(data)


def test_historical_simulation_takes_the_quantile_of_the_last_window_of_returns():
    rng = np.random.default_rng(4)
    prices = 100 * np.cumprod(1 + rng.standard_normal(80) * 0.01)
    data = _panel(prices)
    pred = _fitted(HistoricalVar, {"window": 30}, data).predict(data)
    r = (prices[1:] / prices[:-1] - 1) * 100
    assert pred.iloc[:30].isna().all().all()  # 30 returns are there from bar 30 on
    last = r[-30:]
    q = np.quantile(last, 0.01)
    assert pred["var_99"].iloc[-1] == pytest.approx(-q)
    assert pred["es_99"].iloc[-1] == pytest.approx(-last[last <= q].mean())
    assert pred["var_95"].iloc[30] == pytest.approx(-np.quantile(r[:30], 0.05))


def test_ewma_var_is_normal_with_the_riskmetrics_variance():
    prices = np.array([100.0, 101.0, 99.0, 100.0, 98.0])
    data = _panel(prices)
    pred = _fitted(EwmaVar, {"lam": 0.94}, data).predict(data)
    r = (prices[1:] / prices[:-1] - 1) * 100
    s2 = r[0] ** 2
    for x in r[1:]:
        s2 = 0.94 * s2 + 0.06 * x**2
    assert pred["var_99"].iloc[-1] == pytest.approx(stats.norm.ppf(0.99) * np.sqrt(s2))
    assert pred["es_95"].iloc[-1] == pytest.approx(stats.norm.pdf(stats.norm.ppf(0.95)) / 0.05 * np.sqrt(s2))
    assert np.isnan(pred["var_99"].iloc[0])


def test_ff3_has_month_end_dates_and_the_four_factors():
    ff3 = load_ff3({})
    assert list(ff3.columns) == ["mkt_rf", "smb", "hml", "rf"]
    ts = ff3.index.get_level_values("timestamp")
    assert ts[0] == pd.Timestamp("1926-07-31") and ts[-1] == pd.Timestamp("2018-11-30") and len(ff3) == 1109
    assert (ts.is_month_end).all() and set(ff3.index.get_level_values("entity")) == {"FF3"}
    assert ff3.loc[(pd.Timestamp("2018-10-31"), "FF3"), "mkt_rf"] == pytest.approx(-7.68)
    assert len(load_ff3({"start": "2010-01-01", "end": "2010-12-31"})) == 12
    # should arch ever ship real dates, they pass through
    assert month_ends(pd.DatetimeIndex(["2001-03-01"]))[0] == pd.Timestamp("2001-03-31")


def test_portfolio_risk_on_real_stocks_and_the_ff3_factors(plugins):
    """Three of the skfolio stocks to the end of 2022: the factors end 2018-11, and the answer says so."""
    import json

    from treum.core.risk import portfolio_risk

    stocks = plugins.dataset("sp500_stocks").load({"start": "2015-01-01"})
    prices = stocks["close"].unstack("entity")[["AAPL", "JNJ", "XOM"]]
    ff3 = plugins.dataset("ff3").load({}).droplevel("entity")
    out = portfolio_risk(prices, pd.Series({"AAPL": 0.4, "JNJ": 0.3, "XOM": 0.3}), ff3)
    json.dumps(out, allow_nan=False)
    assert out["window"]["days"] == 1000 and out["window"]["last"] == "2022-12-28"
    fac = out["factor"]
    assert fac["last_month"] == "2018-11" and fac["months_used"] == 46  # 2015-02..2018-11: all there is
    # the data end 2022-12-28, before December's last business day: December is partial and left out
    assert fac["assets_end"] == "2022-11" and fac["months_after_factors"] == 48 and "2018-11" in fac["note"]
    shares = fac["risk_by_factor"]  # measured: market 0.40, the rest mostly residual (JNJ and XOM: low betas)
    assert shares["mkt_rf"] == max(shares[k] for k in ("mkt_rf", "smb", "hml")) and shares["mkt_rf"] > 0.3
    for method in ("historical", "filtered_historical", "factor"):
        assert 0.005 < out[method]["var_99_h1"] < 0.1, method
