"""The technical feature set: returns, volatility, RSI, MACD, ATR, volume z-score, distance from MAs.

Every column is computed per entity with backward-looking windows only, so the
value at t uses data up to t (``tests/core/test_features.py`` truncates the
data and recomputes to prove it). Columns are named ``f_*``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from treum.core.hookspecs import hookimpl
from treum.core.specs import FeatureSetSpec

DEFAULTS: dict[str, Any] = {
    "return_windows": [1, 5, 21, 63],
    "vol_windows": [21, 63],
    "rsi_window": 14,
    "macd": [12, 26, 9],
    "atr_window": 14,
    "volume_window": 21,
    "ma_windows": [50, 200],
}


def _one_entity(g: pd.DataFrame, cfg: dict[str, Any]) -> pd.DataFrame:
    close = g["close"].astype(float)
    logp = np.log(close)
    r = logp.diff() * 100.0
    out = {}
    for w in cfg["return_windows"]:
        out[f"f_ret_{w}"] = (logp - logp.shift(w)) * 100.0
    for w in cfg["vol_windows"]:
        out[f"f_vol_{w}"] = r.rolling(w, min_periods=w).std()
    w = int(cfg["rsi_window"])
    up = r.clip(lower=0).ewm(alpha=1 / w, min_periods=w, adjust=False).mean()
    down = (-r).clip(lower=0).ewm(alpha=1 / w, min_periods=w, adjust=False).mean()
    out[f"f_rsi_{w}"] = 100 - 100 / (1 + up / down.replace(0, np.nan))
    fast, slow, signal = (int(x) for x in cfg["macd"])
    macd = (close.ewm(span=fast, min_periods=fast, adjust=False).mean()
            - close.ewm(span=slow, min_periods=slow, adjust=False).mean()) / close * 100
    sig = macd.ewm(span=signal, min_periods=signal, adjust=False).mean()
    out["f_macd"], out["f_macd_signal"], out["f_macd_hist"] = macd, sig, macd - sig
    prev = close.shift(1)
    if {"high", "low"} <= set(g.columns):
        tr = pd.concat([g["high"] - g["low"], (g["high"] - prev).abs(), (g["low"] - prev).abs()], axis=1).max(axis=1)
    else:  # close-only data: the close-to-close range is the true range's lower bound
        tr = (close - prev).abs()
    w = int(cfg["atr_window"])
    out[f"f_atr_{w}"] = tr.ewm(alpha=1 / w, min_periods=w, adjust=False).mean() / close * 100
    if "volume" in g.columns and g["volume"].gt(0).any():
        w = int(cfg["volume_window"])
        lv = np.log1p(g["volume"].astype(float))
        out[f"f_volume_z_{w}"] = (lv - lv.rolling(w, min_periods=w).mean()) / lv.rolling(w, min_periods=w).std()
    for w in cfg["ma_windows"]:
        out[f"f_dist_ma_{w}"] = (close / close.rolling(w, min_periods=w).mean() - 1) * 100
    return pd.DataFrame(out, index=g.index)


def compute(panel: pd.DataFrame, cfg: Any) -> pd.DataFrame:
    """Technical features for every row of ``panel`` (NaN during each entity's warm-up)."""
    merged = dict(DEFAULTS)
    if cfg is not None:
        merged.update({k: v for k, v in dict(cfg).items() if k != "name"})
    # a series that is not a price (a rate, a growth figure) can be zero or negative: its log features are NaN
    with np.errstate(divide="ignore", invalid="ignore"):
        parts = [_one_entity(g, merged) for _, g in panel.groupby(level="entity", sort=False)]
    frame = pd.concat(parts).reindex(panel.index)
    return frame.replace([np.inf, -np.inf], np.nan)


@hookimpl
def treum_features() -> list[FeatureSetSpec]:
    return [
        FeatureSetSpec(
            "technical",
            "returns over several windows, rolling volatility, RSI, MACD, ATR, volume z-score, distance from MAs",
            compute,
        )
    ]
