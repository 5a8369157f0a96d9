"""The cross-asset feature set: the 20 skfolio stocks' co-movement and breadth, the entity's own stress features.

For every timestamp of the panel it adds, from the 20 stocks of
``skfolio.datasets.load_sp500_dataset`` (aligned by date; NaN on dates the
stocks do not cover, e.g. after 2022-12-28):

- ``f_corr_21``, ``f_corr_63``: the average pairwise correlation of the stocks'
  daily log returns over the last 21 and 63 bars, and ``f_corr_change`` (21 less 63);
- ``f_dispersion_21``: the cross-sectional standard deviation of the stocks'
  daily returns (percent), averaged over the last 21 bars;
- ``f_breadth_50``: the share of stocks whose close is above its 50-bar average;
- ``f_stock_vol_mean``, ``f_stock_vol_max``: the mean and the largest of the
  stocks' 21-bar realised volatilities (daily percent);

and, per entity of the panel, from its own close: ``f_vol_21``, ``f_vol_63``
(realised volatility, daily percent), ``f_vol_ratio`` (21 over 63),
``f_ret_21``, ``f_ret_63`` (log returns, percent), ``f_drawdown_252`` (percent
below the highest close of the last 252 bars), ``f_dist_ma_50``,
``f_dist_ma_200`` (percent from the moving averages, as ``technical``).

``f_vix`` is the CBOE VIX close of ``arch.data.vix`` on the same date: it
covers 2014-01-03..2019-01-03 only, so it is NaN elsewhere. The stress models
leave it out of their inputs (``MODEL_EXCLUDED``), or they would lose every row
outside those five years; only the ``vix_level`` baseline reads the VIX.

Every window looks backward, so a feature at t uses data up to t only
(``tests/plugins/test_cross_asset.py`` cuts the stock data and recomputes).
The stock and VIX data are loaded once per process (``lru_cache``): serving calls
``compute`` per request.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from treum.core.hookspecs import hookimpl
from treum.core.specs import FeatureSetSpec

DEFAULTS: dict[str, Any] = {
    "corr_windows": [21, 63],
    "dispersion_window": 21,
    "breadth_window": 50,
    "stock_vol_window": 21,
    "vix": True,
}

# features the stress models never read: the VIX covers 2014-2019 only
MODEL_EXCLUDED = ("f_vix",)


@lru_cache(maxsize=1)
def stock_prices() -> pd.DataFrame:
    """The 20 skfolio stocks' daily closes, dates x tickers (loaded once per process)."""
    from skfolio.datasets import load_sp500_dataset

    prices = load_sp500_dataset().astype(float)
    prices.index = pd.DatetimeIndex(prices.index).as_unit("ns")
    return prices.sort_index()


@lru_cache(maxsize=1)
def vix_close() -> pd.Series:
    """The CBOE VIX close from ``arch.data.vix`` (2014-01-03..2019-01-03), by date."""
    from arch.data import vix

    s = vix.load()["vix"].dropna().astype(float)
    s.index = pd.DatetimeIndex(s.index).as_unit("ns")
    return s.sort_index()


def average_correlation(returns: pd.DataFrame, window: int) -> pd.Series:
    """The mean of the pairwise correlations of the columns over the last ``window`` rows, per row.

    Rolling sums of r_i, r_i^2 and r_i r_j give every pairwise covariance at once.
    A row whose window lacks a value of any column is NaN; a column that did not move
    in the window (a 1990s quote stuck on one tick) has no correlation and is left out
    of that window's mean.
    """
    r = returns.to_numpy(dtype=float)
    n, k = r.shape
    out = np.full(n, np.nan)
    if n < window or k < 2:
        return pd.Series(out, index=returns.index)
    ok = np.isfinite(r).all(axis=1)
    r0 = np.where(np.isfinite(r), r, 0.0)

    def rolling_sum(x: np.ndarray) -> np.ndarray:
        c = np.cumsum(np.concatenate([np.zeros((1,) + x.shape[1:]), x]), axis=0)
        return c[window:] - c[:-window]

    s1 = rolling_sum(r0)  # (n-w+1, k)
    s2 = rolling_sum(r0[:, :, None] * r0[:, None, :])  # (n-w+1, k, k)
    complete = rolling_sum(ok.astype(float)[:, None])[:, 0] == window
    cov = (s2 - s1[:, :, None] * s1[:, None, :] / window) / (window - 1)
    var = np.diagonal(cov, axis1=1, axis2=2)
    live = var > 1e-10  # a stock whose price did not move in the window (1990s ticks) has no correlation
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt(np.where(live, var, 1.0))
        corr = cov / (sd[:, :, None] * sd[:, None, :])
    pair = live[:, :, None] & live[:, None, :] & ~np.eye(k, dtype=bool)[None]
    pairs = pair.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(pair, corr, 0.0).sum(axis=(1, 2)) / pairs
    good = complete & (pairs > 0)
    out[window - 1 :] = np.where(good, np.clip(mean, -1.0, 1.0), np.nan)
    return pd.Series(out, index=returns.index)


