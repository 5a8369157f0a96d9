"""The cross_section task: labels and their ties, the daily rank IC, the long-short portfolio, the comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from treum.core.errors import ConfigError
from treum.core.task import build_task
from treum.plugins.tasks.cross_section import (
    CrossSectionConfig,
    cross_section_metrics,
    cross_section_targets,
    daily_rank_ic,
    long_short,
    newey_west_t,
)


def _prices(n_days: int = 300, n_stocks: int = 10, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2015-01-01", periods=n_days)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_days, n_stocks)), axis=0))
    wide = pd.DataFrame(closes, index=idx, columns=[f"S{i}" for i in range(n_stocks)])
    panel = wide.stack().rename("close").to_frame()
    panel.index.names = ["timestamp", "entity"]
    return panel


def _oos(panel: pd.DataFrame, horizon: int = 1, ties: str = "drop") -> pd.DataFrame:
    return panel.join(cross_section_targets(panel, horizon, ties))


def test_a_perfect_score_has_ic_one_and_its_negative_minus_one():
    oos = _oos(_prices())
    cfg = CrossSectionConfig()
    best = cross_section_metrics(oos.assign(score=oos["target_ret"]), cfg, n_boot=0)
    worst = cross_section_metrics(oos.assign(score=-oos["target_ret"]), cfg, n_boot=0)
    assert best["ic"] == pytest.approx(1.0) and worst["ic"] == pytest.approx(-1.0)
    assert best["days"] == 299 and best["n"] == 299 * 10  # the last day has no label
    noisy = oos.assign(score=oos["target_ret"] + np.random.default_rng(0).normal(0, 1, len(oos)))
    m = cross_section_metrics(noisy, cfg, n_boot=0)
    assert 0.3 < m["ic"] < 1 and m["ic_t"] > 10 and m["icir"] == pytest.approx(m["ic"] / m["ic_std"])


def test_the_long_short_of_a_perfect_score_earns_and_costs_reduce_it():
    oos = _oos(_prices())
    perfect = oos.assign(score=oos["target_ret"])
    free = cross_section_metrics(perfect, CrossSectionConfig(cost_bps=0), n_boot=0)
    paid = cross_section_metrics(perfect, CrossSectionConfig(cost_bps=10), n_boot=0)
    assert free["ls_return"] > 100 and free["ls_sharpe"] > 5  # percent a year: knowing tomorrow pays
    assert paid["ls_return"] < free["ls_return"]
    ls = long_short(perfect, 1, 5, 10, 5)
    # turnover is at most 4 (all out of both legs and all in) and the cost is 10 bps of it
    assert (ls["turnover"] <= 4 + 1e-12).all() and ls["turnover"].iloc[0] == pytest.approx(2.0)
    np.testing.assert_allclose(ls["gross"] - ls["net"], ls["turnover"] * 0.001)
    assert paid["ls_return"] == pytest.approx(free["ls_return"] - ls["turnover"].mean() * 0.001 * 252 * 100)


def test_the_long_short_buys_the_top_and_sells_the_bottom_quintile():
    idx = pd.MultiIndex.from_product([pd.to_datetime(["2020-01-02"]), list("ABCDEFGHIJ")],
                                     names=["timestamp", "entity"])
    frame = pd.DataFrame({"score": np.arange(10.0), "target_ret": 100 * np.log1p(np.arange(10) / 100)}, index=idx)
    ls = long_short(frame, 1, 5, 0.0, 5)
    # longs I, J (+8%, +9%), shorts A, B (0%, +1%): 8.5% - 0.5%
    assert ls["gross"].iloc[0] == pytest.approx(0.08)


def test_an_h_bar_label_rebalances_every_h_days_and_uses_newey_west():
    oos = _oos(_prices(), horizon=5)
    cfg = CrossSectionConfig(horizon=5)
    m = cross_section_metrics(oos.assign(score=oos["target_ret"]), cfg, n_boot=0)
    ls = long_short(oos.assign(score=oos["target_ret"]), 5, 5, 10, 5)
    assert len(ls) == int(np.ceil(m["days"] / 5))
    rng = np.random.default_rng(1)
    x = np.convolve(rng.normal(0.05, 1, 2000), np.ones(5), "valid")  # MA(4): overlapping sums
    assert abs(newey_west_t(x, 4)[0]) < abs(newey_west_t(x, 0)[0])


def test_zero_return_ties_are_dropped_or_kept_as_documented():
    idx = pd.bdate_range("2020-01-01", periods=3)
    wide = pd.DataFrame({"A": [10.0, 10.0, 11.0], "B": [10.0, 11.0, 12.0], "C": [10.0, 9.0, 9.5]}, index=idx)
    panel = wide.stack().rename("close").to_frame()
    panel.index.names = ["timestamp", "entity"]
    dropped = cross_section_targets(panel, 1, "drop")
    first = dropped.xs(idx[0], level="timestamp")
    assert np.isnan(first.loc["A", "target_ret"]) and np.isnan(first.loc["A", "target"])  # 10 -> 10: no label
    assert first.loc["B", "target"] == 1.0 and first.loc["C", "target"] == 0.0  # ranked among the others
    kept = cross_section_targets(panel, 1, "keep").xs(idx[0], level="timestamp")
    assert kept.loc["A", "target_ret"] == 0.0 and kept.loc["A", "target"] == 0.5 and np.isnan(kept.loc["A", "target_up"])
    assert kept.loc["B", "target_up"] == 1.0 and kept.loc["C", "target_up"] == 0.0
    with pytest.raises(ValueError, match="ties"):
        cross_section_targets(panel, 1, "down")


def test_tied_returns_get_average_ranks_like_scipy():
    from scipy import stats

    idx = pd.MultiIndex.from_product([pd.to_datetime(["2020-01-02"]), list("ABCDEF")], names=["timestamp", "entity"])
    frame = pd.DataFrame({"score": [1.0, 2, 3, 4, 5, 6], "target_ret": [0.5, 0.5, -1, 2, 2, 2]}, index=idx)
    ic = daily_rank_ic(frame, min_stocks=5)
    assert ic.iloc[0] == pytest.approx(stats.spearmanr(frame["score"], frame["target_ret"]).statistic)


def test_days_with_fewer_stocks_than_quantiles_are_skipped():
    oos = _oos(_prices(n_days=60, n_stocks=6))
    oos = oos.assign(score=oos["target_ret"])
    ts = oos.index.get_level_values("timestamp")
    thin = ts[:30 * 6].unique()[:10]  # on 10 days only four stocks have a score
    oos.loc[oos.index.get_level_values("timestamp").isin(thin) & oos.index.get_level_values("entity").isin(["S0", "S1"]),
            "score"] = np.nan
    m = cross_section_metrics(oos, CrossSectionConfig(quantiles=5), n_boot=0)
    assert m["days"] == 59 - 10 and m["n"] == 49 * 6
    assert len(long_short(oos, 1, 5, 10, 5)) == 49
    assert cross_section_metrics(oos, CrossSectionConfig(quantiles=4), n_boot=0)["days"] == 59


def test_a_constant_score_scores_nothing():
    oos = _oos(_prices()).assign(score=0.5)
    m = cross_section_metrics(oos, CrossSectionConfig(), n_boot=0)
    assert m["days"] == 0 and np.isnan(m["ic"])


def test_the_bootstrap_interval_brackets_the_mean_ic():
    oos = _oos(_prices(n_days=500))
    noisy = oos["target_ret"] + np.random.default_rng(3).normal(0, 3, len(oos))
    m = cross_section_metrics(oos.assign(score=noisy), CrossSectionConfig(), n_boot=200, seed=0)
    assert m["ic_ci_low"] < m["ic"] < m["ic_ci_high"] and 0 < m["ic"] < 1


def test_compare_is_a_paired_test_of_daily_ic(plugins):
    task = build_task(plugins.task("cross_section"), {})
    oos = _oos(_prices(n_days=400))
    rng = np.random.default_rng(2)
    good = oos.assign(score=oos["target_ret"] + rng.normal(0, 2, len(oos)))
    bad = oos.assign(score=rng.normal(0, 1, len(oos)))
    cmp = task.compare(good, bad)
    assert cmp["ic_diff"] > 0.1 and cmp["ic_diff_t"] > 5 and cmp["ic_diff_pvalue"] < 1e-6
    assert np.isnan(task.compare(good, good)["ic_diff_t"])


def test_the_config_is_validated(plugins):
    spec = plugins.task("cross_section")
    with pytest.raises(ConfigError, match="horizon"):
        build_task(spec, {"horizon": 0})
    with pytest.raises(ConfigError, match="quantiles"):
        build_task(spec, {"quantiles": 1})
    with pytest.raises(ConfigError, match="ties"):
        build_task(spec, {"ties": "down"})
    task = build_task(spec, {"horizon": 5})
    assert task.label_horizon() == 5 and task.prediction_columns() == ("score",)


def test_served_answers_and_outcomes(plugins):
    task = build_task(plugins.task("cross_section"), {})
    assert task.label({"score": 0.7}) is None
    assert task.log_fields({"score": 0.7})["prediction_value"] == 0.7
    assert "rank" in task.describe({"score": 0.7})["meaning"]
    assert task.score_outcome({"prediction_value": 0.7}, 1.2) == (None, None)
    with pytest.raises(ValueError, match="forward return"):
        task.score_outcome({"prediction_value": 0.7}, float("nan"))


def test_momentum_and_reversal_read_only_the_past(plugins):
    from treum.core.model import build_model
    from treum.commands.compose import model_config

    panel = _prices(n_days=300, n_stocks=3)
    task = build_task(plugins.task("cross_section"), {})
    mom = build_model(plugins.model("momentum_12_1"), model_config(plugins, "momentum_12_1", []), task).fit(panel)
    rev = build_model(plugins.model("reversal_1m"), model_config(plugins, "reversal_1m", []), task).fit(panel)
    s0 = panel.xs("S0", level="entity")["close"]
    last = panel.index[-3]  # S0 on the last day
    assert mom.predict(panel).loc[last, "score"] == pytest.approx(np.log(s0.iloc[-22] / s0.iloc[-253]))
    assert rev.predict(panel).loc[last, "score"] == pytest.approx(-np.log(s0.iloc[-1] / s0.iloc[-22]))
    assert mom.predict(panel)["score"].isna().sum() == 3 * 252  # the warm-up
