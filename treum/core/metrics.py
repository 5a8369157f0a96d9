"""Metrics that tasks share: block-bootstrap intervals, QLIKE, Diebold-Mariano, rank correlation.

Out-of-sample predictions are serially dependent, so intervals resample
blocks of consecutive bars, not single bars.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats


def information_coefficient(p: np.ndarray, r: np.ndarray) -> float:
    """Spearman rank correlation of a signal with the realised return (NaN for a constant signal)."""
    if len(p) < 2 or np.std(p) == 0 or np.std(r) == 0:
        return float("nan")
    return float(stats.spearmanr(p, r).statistic)


def block_bootstrap_ci(
    stat: Callable[[np.ndarray], float],
    n: int,
    n_boot: int,
    block: int = 21,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile interval of ``stat(idx)`` over moving-block resamples of ``range(n)``."""
    if n_boot <= 0 or n < 2 * block:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    n_blocks = int(np.ceil(n / block))
    values = np.empty(n_boot)
    for b in range(n_boot):
        starts = rng.integers(0, n - block + 1, size=n_blocks)
        idx = (starts[:, None] + np.arange(block)[None, :]).ravel()[:n]
        values[b] = stat(idx)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return (float("nan"), float("nan"))
    return (float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2)))


def day_resample_ci(figures: Callable[[np.ndarray], dict[str, float]], day: np.ndarray, n_boot: int, seed: int,
                    max_boot: int = 200) -> dict[str, float]:
    """95% percentile intervals (``<key>_ci_low``, ``<key>_ci_high``) of each figure over resamples of whole days.

    ``day`` numbers each row's day from 0; ``figures(weights)`` computes the figures with row weights, how many
    times each row's day was drawn, so a day's rows (one day's users) move together. At most ``max_boot``
    resamples (the intervals' third digit is stable by 200); nothing with ``n_boot`` 0 or under 20 days.
    """
    n_days = int(day.max()) + 1 if len(day) else 0
    if n_boot <= 0 or n_days < 20:
        return {}
    rng = np.random.default_rng(seed)
    draws = [figures(np.bincount(rng.integers(0, n_days, n_days), minlength=n_days)[day].astype(float))
             for _ in range(min(n_boot, max_boot))]
    out: dict[str, float] = {}
    for key in draws[0]:
        values = np.array([d[key] for d in draws], dtype=float)
        values = values[np.isfinite(values)]
        lo, hi = np.quantile(values, [0.025, 0.975]) if len(values) else (np.nan, np.nan)
        out[f"{key}_ci_low"], out[f"{key}_ci_high"] = float(lo), float(hi)
    return out


def qlike(realised: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """Patton's QLIKE loss per bar, ``log f + rv / f``; robust to noisy variance proxies."""
    f = np.maximum(np.asarray(forecast, dtype=float), 1e-12)
    return np.log(f) + np.asarray(realised, dtype=float) / f


def newey_west_lags(n: int) -> int:
    """The automatic bandwidth floor(4 (n/100)^(2/9)) of Newey and West (1994)."""
    return int(np.floor(4 * (n / 100) ** (2 / 9)))


def hac_covariance(y: np.ndarray, lags: int | None = None) -> np.ndarray | float:
    """Newey-West long-run covariance (Bartlett weights 1 - lag/(lags+1)) of the columns of ``y``, demeaned here.

    ``lags`` defaults to ``newey_west_lags(n)``; a 1-D ``y`` gives a float (the long-run variance).
    """
    x = np.asarray(y, dtype=float)
    flat = x.ndim == 1
    x = x.reshape(len(x), -1)
    n = len(x)
    lags = newey_west_lags(n) if lags is None else max(int(lags), 0)
    xc = x - x.mean(axis=0)
    out = xc.T @ xc / n
    for lag in range(1, min(lags, n - 1) + 1):
        g = xc[lag:].T @ xc[:-lag] / n
        out = out + (1 - lag / (lags + 1)) * (g + g.T)
    return float(out[0, 0]) if flat else out


def diebold_mariano(loss_a: np.ndarray, loss_b: np.ndarray, horizon: int = 1) -> tuple[float, float]:
    """Diebold-Mariano test of equal loss, with a Newey-West variance (lag h-1) and the HLN correction.

    Returns (statistic, two-sided p-value); a negative statistic means ``a`` has lower loss.
    """
    d = np.asarray(loss_a, dtype=float) - np.asarray(loss_b, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    if n < 10 or np.allclose(d, 0):
        return (float("nan"), float("nan"))
    dbar = d.mean()
    var = hac_covariance(d, horizon - 1)
    if var <= 0:
        return (float("nan"), float("nan"))
    dm = dbar / np.sqrt(var / n)
    hln = np.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    stat = float(dm * hln)
    p = float(2 * stats.t.sf(abs(stat), df=n - 1))
    return stat, p
