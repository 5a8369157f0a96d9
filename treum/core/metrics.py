"""Metrics of the tasks, with moving-block bootstrap confidence intervals.

Out-of-sample predictions are serially dependent, so intervals resample
blocks of consecutive bars, not single bars.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score


def _safe_auc(y: np.ndarray, p: np.ndarray) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, p))


def _ic(p: np.ndarray, r: np.ndarray) -> float:
    if np.std(p) == 0 or np.std(r) == 0:
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


def direction_metrics(
    y: np.ndarray, p_up: np.ndarray, fwd_return: np.ndarray, n_boot: int = 500, seed: int = 0
) -> dict[str, float]:
    """Accuracy, balanced accuracy, AUC and information coefficient, each with a 95% CI."""
    y = np.asarray(y, dtype=int)
    p_up = np.asarray(p_up, dtype=float)
    r = np.asarray(fwd_return, dtype=float)
    pred = (p_up > 0.5).astype(int)
    fns: dict[str, Callable[[np.ndarray], float]] = {
        "accuracy": lambda i: float(accuracy_score(y[i], pred[i])),
        "balanced_accuracy": lambda i: float(balanced_accuracy_score(y[i], pred[i])),
        "auc": lambda i: _safe_auc(y[i], p_up[i]),
        "ic": lambda i: _ic(p_up[i], r[i]),
    }
    out: dict[str, float] = {"n": float(len(y)), "share_up_predicted": float(pred.mean())}
    full = np.arange(len(y))
    for name, fn in fns.items():
        out[name] = fn(full)
        lo, hi = block_bootstrap_ci(fn, len(y), n_boot, seed=seed)
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = lo, hi
    return out


def qlike(realised: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """Patton's QLIKE loss per bar, ``log f + rv / f``; robust to noisy variance proxies."""
    f = np.maximum(np.asarray(forecast, dtype=float), 1e-12)
    return np.log(f) + np.asarray(realised, dtype=float) / f


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
    dc = d - dbar
    gamma0 = dc @ dc / n
    var = gamma0
    for lag in range(1, horizon):
        var += 2 * (1 - lag / horizon) * (dc[lag:] @ dc[:-lag] / n)
    if var <= 0:
        return (float("nan"), float("nan"))
    dm = dbar / np.sqrt(var / n)
    hln = np.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    stat = float(dm * hln)
    p = float(2 * stats.t.sf(abs(stat), df=n - 1))
    return stat, p


def volatility_metrics(frame: pd.DataFrame, horizons: list[int]) -> dict[str, float]:
    """QLIKE and MSE per horizon, and the error of the volatility forecast in percent.

    ``frame`` holds ``var_h{h}`` forecasts and ``target_var_h{h}`` realised variances.
    """
    out: dict[str, float] = {}
    for h in horizons:
        f = frame[f"var_h{h}"].to_numpy(dtype=float)
        rv = frame[f"target_var_h{h}"].to_numpy(dtype=float)
        ok = np.isfinite(f) & np.isfinite(rv)
        f, rv = f[ok], rv[ok]
        out[f"qlike_h{h}"] = float(np.mean(qlike(rv, f)))
        out[f"mse_h{h}"] = float(np.mean((f - rv) ** 2))
        # error of the forecast volatility against realised volatility, in percent
        vol_f, vol_rv = np.sqrt(f), np.sqrt(rv)
        pos = vol_rv > 0
        out[f"vol_error_pct_h{h}"] = float(np.mean(np.abs(vol_f[pos] - vol_rv[pos]) / vol_rv[pos]) * 100)
        out[f"n_h{h}"] = float(ok.sum())
    return out


def regime_metrics(y: np.ndarray, p_bear: np.ndarray, timestamps: pd.DatetimeIndex) -> dict[str, float]:
    """Balanced accuracy and bear-class F1 against the labels, and detection lag in bars.

    The lag of a bear market is the number of bars from its first labelled bar to
    the first bar the model calls bear (p_bear > 0.5); bear markets never detected
    while they last count in ``bears_missed``.
    """
    y = np.asarray(y, dtype=int)
    pred = (np.asarray(p_bear, dtype=float) > 0.5).astype(int)
    out = {
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "bear_f1": float(f1_score(y, pred, pos_label=1, zero_division=0)),
        "share_bear_labelled": float(y.mean()),
        "share_bear_predicted": float(pred.mean()),
    }
    lags: list[int] = []
    missed = 0
    starts = np.flatnonzero((y == 1) & (np.r_[0, y[:-1]] == 0))
    for s in starts:
        end = s
        while end < len(y) and y[end] == 1:
            end += 1
        hit = np.flatnonzero(pred[s:end] == 1)
        if len(hit):
            lags.append(int(hit[0]))
        else:
            missed += 1
    out["bear_markets"] = float(len(starts))
    out["bears_missed"] = float(missed)
    out["detection_lag_bars"] = float(np.mean(lags)) if lags else float("nan")
    return out
