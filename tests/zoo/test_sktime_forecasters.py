"""sktime AutoETS, AutoARIMA and Theta on the forecast task: the filtered forecasts are sktime's own,
they never look ahead, the order search behaves, and the artifacts are JSON."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from treum.commands.compose import model_config
from treum.core.data import make_panel
from treum.core.model import build_model
from treum.core.task import build_task
from treum.zoo.sktime_forecasters import AutoARIMAConfig, search_order

HORIZONS = [1, 4, 8]
QUANTILES = [0.1, 0.5, 0.9]


@pytest.fixture(scope="module")
def task(plugins):
    return build_task(plugins.task("forecast"), {"change": "plain", "horizons": HORIZONS, "scored_horizon": 4})


@pytest.fixture(scope="module")
def unemployment(plugins, task):
    """US unemployment 1959-1989, with its labels: one entity, quarterly."""
    panel = plugins.dataset("macro").load({"end": "1989-12-31"})
    panel = panel[panel.index.get_level_values("entity") == "unemployment"]
    return panel.join(task.make_targets(panel))


def _fit(plugins, name, task, frame, **overrides):
    return build_model(plugins.model(name), model_config(plugins, name, [], overrides), task).fit(frame)


def _sktime_changes(forecaster, y: pd.Series) -> np.ndarray:
    """sktime's own quantiles of y[T+h] less y[T], in the task's column order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = forecaster.fit(y).predict_quantiles(fh=HORIZONS, alpha=QUANTILES)
    return (q.to_numpy() - y.iloc[-1]).ravel()  # rows: horizons, columns: quantiles


@pytest.mark.parametrize("name", ["auto_ets", "theta", "auto_arima"])
def test_the_last_training_row_forecasts_what_sktime_predicts(plugins, task, unemployment, name):
    from sktime.forecasting.ets import AutoETS
    from sktime.forecasting.sarimax import SARIMAX
    from sktime.forecasting.theta import ThetaForecaster

    model = _fit(plugins, name, task, unemployment)
    ours = model.predict(unemployment.drop(columns=[c for c in unemployment if c.startswith("target")]))
    y = pd.Series(unemployment["close"].to_numpy())
    params = model.params_["unemployment"]
    if name == "auto_ets":
        sk = AutoETS(auto=True, additive_only=True, sp=1, n_jobs=1)
    elif name == "theta":
        sk = ThetaForecaster(deseasonalize=False)
    else:
        sk = SARIMAX(order=tuple(params["order"]), trend=params["trend"], cov_type="none")
    expected = _sktime_changes(sk, y)
    np.testing.assert_allclose(ours.iloc[-1].to_numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["auto_ets", "theta", "auto_arima"])
def test_forecasts_are_filtered_and_the_artifact_is_json(plugins, task, unemployment, name, tmp_path):
    """Changing the data after t changes no forecast up to t; the saved parameters are plain JSON."""
    ts = unemployment.index.get_level_values("timestamp")
    train = unemployment[ts < "1985-01-01"]
    model = _fit(plugins, name, task, train)
    inputs = unemployment.drop(columns=[c for c in unemployment if c.startswith("target")])
    base = model.predict(inputs)
    shocked = inputs.copy()
    late = shocked.index.get_level_values("timestamp") >= "1988-01-01"
    shocked.loc[late, "close"] += 5.0
    again = model.predict(shocked)
    early = ~late
    pd.testing.assert_frame_equal(again[early], base[early])
    if name != "theta":  # Theta's SES level follows unemployment with alpha ~ 1: a shift moves y and level alike
        assert not np.allclose(again[late].to_numpy(), base[late].to_numpy())
    path = model.save(tmp_path / name)
    params = json.loads((path / "params.json").read_text())
    assert set(params) == {"unemployment"}
    assert not task.check_predictions(base.loc[train.index[-5:]])


def test_order_search_finds_stationary_and_integrated_series():
    rng = np.random.default_rng(1)
    e = rng.normal(size=400)
    ar = np.zeros(400)
    for t in range(1, 400):
        ar[t] = 0.7 * ar[t - 1] + e[t]
    order, trend, _ = search_order(ar + 5.0, AutoARIMAConfig())
    assert order[1] == 0 and order[0] >= 1 and trend == "c"
    walk = np.cumsum(e) + 50
    order, _, _ = search_order(walk, AutoARIMAConfig())
    assert order[1] == 1


def test_unemployment_forecasts_beat_the_random_walk_on_held_out_quarters(plugins, task):
    """A smoke test of skill with a fixed split (no test-period tuning): unemployment is persistent in
    its changes, which every sktime model catches and the random walk cannot."""
    panel = plugins.dataset("macro").load({})
    panel = panel[panel.index.get_level_values("entity") == "unemployment"]
    frame = panel.join(task.make_targets(panel))
    ts = frame.index.get_level_values("timestamp")
    train = frame[ts <= "1987-12-31"]
    inputs = frame.drop(columns=[c for c in frame if c.startswith("target")])
    test = ts >= "1990-01-01"
    for name in ("auto_ets", "auto_arima"):
        pred = _fit(plugins, name, task, train).predict(inputs)[test]
        metrics = task.score(pred.join(frame[[c for c in frame if c.startswith("target")]]), 0, 0)
        assert metrics["mase_h1"] < 0.95, (name, metrics["mase_h1"])


def test_a_series_the_models_never_saw_is_refused(plugins, task, unemployment):
    model = _fit(plugins, "theta", task, unemployment)
    other = make_panel(pd.DataFrame({"close": np.arange(30.0) + 1}, index=pd.bdate_range("2020-01-01", periods=30)),
                       "gdp_growth")
    with pytest.raises(ValueError, match="no parameters for 'gdp_growth'"):
        model.predict(other)
