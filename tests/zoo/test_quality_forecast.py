"""Quality floors of the forecast task on real data: shipped configs, treum's walk-forward, out of sample.

The goals of the issue: on the quarterly macro series at 4 quarters and on the VIX at 21 bars,
the best model's MASE (against the out-of-sample random walk on the same rows) below 0.9; on
price levels, say whether anything beats the random walk. Figures measured when this was
written are in the comments (``treum leaderboard task=forecast ...`` prints them); each bound
sits a little beyond the figure, so a model that gets worse fails. A MASE far below the
random walk's on the VIX or a price at 21 bars would mean look-ahead, not skill: ceilings.
"""

from __future__ import annotations

import pytest

from treum.commands import run as stages
from treum.commands.compose import compose_run, model_config

pytestmark = pytest.mark.slow

SKTIME = ("auto_ets", "auto_arima", "theta")


def _evaluate(plugins, overrides: list[str], names=SKTIME):
    cfg = compose_run(overrides + ["eval.bootstrap=0", f"model={names[0]}"], plugins)
    prep = stages.prepare(cfg, plugins)
    results = {name: stages.evaluate(name, plugins.model(name), model_config(plugins, name, [], {}), prep)
               for name in names}
    baselines = stages.evaluate_baselines(prep, plugins, [], None)
    return prep, results, baselines


@pytest.fixture(scope="module")
def macro(plugins):
    return _evaluate(plugins, ["task=forecast", "data=macro", "experiment=forecast_macro"])


# measured MASE at 4 quarters (1990Q1-2009Q3, 3 series, 225 rows; per series, then averaged): auto_ets 0.802,
# auto_arima 0.806, theta 0.875; random walk 1, random walk with drift 1.024, historical mean 1.177
MACRO_H4 = {"auto_ets": 0.84, "auto_arima": 0.84, "theta": 0.91}


@pytest.mark.parametrize("name", sorted(MACRO_H4))
def test_macro_models_beat_the_random_walk_at_4_quarters(macro, name):
    prep, results, baselines = macro
    m = results[name].metrics
    assert m["n"] == baselines["random_walk"].metrics["n"] == 225, "every model is scored on the same rows"
    assert baselines["random_walk"].metrics["mase_h4"] == 1.0
    assert m["mase_h4"] < MACRO_H4[name], f"{name}: MASE h4 {m['mase_h4']:.3f}"
    assert m["mase_h4"] < min(b.metrics["mase_h4"] for b in baselines.values())
    assert 0.8 <= m["coverage_h4"] <= 0.97  # measured 0.91-0.93: the intervals are too wide after 1984


def test_the_goal_on_macro_is_reached_and_significant(macro):
    prep, results, baselines = macro
    best = min(results, key=lambda n: results[n].metrics["mase"])
    assert results[best].metrics["mase"] < 0.9  # the goal; measured 0.802 (auto_ets)
    cmp = prep.task.compare(results[best].predictions, baselines["random_walk"].predictions)
    assert cmp["dm_stat_h4"] < 0 and cmp["dm_pvalue_h4"] < 0.01  # measured -3.76, p 0.0003


def test_vix_at_21_bars_nothing_beats_the_random_walk_clearly(plugins):
    """Measured MASE h21 on VIX 2017-2018 (483 rows): auto_ets 0.999, theta 1.000, auto_arima 1.010,
    historical mean 1.577 (the VIX sat at record lows in 2017). The goal (< 0.9) is not reached."""
    prep, results, baselines = _evaluate(plugins, ["task=forecast", "data=vix"])
    for name, res in results.items():
        assert 0.9 < res.metrics["mase_h21"] < 1.04, f"{name}: MASE h21 {res.metrics['mase_h21']:.3f}"
    assert baselines["historical_mean"].metrics["mase_h21"] > 1.2


def test_sp500_level_only_the_drift_helps(plugins):
    """Measured MASE h21 on the S&P 500 2011-2018: theta 0.966 (DM p 0.006), random walk with drift 0.983,
    auto_arima 0.990, auto_ets 1.000. What beats the random walk is the drift of a bull market."""
    prep, results, baselines = _evaluate(plugins, ["task=forecast", "data=sp500"], ("theta", "auto_ets"))
    assert 0.9 < results["theta"].metrics["mase_h21"] < 1.0
    assert baselines["rw_drift"].metrics["mase_h21"] < 1.0
    assert 0.97 < results["auto_ets"].metrics["mase_h21"] < 1.03
