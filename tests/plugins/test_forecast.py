"""The forecast task: labels, metrics on hand-made frames, quantile crossing, config errors, serving,
its baselines, and the macro data set's values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from treum.commands.compose import compose_leaderboard, model_config
from treum.core.config import build_spec_config
from treum.core.data import make_panel
from treum.core.errors import ConfigError
from treum.core.model import build_model
from treum.core.task import build_task
from treum.plugins.tasks.forecast import forecast_columns, forecast_metrics, pinball, quantile_column, series


def _panel(values, entity="X", start="2020-01-01"):
    idx = pd.bdate_range(start, periods=len(values))
    return make_panel(pd.DataFrame({"close": np.asarray(values, dtype=float)}, index=idx), entity)


def _task(plugins, **values):
    return build_task(plugins.task("forecast"), values)


def test_labels_are_the_exact_changes_of_log_close_or_close(plugins):
    prices = [100.0, 110.0, 99.0, 120.0, 130.0]
    panel = _panel(prices)
    log = _task(plugins, horizons=[1, 3]).make_targets(panel)
    assert list(log.columns) == ["target_chg_h1", "target_chg_h3"]
    np.testing.assert_allclose(log["target_chg_h1"].to_numpy()[:4], np.diff(np.log(prices)))
    assert log["target_chg_h3"].iloc[1] == pytest.approx(np.log(130 / 110))
    assert log["target_chg_h3"].iloc[2:].isna().all() and np.isnan(log["target_chg_h1"].iloc[-1])
    plain = _task(plugins, horizons=[2], change="plain").make_targets(panel)
    np.testing.assert_allclose(plain["target_chg_h2"].to_numpy()[:3], [-1.0, 10.0, 31.0])


def test_labels_do_not_cross_entities(plugins):
    panel = pd.concat([_panel([1.0, 2.0, 3.0], "A"), _panel([10.0, 20.0, 40.0], "B")]).sort_index()
    tg = _task(plugins, horizons=[1], change="plain").make_targets(panel)["target_chg_h1"]
    assert tg.xs("A", level="entity").tolist()[:2] == [1.0, 1.0]
    assert tg.xs("B", level="entity").tolist()[:2] == [10.0, 20.0]
    assert np.isnan(tg.xs("A", level="entity").iloc[-1]) and np.isnan(tg.xs("B", level="entity").iloc[-1])


def test_change_log_on_a_non_positive_series_names_the_fix(plugins):
    panel = _panel([1.5, -0.3, 2.0])
    with pytest.raises(ConfigError, match="task.change=plain"):
        _task(plugins).make_targets(panel)
    assert series(panel, "plain").tolist() == [1.5, -0.3, 2.0]


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"quantiles": [0.1, 0.9]}, "contain 0.5"),
        ({"quantiles": [0.9, 0.5, 0.1]}, "sorted"),
        ({"quantiles": [0.0, 0.5]}, "strictly between"),
        ({"quantiles": [0.1, 0.5, 0.5]}, "unique"),
        ({"quantiles": [0.1, 0.101, 0.5]}, "same percent"),
        ({"horizons": [1, 1]}, "repeat"),
        ({"horizons": [0, 5]}, "positive"),
        ({"scored_horizon": 7}, "not one of the horizons"),
    ],
)
def test_config_refuses_bad_quantiles_and_horizons(plugins, values, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build_spec_config(plugins.task("forecast"), values, "task")


def test_prediction_columns_and_primary_horizon(plugins):
    task = _task(plugins, horizons=[1, 4, 8], quantiles=[0.05, 0.5, 0.95])
    assert task.prediction_columns() == forecast_columns([1, 4, 8], [0.05, 0.5, 0.95])
    assert task.prediction_columns()[:3] == ("q05_h1", "q50_h1", "q95_h1")
    assert task.label_horizon() == 8 and task.scored_horizon == 8
    assert _task(plugins, horizons=[1, 4, 8], scored_horizon=4).scored_horizon == 4
    assert quantile_column(0.1, 21) == "q10_h21"


def _frame(y, q10, q50, q90, h=1):
    idx = pd.MultiIndex.from_arrays([pd.bdate_range("2020-01-01", periods=len(y)), ["X"] * len(y)],
                                    names=["timestamp", "entity"])
    return pd.DataFrame({f"target_chg_h{h}": y, f"q10_h{h}": q10, f"q50_h{h}": q50, f"q90_h{h}": q90}, index=idx)


def test_metrics_on_a_hand_made_frame():
    y = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    # the random walk (median 0): MASE exactly 1, hit rate 1/2 (no direction called)
    rw = forecast_metrics(_frame(y, y * 0 - 1, y * 0, y * 0 + 1), [1], [0.1, 0.5, 0.9], 1)
    assert rw["mase_h1"] == 1.0 and rw["hit_h1"] == 0.5 and rw["n"] == 5
    assert rw["coverage_h1"] == pytest.approx(3 / 5)  # -2 and 3 lie outside [-1, 1]
    # a perfect median: MASE 0, every moving row's direction right
    perfect = forecast_metrics(_frame(y, y - 1, y, y + 1), [1], [0.1, 0.5, 0.9], 1)
    assert perfect["mase"] == 0.0 and perfect["hit_h1"] == 1.0 and perfect["coverage_h1"] == 1.0
    # pinball: the mean over quantiles of the mean loss, by hand for one row
    one = forecast_metrics(_frame([2.0], [0.0], [1.0], [3.0]), [1], [0.1, 0.5, 0.9], 1)
    expected = np.mean([0.1 * 2.0, 0.5 * 1.0, (0.9 - 1) * (2.0 - 3.0)])
    assert one["pinball_h1"] == pytest.approx(expected)
    assert pinball(np.array([2.0]), np.array([3.0]), 0.9)[0] == pytest.approx(0.1)
    # wrong signs: hit rate 0 on the rows that moved; rows without a label are not scored
    wrong = forecast_metrics(_frame(np.r_[y, np.nan], -np.r_[y, 1] - 1, -np.r_[y, 1], -np.r_[y, 1] + 1),
                             [1], [0.1, 0.5, 0.9], 1)
    assert wrong["hit_h1"] == 0.0 and wrong["n"] == 5


def test_crossing_quantiles_are_flagged(plugins):
    task = _task(plugins, horizons=[1])
    pred = _frame([0.0, 0.0], [-1.0, 0.2], [0.0, 0.1], [1.0, 0.3]).drop(columns="target_chg_h1")
    problems = task.check_predictions(pred)
    assert len(problems) == 1 and "cross on 1 rows" in problems[0]
    pred.iloc[1, 0] = 0.0
    assert task.check_predictions(pred) == []


def test_compare_is_diebold_mariano_against_the_reference(plugins):
    task = _task(plugins, horizons=[1])
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    good = _frame(y, y - 1, y + rng.normal(scale=0.1, size=200), y + 1)
    ref = _frame(y, y * 0 - 1, y * 0, y * 0 + 1)
    out = task.compare(good, ref)
    assert out["dm_stat_h1"] < -5 and out["dm_pvalue_h1"] < 1e-6


def test_serving_label_describe_log_and_outcome(plugins):
    task = _task(plugins, horizons=[1, 5])
    values = {"q10_h1": -0.02, "q50_h1": 0.01, "q90_h1": 0.03, "q10_h5": -0.05, "q50_h5": -0.002, "q90_h5": 0.04}
    assert task.label(values) == "up"
    assert task.label({**values, "q50_h1": 0.0}) == "flat"
    shown = task.describe(values)
    assert shown["change_pct_h1"] == pytest.approx(100 * np.expm1(0.01))
    assert shown["interval_pct_h5"] == pytest.approx([100 * np.expm1(-0.05), 100 * np.expm1(0.04)])
    logged = task.log_fields(values)
    assert logged == {"prediction_value": 0.01, "prediction_probability": None, "prediction_class": "up"}
    assert task.score_outcome(logged, -0.02) == (False, pytest.approx(0.03))
    assert task.score_outcome(logged, 0.0)[0] is None
    with pytest.raises(ValueError):
        task.score_outcome(logged, float("nan"))
    plain = _task(plugins, horizons=[1], change="plain").describe({"q10_h1": -1.0, "q50_h1": 0.5, "q90_h1": 2.0})
    assert plain["change_h1"] == 0.5 and plain["interval_h1"] == [-1.0, 2.0]


def _fit_baseline(plugins, name, task, train):
    return build_model(plugins.model(name), model_config(plugins, name, [], {}), task).fit(train)


def test_baselines_quantiles_come_from_the_training_changes(plugins):
    task = _task(plugins, horizons=[1, 2], change="plain")
    panel = _panel(np.r_[np.arange(50.0), 60.0, 61.0])  # steps of 1, then a jump of 11 (not in training)
    frame = panel.join(task.make_targets(panel))
    train = frame.iloc[:40]
    rw = _fit_baseline(plugins, "random_walk", task, train).predict(panel)
    assert (rw["q50_h1"] == 0).all() and (rw["q10_h1"] == 0).all() and (rw["q90_h2"] == 0).all()
    drift = _fit_baseline(plugins, "rw_drift", task, train).predict(panel)
    assert (drift["q50_h1"] == 1.0).all() and (drift["q50_h2"] == 2.0).all()
    mean = _fit_baseline(plugins, "historical_mean", task, train).predict(panel)
    y_mean = np.arange(40.0).mean()  # the training rows' level
    np.testing.assert_allclose(mean["q50_h1"].to_numpy(), y_mean - panel["close"].to_numpy())
    assert (mean["q10_h1"] < mean["q50_h1"]).all() and (mean["q90_h1"] > mean["q50_h1"]).all()
    for pred in (rw, drift, mean):
        assert task.check_predictions(pred) == []


def test_random_walk_scores_mase_one_out_of_sample(plugins):
    task = _task(plugins, horizons=[1, 5])
    data = plugins.dataset("sp500").load({"start": "2010-01-01", "end": "2012-12-31"})
    frame = data.join(task.make_targets(data))
    ts = frame.index.get_level_values("timestamp")
    model = _fit_baseline(plugins, "random_walk", task, frame[ts < "2012-01-01"])
    oos = model.predict(data[data.index.get_level_values("timestamp") >= "2012-02-01"]).join(task.make_targets(data))
    metrics = task.score(oos, 0, 0)
    assert metrics["mase_h1"] == metrics["mase_h5"] == 1.0
    assert 0.6 < metrics["coverage_h1"] < 0.95  # empirical 10%-90% quantiles of 2010-2011's daily changes


def test_macro_data_set_values_match_statsmodels(plugins):
    panel = plugins.dataset("macro").load({})
    assert set(panel.index.get_level_values("entity")) == {"gdp_growth", "inflation", "unemployment"}
    unemp = panel.xs("unemployment", level="entity")["close"]
    assert unemp.index[0] == pd.Timestamp("1959-03-31") and unemp.iloc[0] == 5.8
    assert unemp.loc["2009-09-30"] == 9.6 and len(unemp) == 203
    infl = panel.xs("inflation", level="entity")["close"]
    assert infl.index[0] == pd.Timestamp("1959-06-30") and infl.iloc[0] == 2.34  # 1959Q1's 0.00 is dropped
    gdp = panel.xs("gdp_growth", level="entity")["close"]
    assert gdp.iloc[0] == pytest.approx(400 * np.log(2778.801 / 2710.349))
    assert (gdp < 0).any() and (infl < 0).any()  # rates: change=log would refuse them
    with pytest.raises(ConfigError, match="task.change=plain"):
        _task(plugins).make_targets(panel)


def test_macro_experiment_composes_with_its_data(plugins):
    for overrides in (["task=forecast", "experiment=forecast_macro"],
                      ["task=forecast", "data=macro", "experiment=forecast_macro"]):
        cfg = compose_leaderboard(overrides, plugins)
        assert cfg.data.name == "macro" and cfg.task.change == "plain"
        assert list(cfg.task.horizons) == [1, 4, 8] and cfg.task.scored_horizon == 4
