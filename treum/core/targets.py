"""Targets per task, computed per entity.

Targets look forward by construction; they are used only as labels, and the
walk-forward loop purges every training row whose label window reaches into the
test block.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BULL, BEAR = 0, 1


def log_returns(panel: pd.DataFrame, column: str = "close", scale: float = 100.0) -> pd.Series:
    """Per-entity log returns in percent (scale 100), NaN on each entity's first row."""
    price = panel[column].astype(float)
    return np.log(price).groupby(level="entity").diff() * scale


def forward_return(panel: pd.DataFrame, horizon: int, column: str = "close") -> pd.Series:
    """log(close[t+h] / close[t]) in percent, per entity; NaN where t+h is past the data."""
    logp = np.log(panel[column].astype(float))
    return (logp.groupby(level="entity").shift(-horizon) - logp) * 100.0


def direction_target(panel: pd.DataFrame, horizon: int, ties: str = "drop") -> pd.Series:
    """1 if the h-bar forward return is positive, 0 if negative.

    A return of exactly zero is a tie. Coarse price ticks make ties common in
    some data (skfolio's 1990s quotes: 8-13% of stock-days), and "up = r > 0"
    would silently call them down. ``ties="drop"`` (the default) leaves them
    NaN, so they are neither trained on nor scored; ``"down"`` counts them as 0.
    """
    fwd = forward_return(panel, horizon)
    y = pd.Series(np.where(fwd > 0, 1.0, 0.0), index=panel.index)
    y[fwd.isna()] = np.nan
    if ties == "drop":
        y[fwd == 0] = np.nan
    elif ties != "down":
        raise ValueError(f"ties must be 'drop' or 'down', got {ties!r}")
    return y


def forward_variance(panel: pd.DataFrame, horizon: int) -> pd.Series:
    """Realised variance over the next h bars: sum of squared percent log returns t+1..t+h."""
    r2 = log_returns(panel) ** 2
    out = []
    for _, s in r2.groupby(level="entity", sort=False):
        # sum of r2[t+1..t+h]: reverse rolling sum shifted by one
        fwd = s[::-1].rolling(horizon, min_periods=horizon).sum()[::-1].shift(-1)
        out.append(fwd)
    return pd.concat(out).reindex(panel.index)


def lunde_timmermann(price: pd.Series, bull: float = 0.20, bear: float = 0.20) -> pd.Series:
    """Bull/bear dating of Lunde and Timmermann (2004): BEAR (1) or BULL (0) per bar.

    A bear market starts at a peak once the price has fallen ``bear`` below it;
    a bull market starts at a trough once the price has risen ``bull`` above it.
    The dating is ex post (it knows where peaks were) and is used as a label only.
    """
    p = price.to_numpy(dtype=float)
    n = len(p)
    labels = np.full(n, -1, dtype=int)
    state: int | None = None
    peak_i = trough_i = 0
    last_switch = 0
    for i in range(1, n):
        if state in (None, BULL):
            if p[i] > p[peak_i]:
                peak_i = i
            if p[i] <= p[peak_i] * (1 - bear):
                # the first turn of the data: a peak on the very first bar opens no bull market
                start = peak_i + 1 if (state is not None or peak_i > 0) else 0
                labels[last_switch:start] = BULL
                state, last_switch, trough_i = BEAR, start, i
                continue
        if state in (None, BEAR):
            if p[i] < p[trough_i]:
                trough_i = i
            if p[i] >= p[trough_i] * (1 + bull):
                start = trough_i + 1 if (state is not None or trough_i > 0) else 0
                labels[last_switch:start] = BEAR
                state, last_switch, peak_i = BULL, start, i
    labels[last_switch:] = BULL if state in (None, BULL) else BEAR
    return pd.Series(labels, index=price.index, name="regime")


def regime_target(panel: pd.DataFrame, bull: float = 0.20, bear: float = 0.20) -> pd.Series:
    """Lunde-Timmermann labels per entity on the close."""
    parts = [
        lunde_timmermann(g["close"], bull, bear) for _, g in panel.groupby(level="entity", sort=False)
    ]
    return pd.concat(parts).reindex(panel.index).astype(float)
