"""Targets: direction with explicit ties, forward variance, Lunde-Timmermann regimes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from treum.core.data import make_panel
from treum.core.targets import BEAR, BULL, direction_target, forward_variance, lunde_timmermann


def _panel(prices):
    idx = pd.bdate_range("2020-01-01", periods=len(prices))
    return make_panel(pd.DataFrame({"close": prices}, index=idx), "X")


def test_direction_ties_are_dropped_not_called_down():
    panel = _panel([10.0, 10.0, 11.0, 10.5, 10.5])
    y = direction_target(panel, 1)
    assert np.isnan(y.iloc[0])  # 10 -> 10 is a tie
    assert y.iloc[1] == 1 and y.iloc[2] == 0
    assert np.isnan(y.iloc[3]) and np.isnan(y.iloc[4])  # tie, then no future
    assert direction_target(panel, 1, ties="down").iloc[0] == 0


def test_forward_variance_sums_the_next_h_squared_returns():
    prices = [100.0, 101.0, 99.0, 100.0, 102.0]
    panel = _panel(prices)
    r = np.diff(np.log(prices)) * 100
    v2 = forward_variance(panel, 2)
    assert np.isclose(v2.iloc[0], r[0] ** 2 + r[1] ** 2)
    assert np.isclose(v2.iloc[2], r[2] ** 2 + r[3] ** 2)
    assert np.isnan(v2.iloc[3])


def test_lunde_timmermann_dates_a_peak_to_trough_bear():
    # up 30%, down 25% (a bear), up 30% (a bull)
    path = np.r_[np.linspace(100, 130, 30), np.linspace(129, 97.5, 30), np.linspace(98, 127, 30)]
    labels = lunde_timmermann(pd.Series(path))
    peak, trough = int(np.argmax(path[:60])), 30 + int(np.argmin(path[30:60]))
    assert (labels.iloc[: peak + 1] == BULL).all()
    assert (labels.iloc[peak + 1 : trough + 1] == BEAR).all()
    assert (labels.iloc[trough + 1 :] == BULL).all()


def test_a_fall_short_of_twenty_percent_is_no_bear():
    path = np.r_[np.linspace(100, 130, 30), np.linspace(129, 110, 20), np.linspace(111, 140, 30)]
    assert (lunde_timmermann(pd.Series(path)) == BULL).all()


def test_the_2008_crash_is_a_bear_market_on_real_data(plugins):
    index = plugins.dataset("sp500_index").load({})
    labels = lunde_timmermann(index["close"].droplevel("entity"))
    assert labels.loc["2008-10-01":"2008-11-20"].eq(BEAR).all()
    assert labels.loc["2013"].eq(BULL).all()
    assert labels.loc["2020-03-01":"2020-03-20"].eq(BEAR).all()
