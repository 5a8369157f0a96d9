"""Features at time t use data up to t only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from treum.core.data import slice_time


@pytest.mark.parametrize("cut", ["2005-06-30", "2012-03-15"])
def test_truncating_the_data_leaves_every_earlier_value_unchanged(plugins, cut):
    from skfolio.datasets import load_sp500_dataset  # noqa: F401  (the multi-entity panel below)

    full_panel = plugins.dataset("sp500_stocks").load({"start": "2003-01-01", "end": "2013-12-31"})
    compute = plugins.feature_set("technical").compute
    full = compute(full_panel, {})
    cut_ts = pd.Timestamp(cut)
    truncated = compute(slice_time(full_panel, end=cut_ts), {})
    earlier = slice_time(full, end=cut_ts)
    assert truncated.shape == earlier.shape
    pd.testing.assert_frame_equal(truncated, earlier, check_exact=False, rtol=1e-9, atol=1e-12)
    # and the comparison is not vacuous: the last rows are populated
    assert np.isfinite(earlier.tail(20).to_numpy()).mean() > 0.9


def test_feature_columns_are_the_documented_set(plugins, sp500):
    feats = plugins.feature_set("technical").compute(sp500, {})
    expected = {"f_ret_1", "f_ret_5", "f_ret_21", "f_ret_63", "f_vol_21", "f_vol_63", "f_rsi_14", "f_macd",
                "f_macd_signal", "f_macd_hist", "f_atr_14", "f_volume_z_21", "f_dist_ma_50", "f_dist_ma_200"}
    assert set(feats.columns) == expected
    late = feats.loc["2010"]
    assert late.notna().all().all()
    assert late["f_rsi_14"].between(0, 100).all()


def test_features_are_computed_per_entity(plugins):
    panel = plugins.dataset("sp500_stocks").load({"start": "2015-01-01", "end": "2016-12-31"})
    feats = plugins.feature_set("technical").compute(panel, {})
    aapl = panel.xs("AAPL", level="entity")["close"]
    expected = (np.log(aapl) - np.log(aapl.shift(1))) * 100
    got = feats.xs("AAPL", level="entity")["f_ret_1"]
    pd.testing.assert_series_equal(got, expected, check_names=False)
    # the first row of each stock has no previous close: NaN, not the other stock's price
    assert feats.groupby(level="entity")["f_ret_1"].apply(lambda s: s.isna().iloc[0]).all()
