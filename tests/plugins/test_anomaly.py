"""The anomaly task: episode dating on hand-made price paths, labels, metrics and the seeded bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from treum.core.data import make_panel
from treum.core.errors import ConfigError
from treum.core.task import build_task
from treum.plugins.tasks.anomaly import (
    AnomalyConfig,
    anomaly_metrics,
    drawdown_episodes,
    stress_labels,
    volatility_episodes,
)


def _panel(prices, entity="X"):
    idx = pd.bdate_range("2020-01-01", periods=len(prices))
    return make_panel(pd.DataFrame({"close": np.asarray(prices, dtype=float)}, index=idx), entity)


# up to 120 on bar 10, 12.5% down by bar 20 (the 10% line, 108, is crossed on bar 18), back above 120 on bar 35
PATH = np.r_[np.linspace(100, 120, 11), np.linspace(118, 105, 10), np.linspace(106, 121, 15), np.full(40, 121.0)]


def test_an_episode_begins_on_the_first_close_ten_percent_below_the_running_peak():
    inside, starts = drawdown_episodes(PATH, 0.10, 63)
    first = 11 + int(np.flatnonzero(PATH[11:] <= 0.9 * 120)[0])  # after the peak on bar 10
    assert starts == [first] and PATH[first - 1] > 108 >= PATH[first]
    regain = int(np.flatnonzero(PATH[first:] >= 120)[0]) + first
    assert inside[first:regain].all() and not inside[regain:].any() and not inside[:first].any()


def test_an_episode_ends_after_max_bars_and_the_peak_restarts_from_there():
    fall = np.r_[np.full(5, 100.0), np.linspace(99, 50, 60)]  # a long slide: 10% from 100, then 10% from the reset
    inside, starts = drawdown_episodes(fall, 0.10, 10)
    assert starts[0] == int(np.flatnonzero(fall <= 90)[0])
    reset = starts[0] + 10
    assert not inside[reset] and inside[reset - 1]
    assert starts[1] == int(np.flatnonzero(fall[reset:] <= 0.9 * fall[reset])[0]) + reset


def test_labels_are_one_before_an_episode_nan_inside_and_zero_elsewhere():
    cfg = AnomalyConfig(horizon=5)
    y, lead, starts = stress_labels(PATH, cfg)
    s = starts[0]
    assert (y[s - 5 : s] == 1).all() and list(lead[s - 5 : s]) == [5, 4, 3, 2, 1]
    assert (y[: s - 5] == 0).all()
    inside, _ = drawdown_episodes(PATH, 0.10, 63)
    assert np.isnan(y[inside]).all() and inside[s]
    assert np.isnan(y[-5:]).all()  # the last h bars cannot be decided
    end = int(np.flatnonzero(~inside[s:])[0]) + s
    assert (y[end : len(PATH) - 5] == 0).all()


def test_labels_do_not_depend_on_prices_after_t_plus_h():
    task = build_task(_anomaly_spec(), {"horizon": 5})
    full = task.make_targets(_panel(PATH))["target_stress"].to_numpy()
    for cut in (15, 25, 40):
        part = task.make_targets(_panel(PATH[:cut]))["target_stress"].to_numpy()
        known = np.arange(cut) + 5 < cut
        np.testing.assert_array_equal(part[known], full[:cut][known])


def test_volatility_episodes_use_a_point_in_time_threshold():
    rng = np.random.default_rng(0)
    r = np.r_[rng.normal(0, 0.01, 400), rng.normal(0, 0.05, 30), rng.normal(0, 0.01, 100)]
    close = 100 * np.exp(np.cumsum(r))
    inside, starts, thr = volatility_episodes(close, 21, 0.95, 252, 63)
    assert np.isnan(thr[:252]).all() and len(starts) >= 1
    assert any(400 <= s <= 425 for s in starts)  # the calm-to-wild switch starts one
    # the threshold at t is a statistic of data up to t: cutting the future leaves it unchanged
    _, _, thr_cut = volatility_episodes(close[:410], 21, 0.95, 252, 63)
    np.testing.assert_array_equal(thr_cut, thr[:410])


def _anomaly_spec():
    from treum.plugins.tasks.anomaly import Anomaly

    return Anomaly.spec


def _scored(y, p, lead=None):
    idx = pd.MultiIndex.from_arrays([pd.bdate_range("2020-01-01", periods=len(y)), ["X"] * len(y)],
                                    names=["timestamp", "entity"])
    return pd.DataFrame({"target_stress": y, "p_stress": p,
                         "target_lead": lead if lead is not None else np.full(len(y), np.nan)}, index=idx)


def test_a_perfect_score_has_average_precision_one_and_a_constant_one_the_base_rate():
    y = np.r_[np.zeros(80), np.ones(20), np.zeros(100)]
    m = anomaly_metrics(_scored(y, y * 0.8 + 0.1), 0.1)
    assert m["ap"] == 1.0 and m["base_rate"] == pytest.approx(0.1)
    m = anomaly_metrics(_scored(y, np.full(len(y), 0.5)), 0.1)
    assert m["ap"] == pytest.approx(0.1)


def test_lead_time_counts_bars_from_the_first_alert_to_the_start():
    # two episodes starting at rows 50 and 150, h=10: rows 40..49 and 140..149 are 1
    n, h = 200, 10
    y = np.zeros(n)
    lead = np.full(n, np.nan)
    for s in (50, 150):
        y[s - h : s] = 1
        lead[s - h : s] = s - np.arange(s - h, s)
    p = np.zeros(n)
    p[43:50] = 1.0  # first alert 7 bars before the first start
    p[147:150] = 1.0  # 3 bars before the second
    p[100:105] = 1.0  # a false alarm: one alert onset on rows with nothing ahead
    m = anomaly_metrics(_scored(y, p, lead), alert_rate=15 / n)
    assert m["episodes"] == 2 and m["episodes_missed"] == 0
    assert m["lead_time_median"] == 5.0  # median of 7 and 3
    assert m["false_alarms_per_year"] == pytest.approx(1 / (n / 252))
    p[147:150] = 0.0
    m = anomaly_metrics(_scored(y, p, lead), alert_rate=12 / n)
    assert m["episodes_missed"] == 1 and m["lead_time_median"] == 7.0


def test_the_bootstrap_interval_of_the_ap_difference_is_reproducible_with_a_seed():
    rng = np.random.default_rng(1)
    y = (rng.random(600) < 0.1).astype(float)
    good, noise = y * 0.5 + rng.random(600) * 0.6, rng.random(600)
    oos, ref = _scored(y, good), _scored(y, noise)
    task = build_task(_anomaly_spec(), {"n_boot": 200, "seed": 3})
    a, b = task.compare(oos, ref), task.compare(oos, ref)
    assert a == b and a["ap_diff_lo"] < a["ap_diff"] < a["ap_diff_hi"]
    assert a["ap_diff_lo"] > 0  # the informative score beats noise, and the interval says so
    other = build_task(_anomaly_spec(), {"n_boot": 200, "seed": 4}).compare(oos, ref)
    assert other["ap_diff"] == a["ap_diff"] and (other["ap_diff_lo"], other["ap_diff_hi"]) != (a["ap_diff_lo"], a["ap_diff_hi"])


def test_precision_at_ref_uses_the_reference_alert_rate():
    y = np.r_[np.zeros(90), np.ones(10)]
    ref_p = np.r_[np.zeros(80), np.full(20, 0.95)]  # the reference flags 20 rows (p >= threshold 0.9)
    task = build_task(_anomaly_spec(), {"n_boot": 0})
    out = task.compare(_scored(y, np.linspace(0, 1, 100)), _scored(y, ref_p))
    assert out["ref_alert_rate"] == pytest.approx(0.2) and out["precision_at_ref"] == pytest.approx(0.5)


def test_bad_config_is_refused_with_a_clear_message():
    with pytest.raises(ConfigError, match="drawdown must be in"):
        build_task(_anomaly_spec(), {"drawdown": 10})
    with pytest.raises(ConfigError, match="episode"):
        build_task(_anomaly_spec(), {"episode": "crash"})


def test_served_answer_fields():
    task = build_task(_anomaly_spec(), {})
    assert task.label({"p_stress": 0.95}) == "stress" and task.label({"p_stress": 0.2}) == "calm"
    assert task.log_fields({"p_stress": 0.95}) == {"prediction_value": None, "prediction_probability": 0.95,
                                                   "prediction_class": "stress"}
    assert task.score_outcome({"prediction_probability": 0.95}, 1) == (True, pytest.approx(-0.05))
    with pytest.raises(ValueError):
        task.score_outcome({"prediction_probability": 0.95}, 0.4)


def test_the_2008_and_2020_crashes_start_episodes_on_real_data(plugins):
    from treum.plugins.tasks.anomaly import episode_table

    table = episode_table(plugins.dataset("sp500_index").load({}), AnomalyConfig())
    starts = pd.to_datetime(table["start"])
    assert ((starts >= "2020-02-20") & (starts <= "2020-03-10")).any()
    assert ((starts >= "2008-09-01") & (starts <= "2008-10-31")).any()
    assert not ((starts >= "2013-01-01") & (starts <= "2014-12-31")).any()  # a calm stretch


def test_the_alert_budget_is_exact_when_scores_tie():
    from treum.plugins.tasks.anomaly import top_share_alerts

    rule = np.r_[np.ones(30), np.zeros(70)]  # a 0/1 rule flags 30% of rows
    alert = top_share_alerts(rule, 0.10)
    assert alert.sum() == 10 and rule[alert].all()  # 10% of rows, all among the flagged ones
    assert np.flatnonzero(alert).max() > 20  # spread over the flagged rows, not the first ten
    rare = np.r_[np.ones(5), np.zeros(95)]
    alert = top_share_alerts(rare, 0.10)
    assert alert.sum() == 10 and alert[:5].all()  # every flagged row, then ties at 0 fill the budget
    assert top_share_alerts(np.arange(20.0), 0.25).sum() == 5
