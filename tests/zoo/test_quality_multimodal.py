"""Quality floor of the multimodal fusion on real data: ``experiment=multimodal_direction`` (the 20 stocks,
the multimodal features without news, test 2010-2018, refit every 252 bars), through the CLI's stages.

Daily stock direction is close to a coin toss, so the floor is a band: scored on exactly the rows the
baselines are scored on, nothing left empty, finite figures, an AUC no worse than a coin by more than
noise and no better than look-ahead would make it. Figures at the time of writing are in the comments
(`treum leaderboard experiment=multimodal_direction` prints them; docs/models/multimodal_fusion.md).
"""

from __future__ import annotations

import math

import pytest

from treum.commands import run as stages
from treum.commands.compose import compose_run, model_config
from treum.core.data import slice_time

pytestmark = pytest.mark.slow

RUN = ["experiment=multimodal_direction", "eval.bootstrap=0"]


@pytest.fixture(scope="module")
def prep(plugins):
    return stages.prepare(compose_run(RUN + ["model=multimodal_fusion"], plugins), plugins)


@pytest.fixture(scope="module")
def baselines(plugins, prep):
    return stages.evaluate_baselines(prep, plugins, [], None)


def test_the_multimodal_features_carry_the_macro_group_and_no_news(prep):
    cols = prep.frame.columns
    assert {"f_macro_vix", "f_macro_credit_spread", "f_macro_ff_mkt_rf", "f_news_mask"} <= set(cols)
    assert (prep.frame["f_news_mask"] == 0).all()
    test = slice_time(prep.frame, *prep.segments.test)
    assert test["f_macro_credit_known"].mean() > 0.95 and test["f_macro_ff_known"].mean() > 0.95
    assert 0.45 < test["f_macro_vix_known"].mean() < 0.65  # arch's VIX: 2014-01 to 2019-01 of 2010-2018


def test_multimodal_fusion_is_scored_on_the_baselines_rows_and_stays_plausible(plugins, prep, baselines):
    spec = plugins.model("multimodal_fusion")
    res = stages.evaluate("multimodal_fusion", spec, model_config(plugins, "multimodal_fusion", RUN, own=True), prep)
    m = res.metrics  # measured: AUC 0.5046 [0.4950, 0.5145], accuracy 0.5137 (always_up 0.5178), n 44803
    assert m["n"] == baselines["always_up"].metrics["n"] > 40000 and m["empty"] == 0
    assert all(math.isfinite(m[k]) for k in ("accuracy", "balanced_accuracy", "auc", "ic"))
    assert 0.49 <= m["auc"] <= 0.56, f"AUC {m['auc']:.4f}: below a coin by more than noise, or look-ahead"
    assert m["accuracy"] >= 0.5
    assert res.predictions["p_up"].between(0, 1).all()
