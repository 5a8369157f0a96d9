"""Quality floors of the stress detectors on real data: the shipped configs, the demo's walk-forward
(`treum leaderboard task=anomaly data=sp500_index features=cross_asset`), out of sample 2005-2022.

None of the three beats the realised-volatility z-score on average precision (the issue's goal is not
reached; see docs/tasks/anomaly.md): these floors keep what they do reach. Figures measured at the time
of writing are in the comments, each bound a little below.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from treum.commands import run as stages
from treum.commands.compose import compose_run, model_config
from treum.zoo.stress import correlation_jump

pytestmark = pytest.mark.slow

DEMO = ["task=anomaly", "data=sp500_index", "features=cross_asset"]


@pytest.fixture(scope="module")
def prepared(plugins):
    cfg = compose_run(DEMO + ["model=isolation_forest", "eval.bootstrap=0"], plugins)
    prep = stages.prepare(cfg, plugins)
    baselines = stages.evaluate_baselines(prep, plugins, [], None)
    return prep, baselines


def _evaluate(plugins, prep, name):
    return stages.evaluate(name, plugins.model(name), model_config(plugins, name, [], own=True), prep)


def test_the_baselines_and_the_episodes_of_the_test_segment(prepared):
    prep, baselines = prepared
    vol = baselines["vol_zscore"].metrics  # measured: AP 0.236, 14 episodes, 5 missed, lead 8 bars
    assert vol["episodes"] >= 12 and vol["n"] > 3500
    assert 0.20 <= vol["ap"] <= 0.30
    assert baselines["vix_level"].metrics["n"] < 0.4 * vol["n"]  # 2014-2019 only


@pytest.mark.parametrize("name,floor", [("autoencoder_stress", 0.15), ("isolation_forest", 0.14)])
def test_the_unsupervised_detectors_rank_stress_above_the_base_rate(plugins, prepared, name, floor):
    prep, baselines = prepared
    res = _evaluate(plugins, prep, name)
    m = res.metrics  # measured AP: autoencoder 0.186 (lead 14 bars), isolation forest 0.157 (lead 8.5); base 0.071
    assert m["n"] == baselines["vol_zscore"].metrics["n"], "scored on every row the reference scores"
    assert m["ap"] >= floor and m["ap"] > 2 * m["base_rate"]
    assert m["lead_time_median"] >= 5


def test_correlation_breakdown_predicts_the_correlation_jump_it_is_trained_for(plugins, prepared):
    prep, _ = prepared
    res = _evaluate(plugins, prep, "correlation_breakdown")
    cfg = model_config(plugins, "correlation_breakdown", [], own=True)
    jump = correlation_jump(prep.frame, cfg.jump, cfg.horizon).reindex(res.predictions.index)
    ok = jump.notna() & res.predictions["p_stress"].notna()
    auc = roc_auc_score(jump[ok].to_numpy(dtype=int), res.predictions.loc[ok, "p_stress"].to_numpy())
    assert auc >= 0.66  # measured 0.702 (4,508 test rows, 26% of them jumps)
    # as a stress score it measured AP 0.066, below the base rate: correlations jump during a sell-off,
    # not before it (a measurement for the guide, not a bound: a better model must not fail here)
    assert np.isfinite(res.metrics["ap"]) and np.isfinite(res.metrics["false_alarms_per_year"])