def stock_features(prices: pd.DataFrame, cfg: dict[str, Any]) -> pd.DataFrame:
    """The stocks' co-movement, dispersion, breadth and volatility per date, from closes up to that date."""
    logp = np.log(prices)
    r = logp.diff() * 100.0
    out: dict[str, pd.Series] = {}
    for w in cfg["corr_windows"]:
        out[f"f_corr_{w}"] = average_correlation(r, int(w))
    if len(cfg["corr_windows"]) >= 2:
        a, b = cfg["corr_windows"][0], cfg["corr_windows"][1]
        out["f_corr_change"] = out[f"f_corr_{a}"] - out[f"f_corr_{b}"]
    w = int(cfg["dispersion_window"])
    out[f"f_dispersion_{w}"] = r.std(axis=1, skipna=False).rolling(w, min_periods=w).mean()
    w = int(cfg["breadth_window"])
    ma = prices.rolling(w, min_periods=w).mean()
    above = (prices > ma).astype(float).where(ma.notna())
    out[f"f_breadth_{w}"] = above.mean(axis=1, skipna=False)
    w = int(cfg["stock_vol_window"])
    vol = r.rolling(w, min_periods=w).std()
    out["f_stock_vol_mean"] = vol.mean(axis=1, skipna=False)
    out["f_stock_vol_max"] = vol.max(axis=1, skipna=False)
    return pd.DataFrame(out, index=prices.index)


def own_features(close: pd.Series) -> pd.DataFrame:
    """The entity's own realised volatility, trend and drawdown, from its closes up to each bar."""
    close = close.astype(float)
    logp = np.log(close)
    r = logp.diff() * 100.0
    out = {
        "f_vol_21": r.rolling(21, min_periods=21).std(),
        "f_vol_63": r.rolling(63, min_periods=63).std(),
        "f_ret_21": (logp - logp.shift(21)) * 100.0,
        "f_ret_63": (logp - logp.shift(63)) * 100.0,
        "f_drawdown_252": (close / close.rolling(252, min_periods=252).max() - 1) * 100.0,
        "f_dist_ma_50": (close / close.rolling(50, min_periods=50).mean() - 1) * 100.0,
        "f_dist_ma_200": (close / close.rolling(200, min_periods=200).mean() - 1) * 100.0,
    }
    out["f_vol_ratio"] = out["f_vol_21"] / out["f_vol_63"]
    return pd.DataFrame(out, index=close.index)


def cross_asset_features(panel: pd.DataFrame, prices: pd.DataFrame, vix: pd.Series | None,
                         cfg: dict[str, Any], stocks: pd.DataFrame | None = None) -> pd.DataFrame:
    """The feature set for ``panel`` from the given stock closes (dates x tickers) and VIX (or None);
    ``stocks`` is ``stock_features(prices, cfg)`` when the caller has it already."""
    ts = panel.index.get_level_values("timestamp")
    stocks = (stock_features(prices, cfg) if stocks is None else stocks).reindex(pd.DatetimeIndex(ts))
    stocks.index = panel.index
    parts = [own_features(g["close"]) for _, g in panel.groupby(level="entity", sort=False)]
    own = pd.concat(parts).reindex(panel.index)
    frame = pd.concat([own, stocks], axis=1)
    if vix is not None:
        frame["f_vix"] = vix.reindex(pd.DatetimeIndex(ts)).to_numpy()
    return frame.replace([np.inf, -np.inf], np.nan)


@lru_cache(maxsize=8)
def _packaged_stock_features(key: str) -> pd.DataFrame:
    """``stock_features`` of the packaged stocks for one config (its JSON): computed once per process,
    since serving computes the feature set on every request that misses its cache."""
    import json

    return stock_features(stock_prices(), json.loads(key))


def compute(panel: pd.DataFrame, cfg: Any) -> pd.DataFrame:
    """Cross-asset and own stress features for every row of ``panel`` (NaN in warm-ups and off the stocks' dates)."""
    import json

    merged = dict(DEFAULTS)
    if cfg is not None:
        merged.update({k: v for k, v in dict(cfg).items() if k != "name"})
    stocks = _packaged_stock_features(json.dumps(merged, sort_keys=True, default=str))
    return cross_asset_features(panel, stock_prices(), vix_close() if merged["vix"] else None, merged, stocks)


@hookimpl
def treum_features() -> list[FeatureSetSpec]:
    return [
        FeatureSetSpec(
            "cross_asset",
            "the 20 skfolio stocks' average correlation, dispersion, breadth and volatility, the entity's own "
            "volatility, trend and drawdown, and the VIX (2014-2019 only)",
            compute,
        )
    ]
