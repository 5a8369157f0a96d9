"""sktime's AutoETS, AutoARIMA and Theta for the ``forecast`` task, local per entity.

Each entity gets its own forecaster, fitted by sktime on the level y of its training rows
(``y = log(close)`` or ``close``, as the task's ``change`` says; see
``treum.plugins.tasks.forecast.series``). A forecast of ``y[t+h]`` becomes a change by subtracting
``y[t]``, so the columns are ``q{NN}_h{h}`` in the label's unit.

The walk-forward needs a forecast at *every* row t from the data up to t, and refitting sktime
per row is far too slow, so the fitted parameters are kept (JSON, never pickle) and the model is
run forward over the rows it is asked about with those parameters fixed: filtering only, every
state at t is computed from y up to t. The h-step quantiles from each state are sktime's own
formulas (the tests check that at the end of the training rows they equal sktime's
``predict_quantiles``):

- ``auto_ets``: ``AutoETS(auto=True, additive_only=True)`` picks ETS(A,N,N), (A,A,N) or
  (A,Ad,N) by AIC; its additive-error recursion and analytic variance
  ``sigma2 * (1 + sum_j c_j^2)`` (Hyndman et al. 2008, class 1).
- ``auto_arima``: sktime's ``AutoARIMA`` needs pmdarima and ``StatsForecastAutoARIMA`` needs
  statsforecast, neither installed, so this is an AutoARIMA by AIC over a (p, d, q) grid: d from a
  KPSS test (as pmdarima's default), (p, q) and the constant (drift when d = 1) chosen by AIC of
  Hannan-Rissanen estimates (the fast approximation, like auto.arima's ``approximation=TRUE``),
  then the chosen order fitted by maximum likelihood with sktime's ``SARIMAX`` (statsmodels).
  Forecasts come from statsmodels' Kalman filter with the fitted parameters.
- ``theta``: ``ThetaForecaster(deseasonalize=False)``: simple exponential smoothing plus half the
  training trend, with sktime's interval ``sigma * sqrt(1 + h * alpha^2)``.

The ETS and Theta recursions start from the fitted initial state at the first fitted bar when
the data holds it (so that they reproduce sktime exactly), and from the first value otherwise
(a request's bars in serving). ``max_train_bars`` fits on each entity's last bars only: daily
series of twenty years would take minutes per fold and an old regime adds little.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import norm

from treum.core.errors import TreumError
from treum.core.hookspecs import hookimpl
from treum.core.model import PerEntityModel
from treum.core.specs import ModelSpec
from treum.plugins.tasks.forecast import quantile_column

CAPABILITIES = frozenset({"multi_asset", "multi_horizon", "probabilistic", "sequential"})


@contextmanager
def quiet() -> Iterator[None]:
    """Single-threaded BLAS and no warnings, around every statsmodels/sktime call.

    The matrices here are 1x1 to 5x5: OpenBLAS's threads only add overhead, and on a busy
    machine their spin-waits made one SARIMAX fit 35 times slower (3.9 s against 0.11 s,
    measured on 2 shared cores). statsmodels and sktime warn on every fit (convergence,
    frequency, future defaults); the figures are checked by the tests instead.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class SktimeForecaster(PerEntityModel):
    """Shared by the three: training y per entity, and the change quantiles from level forecasts."""

    def training_series(self, frame: pd.DataFrame) -> pd.Series:
        """The entity's y over its last ``max_train_bars`` training rows, on a plain integer index."""
        y = self.require_task().series(frame).droplevel("entity").dropna()
        if self.config.max_train_bars:
            y = y.iloc[-int(self.config.max_train_bars):]
        if len(y) < 20:
            raise TreumError(f"{self.spec.name}: {len(y)} training bars for one entity; it needs at least 20")
        return pd.Series(y.to_numpy(dtype=float))

    def start_of(self, frame: pd.DataFrame) -> str:
        """The timestamp of the first fitted bar, where the fitted initial state belongs."""
        ts = frame.index.get_level_values("timestamp")
        keep = int(self.config.max_train_bars or 0)
        return str(ts[-keep] if keep and len(ts) > keep else ts[0])

    @staticmethod
    def anchor(frame: pd.DataFrame, start: str) -> int | None:
        """The row of ``frame`` at the first fitted bar, or None when the frame does not hold it."""
        ts = frame.index.get_level_values("timestamp")
        hit = np.flatnonzero(ts == pd.Timestamp(start))
        return int(hit[0]) if len(hit) else None

    def quantile_frame(self, frame: pd.DataFrame, y: np.ndarray, mean: dict[int, np.ndarray],
                       sd: dict[int, np.ndarray]) -> pd.DataFrame:
        """``q{NN}_h{h}`` = mean + z_q sd - y[t] (Gaussian quantiles; sorted, since sd >= 0)."""
        task = self.require_task()
        cols = {}
        for h in task.horizons:
            for q in task.quantiles:
                cols[quantile_column(q, h)] = mean[h] + norm.ppf(q) * sd[h] - y
        return pd.DataFrame(cols, index=frame.index)


