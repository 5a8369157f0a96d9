"""The cross-asset feature set: no look-ahead in the stock data, correlations that mean what they say."""

from __future__ import annotations

import numpy as np
import pandas as pd

from treum.core.data import make_panel
from treum.plugins.features.cross_asset import (
    DEFAULTS,
    average_correlation,
    compute,
    cross_asset_features,
    stock_prices,
    vix_close,
)


def test_features_up_to_t_are_unchanged_when_later_stock_data_is_cut(plugins):
    index = plugins.dataset("sp500_index").load({"start": "2006-01-01", "end": "2009-12-31"})
    prices, vix = stock_prices(), vix_close()
    full = cross_asset_features(index, prices, vix, DEFAULTS)
    for cut in ("2007-06-29", "2008-10-10"):
        short = cross_asset_features(index.loc[:cut], prices.loc[:cut], vix.loc[:cut], DEFAULTS)
        pd.testing.assert_frame_equal(short, full.loc[:cut])
    assert full.loc["2007-06-29":"2009-12-31"].drop(columns="f_vix").notna().all().all()


def test_a_later_shock_to_the_stocks_changes_nothing_before_it(plugins):
    index = plugins.dataset("sp500_index").load({"start": "2010-01-01", "end": "2011-12-31"})
    prices = stock_prices().loc["2009-01-01":"2011-12-31"].copy()
    base = cross_asset_features(index, prices, None, DEFAULTS)
    shocked = prices.copy()
    shocked.loc["2011-06-01":, "AAPL"] *= 0.5
    after = cross_asset_features(index, shocked, None, DEFAULTS)
    pd.testing.assert_frame_equal(after.loc[:"2011-05-31"], base.loc[:"2011-05-31"])
    assert not after.loc["2011-06-01":, "f_corr_21"].equals(base.loc["2011-06-01":, "f_corr_21"])


def test_the_average_correlation_of_identical_stocks_is_one_and_of_independent_ones_near_zero():
    rng = np.random.default_rng(0)
    r = rng.normal(size=500)
    same = pd.DataFrame({c: r for c in "ABCD"})
    corr = average_correlation(same, 21)
    assert corr.iloc[:20].isna().all() and np.allclose(corr.iloc[20:], 1.0)
    indep = pd.DataFrame(rng.normal(size=(500, 10)))
    assert abs(average_correlation(indep, 250).iloc[-1]) < 0.05
    opposite = pd.DataFrame({"A": r, "B": -r})
    assert np.allclose(average_correlation(opposite, 63).iloc[62:], -1.0)


def test_the_correlation_matches_pandas_and_skips_a_stock_stuck_on_one_tick():
    rng = np.random.default_rng(1)
    r = pd.DataFrame(rng.normal(size=(100, 5)), columns=list("ABCDE"))
    expected = r.iloc[-30:].corr().to_numpy()
    k = expected.shape[0]
    assert np.isclose(average_correlation(r, 30).iloc[-1], (expected.sum() - k) / (k * (k - 1)))
    r["E"] = 0.0  # no move in the window: it has no correlation and is left out
    sub = r[list("ABCD")].iloc[-30:].corr().to_numpy()
    assert np.isclose(average_correlation(r, 30).iloc[-1], (sub.sum() - 4) / 12)


def test_a_single_entity_index_panel_gets_every_feature_and_the_vix_only_on_its_dates(plugins):
    """What serving does: compute(rows, {}) on the index's bars alone."""
    index = plugins.dataset("sp500_index").load({"start": "2013-01-01", "end": "2022-12-28"})
    feats = compute(index, {})
    assert feats.columns.str.startswith("f_").all()
    assert feats.index.equals(index.index)
    last = feats.iloc[-1]
    assert last.drop("f_vix").notna().all() and np.isnan(last["f_vix"])
    assert feats.loc["2016-06-01":"2016-06-30", "f_vix"].notna().all()
    breadth = feats["f_breadth_50"].dropna()
    assert breadth.between(0, 1).all()


def test_dates_the_stocks_do_not_cover_get_nan_stock_features():
    idx = pd.bdate_range("2023-02-01", periods=30)
    panel = make_panel(pd.DataFrame({"close": np.linspace(4000, 4100, 30)}, index=idx), "SP500")
    feats = compute(panel, {})
    assert feats["f_corr_21"].isna().all() and feats["f_breadth_50"].isna().all()
    assert feats["f_vol_21"].notna().sum() == 30 - 21
