"""The portfolio task: rebalance calendar, the risk layer, the backtest by hand, metrics and the Sharpe tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from treum.core.errors import TreumError
from treum.core.model import build_model
from treum.core.plugins import PluginSettings, create_plugin_registry
from treum.core.task import build_task
from treum.core.weights import cap_weights, limit_turnover, rebalance_dates, weights_to_rows
from treum.plugins.tasks.portfolio import backtest, max_drawdown, portfolio_metrics, sharpe_difference

PLUGINS = create_plugin_registry(PluginSettings())


def _task(**values):
    return build_task(PLUGINS.task("portfolio"), values)


def _panel(closes: dict[str, list[float]], start: str = "2021-01-27", benchmark: list[float] | None = None):
    days = pd.bdate_range(start, periods=len(next(iter(closes.values()))))
    wide = pd.DataFrame(closes, index=days)
    panel = wide.stack().rename("close").to_frame()
    panel.index.names = ["timestamp", "entity"]
    if benchmark is not None:
        panel["benchmark"] = pd.Series(benchmark, index=days).reindex(panel.index.get_level_values(0)).to_numpy()
    return panel.sort_index()


def test_rebalance_dates_are_the_first_bar_of_each_period_and_need_no_later_bar():
    days = pd.bdate_range("2021-01-25", "2021-04-10")
    monthly = rebalance_dates(days, "monthly")
    assert list(monthly.strftime("%Y-%m-%d")) == ["2021-01-25", "2021-02-01", "2021-03-01", "2021-04-01"]
    for cut in (10, 20, 37):  # truncating the data never changes an earlier decision date
        assert list(rebalance_dates(days[:cut], "monthly")) == [d for d in monthly if d <= days[cut - 1]]
    assert len(rebalance_dates(days, "daily")) == len(days)
    assert all(d.dayofweek == 0 for d in rebalance_dates(days, "weekly")[1:])  # Mondays (no holidays here)
    with pytest.raises(ValueError, match="rebalance must be one of"):
        rebalance_dates(days, "hourly")


def test_cap_weights_keeps_the_uncapped_proportions_and_refuses_an_impossible_cap():
    w = cap_weights(pd.Series([0.7, 0.2, 0.1], index=list("abc")), 0.5)
    assert w.sum() == pytest.approx(1) and w.max() <= 0.5 + 1e-12
    assert w["a"] == pytest.approx(0.5) and w["b"] / w["c"] == pytest.approx(2.0)
    assert cap_weights(pd.Series([-1.0, np.nan, 0.0], index=list("abc")), None).tolist() == pytest.approx([1 / 3] * 3)
    with pytest.raises(TreumError, match="raise task.max_weight to at least 0.3333"):
        cap_weights(pd.Series([1.0, 1.0, 1.0], index=list("abc")), 0.3)


def test_limit_turnover_moves_part_way_and_spares_the_first_build():
    held = pd.Series([1.0, 0.0], index=list("ab"))
    target = pd.Series([0.0, 1.0], index=list("ab"))
    moved = limit_turnover(target, held, 0.5)
    assert float((moved - held).abs().sum()) == pytest.approx(0.5) and moved.sum() == pytest.approx(1)
    assert limit_turnover(target, None, 0.5).equals(target)
    assert limit_turnover(target, held, 3.0).equals(target)


def test_the_weight_cap_wins_over_the_turnover_cap_when_holdings_drifted_above_it():
    task = _task(max_weight=0.6, max_turnover=0.05)
    out = task.constrain(pd.Series([0.5, 0.5], index=list("ab")), pd.Series([0.8, 0.2], index=list("ab")))
    assert out.max() <= 0.6 + 1e-9 and out.sum() == pytest.approx(1)


def test_backtest_by_hand_costs_the_first_build_drifts_and_rebalances():
    # two stocks; a rebalances on 2021-02-01 (a new month); 10 bps on traded value
    a = [100, 110, 110, 121, 121, 121]
    b = [100, 100, 100, 100, 100, 100]
    panel = _panel({"a": a, "b": b}, start="2021-01-27")  # Wed 27, Thu 28, Fri 29, Mon 1 Feb, Tue, Wed
    task = _task(cost_bps=10)
    oos = panel.join(task.make_targets(panel))
    oos["weight"] = 0.5
    daily = backtest(oos, task)
    assert len(daily) == 5  # the last day has no next return
    # day 1: build from cash (traded 1.0, cost 10 bps), then a +10% and b flat: gross 5%
    assert daily["traded"].iloc[0] == pytest.approx(1.0)
    assert daily["net"].iloc[0] == pytest.approx((1 - 0.001) * 1.05 - 1)
    # day 2: holdings drifted to 0.55/0.45 ... no trade inside January, a flat
    assert daily["traded"].iloc[1] == 0 and daily["gross"].iloc[1] == pytest.approx(0.0)
    # day 3 (Jan 29): a +10% on its drifted weight 110/210
    assert daily["gross"].iloc[2] == pytest.approx(0.1 * 110 / 210)
    # day 4 (Feb 1, a rebalance): from a = 121/221 back to 0.5
    assert daily["traded"].iloc[3] == pytest.approx(2 * (121 / 221 - 0.5))
    metrics = portfolio_metrics(daily, n_boot=0)
    total = np.prod(1 + daily["net"].to_numpy()) - 1
    assert metrics["total_return"] == pytest.approx(total)
    assert metrics["cost_drag"] > 0 and metrics["n"] == 5


def test_backtest_of_the_index_uses_the_benchmark_return_and_refuses_a_bad_sum():
    panel = _panel({"a": [1, 2, 3, 4], "b": [1, 1, 1, 1]}, start="2021-02-01", benchmark=[100, 101, 102.01, 103.0301])
    task = _task(cost_bps=0)
    oos = panel.join(task.make_targets(panel))
    oos["weight"], oos["benchmark_weight"] = 0.0, 1.0
    daily = backtest(oos, task)
    assert daily["net"].to_numpy() == pytest.approx([0.01, 0.01, 0.01])
    assert not task.check_predictions(oos[["weight", "benchmark_weight"]])
    bad = oos[["weight"]].assign(weight=0.4)
    assert any("sum to 0.800000" in p for p in task.check_predictions(bad))


def test_max_drawdown_and_sharpe_difference():
    assert max_drawdown(np.array([0.1, -0.5, 0.2])) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    a = rng.normal(0.0005, 0.01, 3000)
    same = sharpe_difference(a, 2 * a)  # a scaled copy has the same Sharpe
    assert same["sharpe_diff"] == pytest.approx(0.0, abs=1e-9) and same["sharpe_diff_pvalue"] > 0.99
    better = sharpe_difference(a + 0.001, a)
    assert better["sharpe_diff"] > 0 and better["sharpe_diff_pvalue"] < 0.001 and better["sharpe_diff_pvalue_jkm"] < 0.001
    # independent pairs with equal true Sharpe: the test rejects at 5% about 5% of the time, no more
    p = [sharpe_difference(*np.random.default_rng(s).normal(0.0005, 0.01, (2, 1000)))["sharpe_diff_pvalue"]
         for s in range(200)]
    assert 0.01 <= np.mean(np.array(p) < 0.05) <= 0.10


def test_weights_to_rows_holds_the_latest_target_and_zero_for_absent_entities():
    panel = _panel({"a": [1, 2, 3, 4], "b": [1, 1, 1, 1]}, start="2021-02-01")
    d = panel.index.get_level_values("timestamp").unique()
    rows = weights_to_rows({d[1]: pd.Series({"a": 1.0})}, panel.index)
    assert rows.loc[d[0], "weight"].isna().all()
    assert rows.loc[(d[2], "a"), "weight"] == 1.0 and rows.loc[(d[3], "b"), "weight"] == 0.0


@pytest.mark.parametrize("name", ["inverse_vol", "min_variance", "rl_portfolio"])
def test_predict_from_gives_predict_s_answers_from_its_start_whatever_the_caps(name):
    from treum.commands.contract import FAST
    from treum.commands.compose import model_config

    spec = PLUGINS.model(name)
    panel = PLUGINS.dataset("sp500_stocks").load({"start": "2013-01-01", "end": "2016-12-31"})
    panel = panel[panel.index.get_level_values("entity").isin(["AAPL", "JNJ", "XOM", "KO"])]
    ts = panel.index.get_level_values("timestamp")
    task = _task(max_weight=0.4, max_turnover=0.05)  # a turnover cap would make answers depend on the start
    model = build_model(spec, model_config(PLUGINS, name, [], FAST.get(name, {})), task)
    model.fit(panel[ts < pd.Timestamp("2015-06-01")], panel[(ts >= pd.Timestamp("2015-06-05"))
                                                             & (ts < pd.Timestamp("2015-12-01"))])
    start = pd.Timestamp("2016-03-15")
    full = model.predict(panel)
    part = model.predict_from(panel, start)
    pd.testing.assert_frame_equal(part[ts >= start], full[ts >= start])
    assert full["weight"].max() <= 0.4 + 1e-9  # the weight cap holds in what the model predicts
    last = model.predict_last(panel)  # what serving asks: the last row, as predict answers it
    assert last["weight"] == pytest.approx(full["weight"].iloc[-1])


def test_the_index_baseline_answers_nothing_without_a_benchmark_column():
    spec = PLUGINS.model("index_buy_hold")
    panel = PLUGINS.dataset("sp500_stocks").load({"start": "2016-01-01", "end": "2016-03-31"})
    from treum.commands.compose import model_config

    model = build_model(spec, model_config(PLUGINS, "index_buy_hold", []), _task()).fit(panel)
    assert (model.predict(panel)["benchmark_weight"].dropna() == 1).all()
    assert model.predict(panel.drop(columns=["benchmark"]))["weight"].isna().all()


def test_config_errors_name_the_key():
    with pytest.raises(TreumError, match="max_weight"):
        _task(max_weight=1.5)
    with pytest.raises(TreumError, match="rebalance"):
        _task(rebalance="hourly")


def test_the_survivorship_caveat_is_printed_beside_the_leaderboard(capsys):
    from treum.commands.output import console, print_leaderboard

    table = pd.DataFrame({"model": ["equal_weight"], "kind": ["baseline"], "sharpe": [0.7], "n": [10.0],
                          "empty": [0.0], "fit_seconds": [0.0]})
    with console.capture() as cap:
        print_leaderboard("portfolio", table, ("sharpe",), PLUGINS.dataset("sp500_stocks").caveat)
    assert "survivorship" in cap.get() and "biased upward" in cap.get()
