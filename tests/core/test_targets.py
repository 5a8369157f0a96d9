"""Label building blocks: forward returns and forward variance (task labels are tested in tests/plugins)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from treum.core.data import make_panel
from treum.core.targets import forward_return, forward_variance


def _panel(prices):
    idx = pd.bdate_range("2020-01-01", periods=len(prices))
    return make_panel(pd.DataFrame({"close": prices}, index=idx), "X")


def test_forward_return_is_the_percent_log_return_h_bars_ahead():
    panel = _panel([100.0, 110.0, 121.0])
    fwd = forward_return(panel, 2)
    assert np.isclose(fwd.iloc[0], np.log(1.21) * 100) and np.isnan(fwd.iloc[1])


def test_forward_variance_sums_the_next_h_squared_returns():
    prices = [100.0, 101.0, 99.0, 100.0, 102.0]
    panel = _panel(prices)
    r = np.diff(np.log(prices)) * 100
    v2 = forward_variance(panel, 2)
    assert np.isclose(v2.iloc[0], r[0] ** 2 + r[1] ** 2)
    assert np.isclose(v2.iloc[2], r[2] ** 2 + r[3] ** 2)
    assert np.isnan(v2.iloc[3])