# AutoETS ------------------------------------------------------------------------------------


@dataclass
class AutoETSConfig:
    information_criterion: Literal["aic", "bic", "aicc"] = "aic"
    max_train_bars: int | None = 1000  # fit on each entity's last bars; None: all

    def validate(self) -> str | None:
        if self.max_train_bars is not None and self.max_train_bars < 20:
            return f"max_train_bars must be at least 20 (or null for all), got {self.max_train_bars}"
        return None


def ets_filter(y: np.ndarray, p: dict[str, Any], anchor: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Level and trend after each observation of an additive-error ETS with fixed parameters.

    ``e = y[t] - (l + phi b)``, ``l = l + phi b + alpha e``, ``b = phi b + beta e``; the state
    is the fitted initial one at row ``anchor`` and the first value before it.
    """
    alpha, beta, phi = p["alpha"], p["beta"], p["phi"]
    level = np.empty(len(y))
    trend = np.empty(len(y))
    lv, tr = float(y[0]), 0.0
    for t, v in enumerate(y.tolist()):
        if t == anchor:
            lv, tr = p["l0"], p["b0"]
        e = v - (lv + phi * tr)
        lv, tr = lv + phi * tr + alpha * e, phi * tr + beta * e
        level[t], trend[t] = lv, tr
    return level, trend


class AutoETSForecaster(SktimeForecaster):
    def fit_entity(self, frame: pd.DataFrame) -> dict[str, Any]:
        from sktime.forecasting.ets import AutoETS

        y = self.training_series(frame)
        with quiet():
            f = AutoETS(auto=True, additive_only=True, sp=1, information_criterion=self.config.information_criterion,
                        n_jobs=1).fit(y)
        res = f._fitted_forecaster  # the statsmodels ETSResults sktime selected
        p = dict(zip(res.param_names, (float(v) for v in res.params)))
        trend = res.model.trend is not None
        return {"start": self.start_of(frame), "trend": bool(trend), "damped": bool(res.model.damped_trend),
                "alpha": p["smoothing_level"], "beta": p.get("smoothing_trend", 0.0) if trend else 0.0,
                "phi": p.get("damping_trend", 1.0) if res.model.damped_trend else 1.0,
                "l0": p["initial_level"], "b0": p.get("initial_trend", 0.0) if trend else 0.0,
                "sigma2": float(res.mse), "aic": float(res.aic)}

    def predict_entity(self, frame: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
        horizons = self.require_task().horizons
        y = self.require_task().series(frame).to_numpy(dtype=float)
        level, trend = ets_filter(y, params, self.anchor(frame, params["start"]))
        phi, alpha, beta = params["phi"], params["alpha"], params["beta"]
        # S_j = phi + ... + phi^j: the damped sum of trend steps; c_j = alpha + beta S_j
        steps = np.cumsum(phi ** np.arange(1, max(horizons) + 1))
        mean, sd = {}, {}
        for h in horizons:
            c = alpha + beta * steps[: h - 1]
            mean[h] = level + steps[h - 1] * trend
            sd[h] = np.full(len(y), np.sqrt(params["sigma2"] * (1 + float(np.sum(c**2)))))
        return self.quantile_frame(frame, y, mean, sd)


# AutoARIMA ----------------------------------------------------------------------------------


@dataclass
class AutoARIMAConfig:
    max_p: int = 2
    max_q: int = 2
    max_d: int = 1  # d is chosen by KPSS tests at 5%, at most this
    information_criterion: Literal["aic", "bic"] = "aic"
    maxiter: int = 50  # L-BFGS iterations of the final maximum-likelihood fit
    max_train_bars: int | None = 1000

    def validate(self) -> str | None:
        if min(self.max_p, self.max_q, self.max_d) < 0 or self.max_d > 2:
            return f"max_p and max_q must be >= 0 and max_d in 0..2, got {self.max_p}, {self.max_q}, {self.max_d}"
        if self.max_train_bars is not None and self.max_train_bars < 20:
            return f"max_train_bars must be at least 20 (or null for all), got {self.max_train_bars}"
        return None


def kpss_order(y: np.ndarray, max_d: int) -> int:
    """Differences until a KPSS test (level stationarity, 5%) no longer rejects, at most ``max_d``."""
    from statsmodels.tsa.stattools import kpss

    d = 0
    x = np.asarray(y, dtype=float)
    while d < max_d:
        with quiet():
            pvalue = kpss(x, regression="c", nlags="auto")[1]
        if pvalue >= 0.05:
            break
        x = np.diff(x)
        d += 1
    return d


def search_order(y: np.ndarray, cfg: AutoARIMAConfig) -> tuple[tuple[int, int, int], str, float]:
    """((p, d, q), trend, criterion): the grid's best by the information criterion of Hannan-Rissanen fits."""
    d = kpss_order(y, cfg.max_d)
    x = np.diff(y, n=d) if d else np.asarray(y, dtype=float)
    best: tuple[float, tuple[int, int, int], str] | None = None
    with quiet():
        candidates = _hr_candidates(x, d, cfg)
    for crit, order, trend in candidates:
        if best is None or crit < best[0]:
            best = (crit, order, trend)
    if best is None:
        raise TreumError("auto_arima: no (p, d, q) of the grid could be estimated on this series")
    return best[1], best[2], best[0]


def _hr_candidates(x: np.ndarray, d: int, cfg: AutoARIMAConfig) -> list[tuple[float, tuple[int, int, int], str]]:
    """(criterion, order, trend) of every grid point Hannan-Rissanen can estimate on the differenced series."""
    from statsmodels.tsa.arima.estimators.hannan_rissanen import hannan_rissanen

    n = len(x)
    out = []
    for p in range(cfg.max_p + 1):
        for q in range(cfg.max_q + 1):
            for const in (True, False):
                if not const and d == 0:
                    continue  # a level series without its mean is not a candidate
                try:
                    params, _ = hannan_rissanen(x, ar_order=p, ma_order=q, demean=const)
                    sigma2 = float(params.sigma2)
                except (ValueError, np.linalg.LinAlgError):  # an order HR cannot estimate is not a candidate
                    continue
                if not np.isfinite(sigma2) or sigma2 <= 0:
                    continue
                k = p + q + int(const) + 1
                penalty = 2 * k if cfg.information_criterion == "aic" else k * np.log(n)
                out.append((float(n * np.log(sigma2) + penalty), (p, d, q), "c" if const else "n"))
    return out


def _sarimax(y: np.ndarray, order: tuple[int, int, int], trend: str):
    import statsmodels.api as sm

    return sm.tsa.SARIMAX(y, order=order, trend=trend)


def kalman_forecasts(y: np.ndarray, params: dict[str, Any], horizons: list[int]) -> tuple[dict, dict]:
    """Mean and standard deviation of y[t+h] given y up to t, for every t, with fixed parameters.

    From the filtered one-step prediction ``a(t+1|t)``, ``P(t+1|t)``:
    ``a(t+h|t) = T a(t+h-1|t) + c`` and ``P(t+h|t) = T P T' + R Q R'``; ``y = Z a + d + eps``.
    """
    order = tuple(params["order"])
    mod = _sarimax(y, order, params["trend"])  # type: ignore[arg-type]
    with quiet():
        res = mod.filter(np.asarray(params["params"], dtype=float))
    ssm = mod.ssm
    T = ssm["transition"][:, :, 0] if ssm["transition"].ndim == 3 else ssm["transition"]
    Z = ssm["design"][:, :, 0] if ssm["design"].ndim == 3 else ssm["design"]
    R = ssm["selection"][:, :, 0] if ssm["selection"].ndim == 3 else ssm["selection"]
    Q = ssm["state_cov"][:, :, 0] if ssm["state_cov"].ndim == 3 else ssm["state_cov"]
    H = ssm["obs_cov"][:, :, 0] if ssm["obs_cov"].ndim == 3 else ssm["obs_cov"]
    c = np.asarray(ssm["state_intercept"])
    c = c[:, -1] if c.ndim == 2 else c  # a constant trend: the same at every step
    d = np.asarray(ssm["obs_intercept"]).ravel()
    d = float(d[-1]) if len(d) else 0.0
    a = np.asarray(res.filter_results.predicted_state)[:, 1:].T  # (n, k): a(t+1|t)
    P = np.transpose(np.asarray(res.filter_results.predicted_state_cov)[:, :, 1:], (2, 0, 1))  # (n, k, k)
    rqr = R @ Q @ R.T
    mean, sd = {}, {}
    for step in range(1, max(horizons) + 1):
        if step > 1:
            a = a @ T.T + c
            P = np.einsum("ij,njk,lk->nil", T, P, T) + rqr
        if step in horizons:
            mean[step] = a @ Z[0] + d
            var = np.einsum("i,nij,j->n", Z[0], P, Z[0]) + float(H[0, 0])
            sd[step] = np.sqrt(np.maximum(var, 0.0))
    return mean, sd


class AutoARIMAForecaster(SktimeForecaster):
    def fit_entity(self, frame: pd.DataFrame) -> dict[str, Any]:
        from sktime.forecasting.sarimax import SARIMAX

        y = self.training_series(frame)
        order, trend, crit = search_order(y.to_numpy(), self.config)
        with quiet():
            # no covariance of the estimates: only the point estimates are kept, and it costs as much as the fit
            f = SARIMAX(order=order, trend=trend, maxiter=self.config.maxiter, cov_type="none").fit(y)
        res = f._fitted_forecaster
        return {"order": list(order), "trend": trend, "params": [float(v) for v in np.asarray(res.params)],
                "param_names": list(res.model.param_names), "aic": float(res.aic), "search_criterion": float(crit)}

    def predict_entity(self, frame: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
        y = self.require_task().series(frame).to_numpy(dtype=float)
        mean, sd = kalman_forecasts(y, params, self.require_task().horizons)
        return self.quantile_frame(frame, y, mean, sd)


# Theta --------------------------------------------------------------------------------------


@dataclass
class ThetaConfig:
    max_train_bars: int | None = 1000

    def validate(self) -> str | None:
        if self.max_train_bars is not None and self.max_train_bars < 20:
            return f"max_train_bars must be at least 20 (or null for all), got {self.max_train_bars}"
        return None


def ses_filter(y: np.ndarray, alpha: float, l0: float, anchor: int | None) -> tuple[np.ndarray, np.ndarray]:
    """SES level after each observation, and the number of observations it has seen (for the drift)."""
    level = np.empty(len(y))
    seen = np.empty(len(y))
    lv, count = float(y[0]), 0
    for t, v in enumerate(y.tolist()):
        if t == anchor:
            lv, count = l0, 0
        lv = alpha * v + (1 - alpha) * lv
        count += 1
        level[t], seen[t] = lv, count
    return level, seen


class ThetaModel(SktimeForecaster):
    def fit_entity(self, frame: pd.DataFrame) -> dict[str, Any]:
        from sktime.forecasting.theta import ThetaForecaster

        y = self.training_series(frame)
        with quiet():
            f = ThetaForecaster(deseasonalize=False).fit(y)
        return {"start": self.start_of(frame), "alpha": float(f.initial_level_), "trend": float(f.trend_),
                "sigma": float(f.sigma_), "l0": float(f._fitted_forecaster.params["initial_level"])}

    def predict_entity(self, frame: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
        y = self.require_task().series(frame).to_numpy(dtype=float)
        alpha, b = params["alpha"], params["trend"]
        level, seen = ses_filter(y, alpha, params["l0"], self.anchor(frame, params["start"]))
        mean, sd = {}, {}
        for h in self.require_task().horizons:
            if np.isclose(alpha, 0.0):  # SES constant: sktime falls back to the plain trend
                mean[h] = level + b * h
            else:
                mean[h] = level + b * (h + (1 - (1 - alpha) ** seen) / alpha)
            # sktime's ThetaForecaster interval: sigma * sqrt(h alpha^2 + 1)
            sd[h] = np.full(len(y), params["sigma"] * np.sqrt(h * alpha**2 + 1))
        return self.quantile_frame(frame, y, mean, sd)


def _spec(name: str, cls: type, config: type, desc: str) -> ModelSpec:
    cls.spec = ModelSpec(name=name, family="statistical", task="forecast", capabilities=CAPABILITIES,
                         config_cls=config, factory=cls, description=desc)
    return cls.spec


SPECS = [
    _spec("auto_ets", AutoETSForecaster, AutoETSConfig,
          "sktime AutoETS per entity: additive-error ETS (N, A or Ad trend) chosen by AIC, filtered forward"),
    _spec("auto_arima", AutoARIMAForecaster, AutoARIMAConfig,
          "AutoARIMA per entity by AIC over a (p,d,q) grid (d by KPSS), statsmodels SARIMAX via sktime, "
          "Kalman-filtered forward"),
    _spec("theta", ThetaModel, ThetaConfig, "sktime Theta per entity: SES plus half the training trend"),
]


@hookimpl
def treum_models() -> list[ModelSpec]:
    return list(SPECS)
