"""Value at risk and expected shortfall: the estimators, their backtests and the losses that score them.

Conventions, everywhere in this module:

- returns are simple returns as fractions (0.01 is +1%) unless a function says otherwise;
- VaR and ES are POSITIVE losses in the unit of the returns: a 99% VaR of 0.03 is a loss of 3%
  that the next period exceeds with probability 1%; ES is the mean loss beyond the VaR;
- ``level`` is the confidence level (0.95, 0.99); ``p = 1 - level`` is the exception probability;
- an exception (a hit) is a realised return below ``-VaR``;
- figures come back in flat dicts keyed ``var_{level}_h{horizon}`` / ``es_{level}_h{horizon}``
  (``var_99_h10``: the 99% VaR over 10 trading days), with plain floats and strings only, so the
  HTTP route can return them as they are.

The estimators: historical simulation (``historical_var_es``), filtered historical simulation on
GJR-GARCH(1,1,1) (``fhs_var_es``), a Fama-French three-factor model with normal VaR
(``factor_var_es``) and the whole answer for a portfolio (``portfolio_risk``). The backtests:
Kupiec's proportion of failures, Christoffersen's independence and conditional coverage
(``var_backtest``). The losses: the quantile (pinball) loss of a VaR and the FZ0 loss of a
(VaR, ES) pair (Patton, Ziegel and Chen 2019), compared by a Diebold-Mariano test.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import xlogy

from treum.core.metrics import hac_covariance

FACTORS = ("mkt_rf", "smb", "hml")
TRADING_DAYS_PER_MONTH = 21


def level_key(level: float) -> str:
    """The name of a level in keys and columns: 0.99 -> ``'99'``, 0.975 -> ``'97_5'``."""
    return f"{level * 100:.10g}".replace(".", "_")


def _check_levels(levels: Iterable[float], horizons: Iterable[int] = (1,)) -> tuple[list[float], list[int]]:
    levels, horizons = [float(x) for x in levels], [int(h) for h in horizons]
    if not levels or any(not 0.5 <= x < 1 for x in levels):
        raise ValueError(f"levels must be confidence levels in [0.5, 1), e.g. [0.95, 0.99]; got {levels}")
    if not horizons or min(horizons) < 1:
        raise ValueError(f"horizons must be positive numbers of days, e.g. [1, 10]; got {horizons}")
    return levels, horizons


def _finite(returns: Any) -> np.ndarray:
    """The finite values of ``returns`` as a flat float array."""
    x = np.asarray(returns, dtype=float).ravel()
    return x[np.isfinite(x)]


# tail figures ------------------------------------------------------------------
def empirical_var_es(sample: np.ndarray, level: float) -> tuple[float, float]:
    """(VaR, ES) as positive losses from a sample of returns.

    VaR is minus the ``1 - level`` quantile (numpy's default, linear interpolation between
    order statistics); ES is minus the mean of the returns at or below that quantile.
    """
    x = _finite(sample)
    if len(x) == 0:
        raise ValueError("no finite returns to take a quantile of")
    q = float(np.quantile(x, 1 - level))
    return -q, -float(np.mean(x[x <= q]))


def normal_var_es(sigma: Any, level: float, mu: Any = 0.0) -> tuple[Any, Any]:
    """(VaR, ES) of a normal return with mean ``mu`` and standard deviation ``sigma``, as positive losses."""
    z = stats.norm.ppf(1 - level)  # negative
    var = -(np.asarray(mu) + np.asarray(sigma) * z)
    es = -(np.asarray(mu) - np.asarray(sigma) * stats.norm.pdf(z) / (1 - level))
    return var, es


def compounded_returns(returns: np.ndarray, horizon: int) -> np.ndarray:
    """Overlapping ``horizon``-period compounded returns of a sample: prod(1 + r) - 1 over every window."""
    r = _finite(returns)
    if horizon == 1:
        return r
    if len(r) < horizon:
        return np.empty(0)
    logs = np.concatenate([[0.0], np.cumsum(np.log1p(r))])
    return np.expm1(logs[horizon:] - logs[:-horizon])


# backtests -----------------------------------------------------------------------
def kupiec_pof(exceptions: int, n: int, p: float) -> tuple[float, float]:
    """Kupiec's proportion-of-failures test: (LR statistic, p-value from chi-squared with 1 df).

    ``exceptions`` of ``n`` periods exceeded a VaR whose exception probability is ``p``
    (0.01 for a 99% VaR). LR = -2 log[(1-p)^(n-x) p^x / ((1-x/n)^(n-x) (x/n)^x)], with
    0 log 0 = 0, so that no exception and all exceptions give finite statistics.
    """
    x, n = int(exceptions), int(n)
    if n < 1 or not 0 <= x <= n:
        raise ValueError(f"need 0 <= exceptions <= n and n >= 1, got exceptions={x}, n={n}")
    if not 0 < p < 1:
        raise ValueError(f"p is the exception probability, in (0, 1) (0.01 for a 99% VaR); got {p}")
    rate = x / n
    null = xlogy(n - x, 1 - p) + xlogy(x, p)
    alt = xlogy(n - x, 1 - rate) + xlogy(x, rate)
    lr = max(float(-2 * (null - alt)), 0.0)
    return lr, float(stats.chi2.sf(lr, 1))


def transition_counts(hits: np.ndarray) -> tuple[int, int, int, int]:
    """(n00, n01, n10, n11): consecutive pairs of a 0/1 hit sequence, ``nij`` = i followed by j."""
    h = np.asarray(hits, dtype=int).ravel()
    if len(h) < 2:
        return 0, 0, 0, 0
    prev, nxt = h[:-1], h[1:]
    return (int(np.sum((prev == 0) & (nxt == 0))), int(np.sum((prev == 0) & (nxt == 1))),
            int(np.sum((prev == 1) & (nxt == 0))), int(np.sum((prev == 1) & (nxt == 1))))


def christoffersen_from_counts(counts: Sequence[int], exceptions: int, n: int, p: float) -> dict[str, float]:
    """Christoffersen's tests from transition counts (pooled over several series, if need be).

    Independence: a first-order Markov chain of hits against one exception probability,
    LR_ind = -2 log[L(pi) / L(pi01, pi11)], chi-squared with 1 df. Conditional coverage:
    LR_cc = LR_pof + LR_ind, chi-squared with 2 df. Empty rows of the transition matrix
    (no exception ever followed by anything) and never-seen transitions add nothing
    (0 log 0 = 0), so degenerate sequences give finite statistics.
    """
    n00, n01, n10, n11 = (int(c) for c in counts)
    total = n00 + n01 + n10 + n11
    if total == 0:
        lr_ind = 0.0
    else:
        pi = (n01 + n11) / total
        pi01 = n01 / (n00 + n01) if n00 + n01 else 0.0
        pi11 = n11 / (n10 + n11) if n10 + n11 else 0.0
        null = xlogy(n00 + n10, 1 - pi) + xlogy(n01 + n11, pi)
        alt = xlogy(n00, 1 - pi01) + xlogy(n01, pi01) + xlogy(n10, 1 - pi11) + xlogy(n11, pi11)
        lr_ind = max(float(-2 * (null - alt)), 0.0)
    lr_pof, _ = kupiec_pof(exceptions, n, p)
    lr_cc = lr_pof + lr_ind
    return {"lr_ind": lr_ind, "pvalue_ind": float(stats.chi2.sf(lr_ind, 1)),
            "lr_cc": lr_cc, "pvalue_cc": float(stats.chi2.sf(lr_cc, 2))}


def christoffersen(hits: np.ndarray, p: float) -> dict[str, float]:
    """Christoffersen's independence and conditional-coverage tests of one 0/1 hit sequence.

    Returns ``lr_ind``, ``pvalue_ind`` (chi-squared, 1 df), ``lr_cc`` (Kupiec's POF plus
    LR_ind) and ``pvalue_cc`` (chi-squared, 2 df). See ``christoffersen_from_counts``.
    """
    h = np.asarray(hits, dtype=int).ravel()
    if len(h) == 0:
        raise ValueError("no hits to test")
    return christoffersen_from_counts(transition_counts(h), int(h.sum()), len(h), p)


def var_backtest(realised: np.ndarray, var: Mapping[float, np.ndarray],
                 groups: np.ndarray | None = None) -> dict[float, dict[str, float]]:
    """Backtest VaR forecasts against realised returns, per level.

    ``realised[t]`` is the return of the period that ``var[level][t]`` forecast, in the same
    unit (a VaR is a positive loss; an exception is ``realised < -var``). Rows where either
    is missing are left out. ``groups`` (optional, one label per row, rows in time order within
    each group) pools several series, e.g. the entities of a panel: exceptions add up and
    Christoffersen's transitions are counted within each series. Returns, per level:
    ``n``, ``exceptions``, ``expected_exceptions``, ``exception_rate``, ``kupiec_lr``,
    ``kupiec_pvalue``, ``christoffersen_ind_lr``, ``christoffersen_ind_pvalue``,
    ``christoffersen_cc_lr``, ``christoffersen_cc_pvalue``.
    """
    y = np.asarray(realised, dtype=float).ravel()
    g = np.zeros(len(y), dtype=int) if groups is None else np.asarray(groups)
    out: dict[float, dict[str, float]] = {}
    for level, v in var.items():
        v = np.asarray(v, dtype=float).ravel()
        if len(v) != len(y):
            raise ValueError(f"var[{level}] has {len(v)} values but realised has {len(y)}")
        ok = np.isfinite(y) & np.isfinite(v)
        hits = (y[ok] < -v[ok]).astype(int)
        n, x, p = len(hits), int(hits.sum()), 1 - float(level)
        row: dict[str, float] = {"n": float(n), "exceptions": float(x), "expected_exceptions": p * n}
        if n == 0:
            row.update({k: float("nan") for k in ("exception_rate", "kupiec_lr", "kupiec_pvalue",
                                                  "christoffersen_ind_lr", "christoffersen_ind_pvalue",
                                                  "christoffersen_cc_lr", "christoffersen_cc_pvalue")})
            out[level] = row
            continue
        counts = np.zeros(4, dtype=int)
        gk = g[ok]
        for label in pd.unique(gk):
            counts += np.array(transition_counts(hits[gk == label]))
        lr, pv = kupiec_pof(x, n, p)
        ch = christoffersen_from_counts(counts, x, n, p)
        row.update({"exception_rate": x / n, "kupiec_lr": lr, "kupiec_pvalue": pv,
                    "christoffersen_ind_lr": ch["lr_ind"], "christoffersen_ind_pvalue": ch["pvalue_ind"],
                    "christoffersen_cc_lr": ch["lr_cc"], "christoffersen_cc_pvalue": ch["pvalue_cc"]})
        out[level] = row
    return out


# losses --------------------------------------------------------------------------
def pinball_loss(returns: np.ndarray, var: np.ndarray, level: float) -> np.ndarray:
    """The quantile (pinball) loss of a VaR as the ``1 - level`` quantile ``-var`` of the returns, per row."""
    y, q, a = np.asarray(returns, dtype=float), -np.asarray(var, dtype=float), 1 - level
    return (a - (y < q)) * (y - q)


def fz0_loss(returns: np.ndarray, var: np.ndarray, es: np.ndarray, level: float) -> np.ndarray:
    """The FZ0 loss of a (VaR, ES) pair (Patton, Ziegel and Chen 2019, eq. 6), per row.

    With v = -VaR and e = -ES (the returns' ``alpha = 1 - level`` quantile and tail mean, e <= v < 0):
    L = -1{y <= v} (v - y) / (alpha e) + v / e + log(-e) - 1, which in positive losses reads
    1{y < -VaR} (-VaR - y) / (alpha ES) + VaR / ES + log(ES) - 1. It is strictly consistent for the
    pair, so its mean ranks (VaR, ES) forecasts; it depends on the unit of the returns through
    log(ES), so compare losses in one unit only. ES is floored at 1e-12 (the loss needs ES > 0).
    """
    y = np.asarray(returns, dtype=float)
    v = np.asarray(var, dtype=float)
    e = np.maximum(np.asarray(es, dtype=float), 1e-12)
    a = 1 - level
    return (y < -v) * (-v - y) / (a * e) + v / e + np.log(e) - 1


def newey_west_dm(loss_a: np.ndarray, loss_b: np.ndarray, lags: int | None = None) -> tuple[float, float]:
    """Diebold-Mariano test of equal mean loss with a Newey-West (Bartlett) long-run variance.

    ``lags`` defaults to floor(4 (n/100)^(2/9)): losses of tail forecasts are autocorrelated
    (volatility clusters) even for one-step forecasts. Returns (statistic, two-sided p-value
    from the normal); a negative statistic means ``a`` has the lower loss. NaN when fewer
    than 10 pairs or the losses do not differ.
    """
    d = np.asarray(loss_a, dtype=float) - np.asarray(loss_b, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    if n < 10 or np.allclose(d, 0):
        return float("nan"), float("nan")
    lrv = hac_covariance(d, lags)
    if lrv <= 0:
        return float("nan"), float("nan")
    stat = float(d.mean() / np.sqrt(lrv / n))
    return stat, float(2 * stats.norm.sf(abs(stat)))


# estimators ------------------------------------------------------------------------
def _figures(paths: Mapping[int, np.ndarray], levels: list[float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for level in levels:
        for h, sample in paths.items():
            var, es = empirical_var_es(sample, level)
            out[f"var_{level_key(level)}_h{h}"], out[f"es_{level_key(level)}_h{h}"] = var, es
    return out


def historical_var_es(returns: np.ndarray, levels: Sequence[float] = (0.95, 0.99),
                      horizons: Sequence[int] = (1, 10)) -> dict[str, Any]:
    """VaR and ES by historical simulation on a sample of simple returns (fractions).

    The h-day figures come from the sample's overlapping h-day compounded returns
    (prod(1 + r) - 1 over every window of h consecutive days): n - h + 1 scenarios that share
    days, so a 10-day figure rests on fewer independent observations than its count suggests.
    Quantiles as in ``empirical_var_es``. Returns ``method``, ``observations``,
    ``scenarios_h{h}`` and ``var_{level}_h{h}`` / ``es_{level}_h{h}`` as positive loss fractions.
    """
    levels, horizons = _check_levels(levels, horizons)
    r = _finite(returns)
    if len(r) < max(horizons) + 20:
        raise ValueError(f"historical simulation needs at least {max(horizons) + 20} returns, got {len(r)}")
    paths = {h: compounded_returns(r, h) for h in horizons}
    out: dict[str, Any] = {"method": "historical_simulation", "observations": len(r)}
    out.update({f"scenarios_h{h}": len(paths[h]) for h in horizons})
    out.update(_figures(paths, levels))
    return out


GJR_PARAMS = ("mu", "omega", "alpha[1]", "gamma[1]", "beta[1]")


def _gjr(returns_pct: np.ndarray):
    from arch import arch_model

    return arch_model(returns_pct, mean="Constant", vol="GARCH", p=1, o=1, q=1, dist="normal", rescale=False)


def fhs_var_es(returns: np.ndarray, levels: Sequence[float] = (0.95, 0.99), horizons: Sequence[int] = (1, 10),
               n_sims: int = 10000, seed: int = 0, params: Mapping[str, float] | None = None) -> dict[str, Any]:
    """VaR and ES by filtered historical simulation (Barone-Adesi et al.) on GJR-GARCH(1,1,1).

    A constant-mean GJR-GARCH(1,1,1) is fitted by Gaussian quasi-maximum likelihood on the
    returns in percent (arch's optimiser is tuned for that scale), or taken from ``params``
    (``mu``, ``omega``, ``alpha[1]``, ``gamma[1]``, ``beta[1]``, percent units). From the last
    day, ``n_sims`` paths of ``max(horizons)`` days are simulated by drawing the model's
    standardised residuals with replacement and feeding them through the GJR recursion (arch's
    ``forecast(method="bootstrap")``, seeded with ``numpy.random.RandomState(seed)``, so a seed
    repeats its answer). The h-day figures are the empirical VaR and ES of the paths' compounded
    h-day returns. Returns ``method``, ``observations``, ``simulations``, ``seed``, ``params``,
    ``sigma_next`` (the next day's conditional volatility, a fraction), ``persistence``
    (alpha + gamma/2 + beta) and ``var_{level}_h{h}`` / ``es_{level}_h{h}`` as positive loss fractions.
    """
    levels, horizons = _check_levels(levels, horizons)
    r = _finite(returns)
    if len(r) < 250:
        raise ValueError(f"filtered historical simulation fits a GJR-GARCH and needs at least 250 returns, "
                         f"got {len(r)}")
    if n_sims < 100:
        raise ValueError(f"n_sims must be at least 100, got {n_sims}")
    am = _gjr(r * 100)
    if params is None:
        res = am.fit(disp="off", show_warning=False)
        fitted = {k: float(v) for k, v in zip(GJR_PARAMS, res.params)}
    else:
        missing = [k for k in GJR_PARAMS if k not in params]
        if missing:
            raise ValueError(f"params lacks {missing}; give all of {list(GJR_PARAMS)}")
        fitted = {k: float(params[k]) for k in GJR_PARAMS}
        res = am.fix(np.array([fitted[k] for k in GJR_PARAMS]))
    fc = res.forecast(horizon=max(horizons), method="bootstrap", simulations=int(n_sims),
                      random_state=np.random.RandomState(seed), reindex=False)
    sims = fc.simulations.values[-1] / 100  # (n_sims, max horizon) daily returns, fractions
    logs = np.cumsum(np.log1p(np.maximum(sims, -1 + 1e-12)), axis=1)  # a long position loses at most all
    paths = {h: np.expm1(logs[:, h - 1]) for h in horizons}
    out: dict[str, Any] = {"method": "filtered_historical_simulation_gjr_garch", "observations": len(r),
                           "simulations": int(n_sims), "seed": int(seed), "params": fitted,
                           "sigma_next": float(np.sqrt(fc.variance.values[-1, 0])) / 100,
                           "persistence": fitted["alpha[1]"] + fitted["gamma[1]"] / 2 + fitted["beta[1]"]}
    out.update(_figures(paths, levels))
    return out


def _monthly_index(index: pd.Index, what: str) -> pd.PeriodIndex:
    if isinstance(index, pd.PeriodIndex):
        return index.asfreq("M")
    try:
        return pd.DatetimeIndex(index).to_period("M")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be indexed by month (dates or monthly periods): {exc}") from None


def validate_weights(weights: pd.Series, assets: Iterable[Any], where: str = "prices") -> pd.Series:
    """Portfolio weights as floats, checked: known assets, finite, not negative, summing to 1.

    Raises ValueError naming what is wrong and how to fix it.
    """
    if not isinstance(weights, pd.Series) or len(weights) == 0:
        raise ValueError("weights must be a non-empty mapping of asset -> weight, e.g. {'AAPL': 0.6, 'MSFT': 0.4}")
    known = list(assets)
    unknown = [a for a in weights.index if a not in known]
    if unknown:
        raise ValueError(f"weights name asset(s) {unknown} that are not in the {where} (it has {known[:20]}); "
                         "remove them or add their prices")
    if weights.index.duplicated().any():
        raise ValueError(f"weights name {list(weights.index[weights.index.duplicated()])} twice; give each asset once")
    w = pd.to_numeric(weights, errors="coerce").astype(float)
    bad = w.index[~np.isfinite(w.to_numpy())].tolist()
    if bad:
        raise ValueError(f"the weights of {bad} are not numbers; give every asset a finite weight")
    neg = w.index[w.to_numpy() < 0].tolist()
    if neg:
        raise ValueError(f"the weights of {neg} are negative; this risk model covers long-only portfolios "
                         "(weights >= 0 that sum to 1)")
    total = float(w.sum())
    if abs(total - 1) > 1e-6:
        raise ValueError(f"the weights sum to {total:.6g}, not 1; divide each weight by their sum")
    return w


def factor_var_es(asset_returns_monthly: pd.DataFrame, factors_monthly: pd.DataFrame, weights: pd.Series,
                  levels: Sequence[float] = (0.95, 0.99), horizons: Sequence[int] = (1, 10),
                  window: int = 60) -> dict[str, Any]:
    """Normal VaR and ES of a portfolio from a Fama-French three-factor risk model, and its risk split.

    ``asset_returns_monthly``: simple monthly returns (fractions), one column per asset, indexed
    by month. ``factors_monthly``: Mkt-RF, SMB, HML and RF in PERCENT, as Fama and French publish
    them (the ``ff3`` data set; columns ``mkt_rf, smb, hml, rf`` or ``Mkt-RF, SMB, HML, RF``).
    Over the last ``window`` months where every weighted asset and the factors have data, each
    asset's excess return is regressed on the three factors by OLS: loadings B, residual
    variances D (ddof 4). With the factors' sample covariance F over the same months, the
    asset covariance is B F B' + D and the portfolio's monthly variance w'(B F B' + D)w. That
    is scaled to h trading days as h/21 of a month (square-root-of-time, no autocorrelation) and
    the VaR and ES are normal with zero mean (a mean is negligible at these horizons and
    poorly estimated from 60 months).

    The risk split is by Euler contributions to the monthly variance: by factor, b_k (F b)_k
    for the portfolio's loadings b = B'w, and w'Dw for the residual (shares summing to 1); by
    asset, w_i (S w)_i / w'Sw for S = B F B' + D (summing to 1; an asset with weight 0 adds 0).
    A share can be negative: a factor (or asset) that hedges the rest lowers the variance.

    The factors end where the data set does (2018-11 for arch's copy): for later asset data
    the model uses the latest ``window`` months that both cover, and says so
    (``months_after_factors``, ``note``).
    """
    levels, horizons = _check_levels(levels, horizons)
    if window < 24:
        raise ValueError(f"window must be at least 24 months for a three-factor regression, got {window}")
    w = validate_weights(weights, asset_returns_monthly.columns, "asset returns")
    w = w[w.index]
    factors = factors_monthly.copy()
    factors.columns = [str(c).strip().lower().replace("-", "_").replace(" ", "_") for c in factors.columns]
    missing = [c for c in (*FACTORS, "rf") if c not in factors.columns]
    if missing:
        raise ValueError(f"factors_monthly lacks column(s) {missing}; it needs mkt_rf, smb, hml and rf in percent "
                         "(the ff3 data set)")
    factors = factors[[*FACTORS, "rf"]].astype(float)
    factors.index = _monthly_index(factors.index, "factors_monthly")
    assets = asset_returns_monthly[list(w.index)].astype(float)
    assets.index = _monthly_index(assets.index, "asset_returns_monthly")
    joined = assets.join(factors, how="inner").dropna()
    use = joined.iloc[-window:]
    if len(use) < 24:
        raise ValueError(f"only {len(use)} months have both asset returns and factors (need 24 or more); the "
                         f"factors cover {factors.index.min()}..{factors.index.max()}")
    if float(use["mkt_rf"].abs().max()) < 1.0:
        raise ValueError("factors_monthly looks like fractions (every |mkt_rf| is below 1); pass the factors in "
                         "percent, as Fama and French publish them")
    f = use[list(FACTORS)].to_numpy() / 100
    y = use[list(w.index)].to_numpy() - use[["rf"]].to_numpy() / 100
    x = np.column_stack([np.ones(len(f)), f])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    loadings = coef[1:].T  # assets x factors
    resid_var = (resid ** 2).sum(axis=0) / (len(use) - x.shape[1])
    fcov = np.cov(f, rowvar=False, ddof=1)
    wv = w.to_numpy()
    cov = loadings @ fcov @ loadings.T + np.diag(resid_var)
    total = float(wv @ cov @ wv)
    b = loadings.T @ wv
    by_factor = {k: float(b[i] * (fcov @ b)[i] / total) for i, k in enumerate(FACTORS)}
    by_factor["residual"] = float(wv @ (resid_var * wv) / total)
    by_asset = {str(a): float(wv[i] * (cov @ wv)[i] / total) for i, a in enumerate(w.index)}
    last_asset, last_factor = assets.dropna().index.max(), factors.dropna().index.max()
    after = max(int((last_asset - last_factor).n), 0)
    out: dict[str, Any] = {
        "method": "fama_french_3_factor_normal",
        "months_used": len(use), "first_month": str(use.index[0]), "last_month": str(use.index[-1]),
        "factors_end": str(last_factor), "assets_end": str(last_asset), "months_after_factors": after,
        "note": (f"the factors end {last_factor}; the asset returns of the {after} later month(s) are not in the "
                 "model" if after else ""),
        "scaling": f"h-day variance = monthly variance * h / {TRADING_DAYS_PER_MONTH}; normal, zero mean",
        "monthly_volatility": float(np.sqrt(total)),
        "loadings": {str(a): {k: float(loadings[i, j]) for j, k in enumerate(FACTORS)} for i, a in enumerate(w.index)},
        "risk_by_factor": by_factor, "risk_by_asset": by_asset,
    }
    for level in levels:
        for h in horizons:
            var, es = normal_var_es(np.sqrt(total * h / TRADING_DAYS_PER_MONTH), level)
            out[f"var_{level_key(level)}_h{h}"], out[f"es_{level_key(level)}_h{h}"] = float(var), float(es)
    return out


def _complete_months(prices: pd.DataFrame) -> pd.DataFrame:
    """Month-end closes, less a last month that the prices do not reach the end of (a partial month)."""
    monthly = prices.resample("ME").last()
    last = prices.index.max()
    if last < last + pd.offsets.BMonthEnd(0):  # the last price is before the month's last business day
        monthly = monthly.iloc[:-1]
    return monthly


def _plain(value: Any) -> Any:
    """JSON-able: plain floats, ints, strings, lists and dicts; NaN and inf become None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, (pd.Timestamp, pd.Period)):
        return str(value)
    return value


def portfolio_risk(prices: pd.DataFrame, weights: pd.Series, factors_monthly: pd.DataFrame | None = None,
                   levels: Sequence[float] = (0.95, 0.99), horizons: Sequence[int] = (1, 10), window: int = 1000,
                   seed: int = 0) -> dict[str, Any]:
    """The risk of a long-only portfolio at constant weights: what ``POST /api/v1/ml/predict/portfolio-risk`` answers.

    ``prices``: daily closes, one column per asset, indexed by date. ``weights``: asset -> weight
    (checked by ``validate_weights``). The portfolio's daily return is sum_i w_i r_i (rebalanced
    to the weights every day), over the last ``window`` days on which every weighted asset has a
    return. From those: historical simulation (``historical``), filtered historical simulation on
    GJR-GARCH (``filtered_historical``), and, when ``factors_monthly`` is given (percent, the
    ``ff3`` data set), the three-factor model (``factor``) on the month-end closes of the whole
    price history up to the window's end (complete months only). VaR and ES are positive loss
    fractions of the portfolio's value. JSON-able: plain floats, strings for dates.
    """
    levels, horizons = _check_levels(levels, horizons)
    if not isinstance(prices, pd.DataFrame) or prices.empty:
        raise ValueError("prices must be a non-empty table of daily closes, one column per asset")
    w = validate_weights(weights, prices.columns)
    try:
        index = pd.DatetimeIndex(prices.index)
    except (TypeError, ValueError):
        raise ValueError("prices must be indexed by date (one row per trading day)") from None
    px = prices[list(w.index)].astype(float).set_axis(index, axis=0).sort_index()
    if px.index.duplicated().any():
        raise ValueError(f"prices repeat the date {px.index[px.index.duplicated()][0].date()}; give one row per day")
    if (px <= 0).any().any():
        bad = px.columns[(px <= 0).any()].tolist()
        raise ValueError(f"prices of {bad} are not all positive; give closes (not returns) for every asset")
    rets = px.pct_change(fill_method=None).iloc[1:].dropna()
    port = (rets @ w).iloc[-int(window):]
    if len(port) < 250:
        raise ValueError(f"only {len(port)} days have a return for every weighted asset; the risk figures need "
                         "250 or more (send a longer price history)")
    out: dict[str, Any] = {
        "window": {"first": str(port.index[0].date()), "last": str(port.index[-1].date()), "days": len(port)},
        "weights": w.to_dict(), "levels": levels, "horizons": horizons,
        "units": "VaR and ES are positive losses as fractions of the portfolio's value over h trading days",
        "historical": historical_var_es(port.to_numpy(), levels, horizons),
        "filtered_historical": fhs_var_es(port.to_numpy(), levels, horizons, seed=seed),
        "factor": None,
    }
    if factors_monthly is not None:
        monthly = _complete_months(px[px.index <= port.index[-1]]).pct_change(fill_method=None).iloc[1:]
        out["factor"] = factor_var_es(monthly, factors_monthly, w, levels, horizons)
    return _plain(out)
