"""Quality floors of darts N-BEATS and TFT on the forecast task: shipped configs, treum's walk-forward.

Scored only by treum's walk-forward (``treum.commands.run.evaluate``), out of sample, beside the
task's baselines on the same rows; darts' own backtests are not used. MASE is the mean absolute
error of the median over the random walk's on the same rows (the random walk scores 1). Figures
measured at the time of writing are in the comments; the bounds sit a little above them.
"""

from __future__ import annotations

import pytest

from treum.commands import run as stages
from treum.commands.compose import compose_run, model_config

pytestmark = pytest.mark.slow


def _evaluate(plugins, overrides):
    cfg = compose_run(overrides + ["eval.bootstrap=0"], plugins)
    prep = stages.prepare(cfg, plugins)
    spec = plugins.model(cfg.model.name)
    result = stages.evaluate(spec.name, spec, model_config(plugins, spec.name, overrides, own=True), prep)
    baselines = stages.evaluate_baselines(prep, plugins, [], None)
    return prep, result, baselines


MACRO = {  # model: bound on MASE at 4 quarters (experiment=forecast_macro, test 1990-2009Q3, 10 folds)
    # per-series MASE, averaged over the three series (pooled over rows: 0.853 and 1.020)
    "nbeats": 0.95,  # measured 0.907 (random walk 1, historical mean 1.177); coverage of the 80% interval 0.62
    "tft": 1.20,  # measured 1.155: worse than the random walk here
}


@pytest.mark.parametrize("name", sorted(MACRO))
def test_macro_four_quarters_ahead(plugins, name):
    prep, res, baselines = _evaluate(plugins, [f"model={name}", "experiment=forecast_macro"])
    m, rw = res.metrics, baselines["random_walk"].metrics
    assert m["n_h4"] == rw["n_h4"] == 225, "scored on the random walk's rows, every entity"
    assert m["mase_h4"] < MACRO[name]
    # the nominal 80% interval is too narrow (measured 0.62, 0.64), but not degenerate
    assert 0.55 <= m["coverage_h4"] <= 0.95


def test_nbeats_beats_the_random_walk_on_macro_significantly(plugins):
    prep, res, baselines = _evaluate(plugins, ["model=nbeats", "experiment=forecast_macro"])
    cmp = prep.task.compare(res.predictions, baselines["random_walk"].predictions)
    assert cmp["dm_stat_h4"] < -2 and cmp["dm_pvalue_h4"] < 0.05  # measured -2.82, p 0.006


VIX = {  # model: bound on MASE at 21 bars (data=vix: test 2017-2018, 2 folds)
    "nbeats": 1.06,  # measured 1.010: the random walk's level; 2017's record-low VIX lies below the training range
    "tft": 1.55,  # measured 1.480: worse than the random walk (its 1-bar median is poorly anchored, MASE_h1 3.49)
}


@pytest.mark.parametrize("name", sorted(VIX))
def test_vix_21_bars_ahead(plugins, name):
    prep, res, baselines = _evaluate(plugins, [f"model={name}", "data=vix", "task=forecast"])
    m, rw = res.metrics, baselines["random_walk"].metrics
    assert m["n_h21"] == rw["n_h21"] > 400
    assert m["mase_h21"] < VIX[name]
