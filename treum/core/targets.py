"""Label building blocks that tasks share, computed per entity.

Targets look forward by construction; they are used only as labels, and the
walk-forward loop purges every training row whose label window reaches into the
test block (tasks whose labels are decided after the fact recompute them per fold
instead; see ``treum.core.task``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def log_returns(panel: pd.DataFrame, column: str = "close", scale: float = 100.0) -> pd.Series:
    """Per-entity log returns in percent (scale 100), NaN on each entity's first row."""
    price = panel[column].astype(float)
    return np.log(price).groupby(level="entity").diff() * scale


def forward_return(panel: pd.DataFrame, horizon: int, column: str = "close") -> pd.Series:
    """log(close[t+h] / close[t]) in percent, per entity; NaN where t+h is past the data."""
    logp = np.log(panel[column].astype(float))
    return (logp.groupby(level="entity").shift(-horizon) - logp) * 100.0


def forward_variance(panel: pd.DataFrame, horizon: int) -> pd.Series:
    """Realised variance over the next h bars: sum of squared percent log returns t+1..t+h."""
    r2 = log_returns(panel) ** 2
    out = []
    for _, s in r2.groupby(level="entity", sort=False):
        # sum of r2[t+1..t+h]: reverse rolling sum shifted by one
        fwd = s[::-1].rolling(horizon, min_periods=horizon).sum()[::-1].shift(-1)
        out.append(fwd)
    return pd.concat(out).reindex(panel.index)
