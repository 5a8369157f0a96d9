"""Quality floors on real data: the shipped configs, the walk-forward of the demo, out of sample.

A table of bounds per model, as darts keeps for its forecasters: a model that
gets worse fails. Daily index direction is close to a coin toss, so direction
models also get a ceiling: an AUC far above 0.5 on it means look-ahead, not skill.
Figures at the time of writing are in the comments (`make demo` prints them).
"""

from __future__ import annotations

import pytest

from treum.commands import run as stages
from treum.commands.compose import compose_run, model_config

pytestmark = pytest.mark.slow

DIRECTION = {  # model: (min accuracy, AUC range); measured acc / AUC: 0.535 / 0.476, 0.544 / 0.501, 0.536 / 0.500
    "gbm_direction": (0.52, (0.45, 0.60)),
    "logit_direction": (0.52, (0.47, 0.60)),
    "ts_transformer": (0.52, (0.47, 0.60)),
}


def _evaluate(plugins, overrides):
    cfg = compose_run(overrides + ["eval.bootstrap=0"], plugins)
    prep = stages.prepare(cfg, plugins)
    spec = plugins.model(cfg.model.name)
    result = stages.evaluate(spec.name, spec, model_config(plugins, spec.name, overrides, own=True), prep)
    baselines = stages.evaluate_baselines(prep, plugins, [], None)
    return prep, result, baselines


@pytest.mark.parametrize("name", sorted(DIRECTION))
def test_direction_models_on_sp500(plugins, name):
    min_acc, (lo, hi) = DIRECTION[name]
    prep, res, baselines = _evaluate(plugins, [f"model={name}", "data=sp500"])
    m = res.metrics
    assert m["n"] == baselines["always_up"].metrics["n"] > 1900, "every model is scored on the same rows"
    assert m["accuracy"] >= min_acc
    assert lo <= m["auc"] <= hi, f"{name} AUC {m['auc']:.3f} outside [{lo}, {hi}]"


def test_gjr_garch_beats_garch11_and_ewma_on_sp500(plugins):
    prep, res, baselines = _evaluate(plugins, ["model=garch", "data=sp500"])
    m = res.metrics  # measured: QLIKE h1 0.491 vs 0.537 (GARCH(1,1)) and 0.587 (EWMA)
    assert m["qlike_h1"] < baselines["garch11"].metrics["qlike_h1"] - 0.02
    assert m["qlike_h1"] < baselines["ewma_0.94"].metrics["qlike_h1"]
    cmp = prep.task.compare(res.predictions, baselines["garch11"].predictions)
    assert cmp["dm_stat_h1"] < 0 and cmp["dm_pvalue_h1"] < 0.01
    assert m["vol_error_pct_h21"] < 45  # measured 39.5


def test_drawdown_model_of_the_example_plugin_beats_its_base_rate(plugins):
    """The third-party task's model, through treum's own walk-forward: volatility clusters, so drawdowns do too."""
    prep, res, baselines = _evaluate(plugins, ["model=drawdown_logit", "data=sp500"])
    assert res.metrics["n"] == baselines["base_rate"].metrics["n"] > 1900
    base = baselines["base_rate"].metrics
    assert res.metrics["auc"] > 0.60  # measured 0.644; the base rate is constant within each fold
    assert res.metrics["brier"] < base["brier"]  # measured 0.142 vs 0.183


def test_markov_regime_detects_every_bear_market_since_2005(plugins):
    prep, res, baselines = _evaluate(plugins, ["model=markov_regime", "data=sp500_index"])
    m = res.metrics  # measured: balanced accuracy 0.709, 4 bear markets, none missed, lag 2.25 bars
    assert m["bear_markets"] >= 4 and m["bears_missed"] == 0
    assert m["balanced_accuracy"] >= 0.68
    assert m["detection_lag_bars"] <= 10
    assert m["balanced_accuracy"] > baselines["majority_regime"].metrics["balanced_accuracy"]


def test_hmm_regime_finds_every_bear_market_sooner_than_the_200_day_rule(plugins):
    prep, res, baselines = _evaluate(plugins, ["model=hmm_regime", "data=sp500_index"])
    m = res.metrics  # measured: balanced accuracy 0.812, lag 0.5 bars, none missed (ma200: 0.866, 9.25 bars)
    assert m["bear_markets"] >= 4 and m["bears_missed"] == 0
    assert m["balanced_accuracy"] >= 0.78
    assert m["detection_lag_bars"] < baselines["ma200_rule"].metrics["detection_lag_bars"]
    assert m["balanced_accuracy"] > baselines["majority_regime"].metrics["balanced_accuracy"]


def test_regime_classifier_finds_every_bear_market_and_beats_the_rule_with_three_classes(plugins):
    """Two classes: close behind the 200-day rule (its goal, both balanced accuracy and lag better than the
    rule's, is not reached); three classes (bull, bear, sideways): ahead of the rule."""
    prep, res, baselines = _evaluate(plugins, ["model=regime_classifier", "data=sp500_index"])
    m = res.metrics  # measured: balanced accuracy 0.823, lag 16.5 bars, none missed (ma200: 0.866, 9.25)
    assert m["bear_markets"] >= 4 and m["bears_missed"] == 0
    assert m["balanced_accuracy"] >= 0.79
    assert m["balanced_accuracy"] > baselines["majority_regime"].metrics["balanced_accuracy"]
    prep, res, baselines = _evaluate(plugins, ["model=regime_classifier", "data=sp500_index", "task.classes=3"])
    m = res.metrics  # measured: balanced accuracy 0.616, macro F1 0.552 (ma200: 0.556, 0.479; majority 0.333)
    assert m["balanced_accuracy"] >= 0.58
    assert m["balanced_accuracy"] > baselines["ma200_rule"].metrics["balanced_accuracy"] + 0.02
    assert m["macro_f1"] > baselines["ma200_rule"].metrics["macro_f1"]


def test_garch_hybrid_beats_garch11_and_ewma_on_sp500(plugins):
    """The hybrid's goal (QLIKE 5% below GJR-GARCH-t, 0.491) is not reached with its shipped config (measured
    0.508): this floor keeps what it does reach, ahead of both baselines."""
    prep, res, baselines = _evaluate(plugins, ["model=garch_hybrid", "data=sp500"])
    m = res.metrics  # measured: QLIKE h1 0.508 (GARCH(1,1) 0.537, EWMA 0.587), 21-bar vol error 39.8%
    assert m["n"] == baselines["garch11"].metrics["n"] > 1900
    assert m["qlike_h1"] < baselines["garch11"].metrics["qlike_h1"] - 0.01
    assert m["qlike_h1"] < baselines["ewma_0.94"].metrics["qlike_h1"]
    assert m["vol_error_pct_h21"] < 45
