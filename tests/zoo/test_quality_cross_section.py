"""Quality floors of the cross_section task on real data: the shipped configs, the demo's split
(sp500_stocks, test 2010-2022, refit every 504 bars), out of sample.

Twenty large caps ranked day by day is a weak-signal problem: daily rank ICs of one or two
percent are what to expect, and an IC far above that on this universe means look-ahead.
Figures at the time of writing are in the comments (`treum leaderboard task=cross_section
data=sp500_stocks eval.refit_every=504` prints them).
"""

from __future__ import annotations

import pytest

from treum.commands import run as stages
from treum.commands.compose import compose_run, model_config

pytestmark = pytest.mark.slow

DEMO = ["task=cross_section", "data=sp500_stocks", "eval.refit_every=504", "eval.bootstrap=0"]


@pytest.fixture(scope="module")
def prep(plugins):
    return stages.prepare(compose_run(DEMO + ["model=market_gnn"], plugins), plugins)


@pytest.fixture(scope="module")
def baselines(plugins, prep):
    return stages.evaluate_baselines(prep, plugins, [], None)


def test_momentum_ranks_the_universe_and_no_baseline_is_implausibly_good(baselines):
    mom = baselines["momentum_12_1"].metrics  # measured: IC 0.0186, t 3.27, 3269 days
    assert mom["days"] > 3200 and mom["n"] > 64000
    assert mom["ic"] > 0.012 and mom["ic_t"] > 2.0
    for label, res in baselines.items():
        assert abs(res.metrics["ic"]) < 0.06, f"{label}: IC {res.metrics['ic']:.3f} on 20 large caps is look-ahead"
    gbm = baselines["gbm_technical"].metrics  # measured: IC 0.0105, t 2.16
    assert gbm["ic"] > 0.0


def test_daily_rebalancing_pays_its_costs(baselines):
    rev = baselines["reversal_1m"].metrics  # measured: gross -5.7% a year, net -28.4% (turnover 0.90 a day)
    assert rev["ls_return"] < rev["ls_gross_return"] - 15
    assert rev["ls_turnover"] == pytest.approx(
        (rev["ls_gross_return"] - rev["ls_return"]) / (0.001 * 252 * 100), rel=1e-6)


def test_market_gnn_is_scored_on_every_day_and_stays_plausible(plugins, prep, baselines):
    spec = plugins.model("market_gnn")
    res = stages.evaluate("market_gnn", spec, model_config(plugins, "market_gnn", DEMO, own=True), prep)
    m = res.metrics  # measured: IC 0.0045, t 0.76 (the goal, IC 0.02 with t > 3, is not reached)
    assert m["n"] == baselines["momentum_12_1"].metrics["n"] and m["empty"] == 0
    assert -0.01 < m["ic"] < 0.06
    assert res.predictions["score"].between(0, 1).all()
    cmp = prep.task.compare(res.predictions, baselines["gbm_technical"].predictions)
    assert abs(cmp["ic_diff_t"]) < 4  # measured: no significant difference from the reference
