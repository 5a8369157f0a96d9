"""Volatility: the variance of the summed percent log returns over the next h bars.

Labels: ``target_var_h{h}`` is the realised variance over bars t+1..t+h, the sum
of h squared percent log returns (100 * log(close[t+1]/close[t]), squared).
Predictions: ``var_h{h}`` in the same unit (percent squared) for every horizon
of the task's config (``task.horizons=[1,5]`` works end to end).
Scoring: QLIKE and MSE per horizon, the error of the volatility forecast in
percent, and Diebold-Mariano against the GARCH(1,1) baseline on the same rows.
Baselines: GARCH(1,1) with normal errors (the ``garch`` model, fixed config) and
RiskMetrics EWMA with lambda 0.94.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from treum.core.estimators import JsonStateModel
from treum.core.hookspecs import hookimpl
from treum.core.metrics import diebold_mariano, qlike
from treum.core.specs import Baseline, ModelSpec, TaskExample, TaskSpec
from treum.core.targets import forward_variance, log_returns
from treum.core.task import Task


@dataclass
class VolatilityConfig:
    horizons: list[int] = field(default_factory=lambda: [1, 21])  # bars; the first one is scored first

    def validate(self) -> str | None:
        if not self.horizons or min(self.horizons) < 1:
            return f"horizons must be positive integers, got {self.horizons}"
        if len(set(self.horizons)) != len(self.horizons):
            return f"horizons must not repeat, got {self.horizons}"
        return None


def volatility_metrics(frame: pd.DataFrame, horizons: list[int]) -> dict[str, float]:
    """QLIKE and MSE per horizon and the error of the volatility forecast in percent.

    ``frame`` holds ``var_h{h}`` forecasts and ``target_var_h{h}`` realised variances;
    ``n`` is the number of rows scored at the first horizon.
    """
    out: dict[str, float] = {}
    for h in horizons:
        f = frame[f"var_h{h}"].to_numpy(dtype=float)
        rv = frame[f"target_var_h{h}"].to_numpy(dtype=float)
        ok = np.isfinite(f) & np.isfinite(rv)
        f, rv = f[ok], rv[ok]
        out[f"qlike_h{h}"] = float(np.mean(qlike(rv, f))) if len(f) else float("nan")
        out[f"mse_h{h}"] = float(np.mean((f - rv) ** 2)) if len(f) else float("nan")
        vol_f, vol_rv = np.sqrt(np.maximum(f, 0)), np.sqrt(rv)
        pos = vol_rv > 0
        out[f"vol_error_pct_h{h}"] = (
            float(np.mean(np.abs(vol_f[pos] - vol_rv[pos]) / vol_rv[pos]) * 100) if pos.any() else float("nan")
        )
        out[f"n_h{h}"] = float(ok.sum())
    # the first horizon's figures are the task's headline ones, whatever the horizons are
    out["qlike"], out["n"] = out[f"qlike_h{horizons[0]}"], out[f"n_h{horizons[0]}"]
    return out


class Volatility(Task):
    @property
    def horizons(self) -> list[int]:
        return list(self.config.horizons)

    def make_targets(self, panel: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({f"target_var_h{h}": forward_variance(panel, h) for h in self.horizons}, index=panel.index)

    def label_horizon(self) -> int:
        return max(self.horizons)

    def prediction_columns(self) -> tuple[str, ...]:
        return tuple(f"var_h{h}" for h in self.horizons)

    def column_ranges(self) -> dict[str, tuple[float, float]]:
        return {c: (1e-12, np.inf) for c in self.prediction_columns()}

    def score(self, oos: pd.DataFrame, n_boot: int, seed: int) -> dict[str, float]:
        return volatility_metrics(oos, self.horizons)

    def headline(self) -> tuple[str, ...]:
        h0, hl = self.horizons[0], self.horizons[-1]
        cols = [f"qlike_h{h}" for h in self.horizons] + [f"mse_h{h0}", f"vol_error_pct_h{hl}"]
        return tuple(cols + [f"dm_stat_h{h0}", f"dm_pvalue_h{h0}"])

    def compare(self, oos: pd.DataFrame, reference: pd.DataFrame) -> dict[str, float]:
        """Diebold-Mariano of QLIKE losses against the reference, per horizon, on the rows both answer."""
        out: dict[str, float] = {}
        joined = oos.join(reference[list(self.prediction_columns())], rsuffix="_ref", how="inner")
        for h in self.horizons:
            rv = joined[f"target_var_h{h}"].to_numpy(dtype=float)
            a, b = joined[f"var_h{h}"].to_numpy(dtype=float), joined[f"var_h{h}_ref"].to_numpy(dtype=float)
            ok = np.isfinite(rv) & np.isfinite(a) & np.isfinite(b)
            # overlapping h-bar windows from daily origins: Newey-West lag h-1
            out[f"dm_stat_h{h}"], out[f"dm_pvalue_h{h}"] = diebold_mariano(qlike(rv[ok], a[ok]), qlike(rv[ok], b[ok]), h)
        return out

    def performance_row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        h0, hl = self.horizons[0], self.horizons[-1]
        mse = metrics.get(f"mse_h{h0}")
        return {"root_mean_squared_error": float(np.sqrt(mse)) if mse is not None and np.isfinite(mse) else None,
                "mean_absolute_percentage_error": metrics.get(f"vol_error_pct_h{hl}"),
                "total_predictions": int(metrics.get("n", 0) or 0)}

    def describe(self, values: Mapping[str, float]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for h in self.horizons:
            out[f"vol_h{h}_pct"] = float(np.sqrt(values[f"var_h{h}"]))
        out["vol_annualised_pct"] = float(np.sqrt(values[f"var_h{self.horizons[0]}"] * 252 / self.horizons[0]))
        return out

    def log_fields(self, values: Mapping[str, float]) -> dict[str, Any]:
        return {"prediction_value": float(values[f"var_h{self.horizons[0]}"]), "prediction_probability": None,
                "prediction_class": None}

    def score_outcome(self, logged: Mapping[str, Any], actual: float) -> tuple[bool | None, float | None]:
        """``actual`` is the realised variance over the first horizon (percent squared)."""
        if actual < 0:
            raise ValueError(f"a realised variance cannot be negative, got {actual}")
        value = logged.get("prediction_value")
        return None, (None if value is None else float(value) - float(actual))


@dataclass
class EwmaConfig:
    lam: float = 0.94

    def validate(self) -> str | None:
        return None if 0 < self.lam < 1 else f"lam must be in (0, 1), got {self.lam}"


class Ewma(JsonStateModel):
    """RiskMetrics EWMA variance; the h-bar forecast is h times the next-bar one."""

    def fit(self, data, valid=None):
        self.state_ = {"lam": self.config.lam}

    def predict(self, data):
        lam = self.state_["lam"]
        horizons = self.require_task().horizons
        parts = []
        for _, s in log_returns(data).groupby(level="entity", sort=False):
            r2 = (s**2).to_numpy()
            var = np.full(len(s), np.nan)
            # seed with the first squared return (nothing later: the forecast at t sees returns up to t only),
            # then sigma2[t+1] = lam sigma2[t] + (1-lam) r2[t]
            if len(r2) < 2:
                parts.append(pd.DataFrame({f"var_h{h}": var for h in horizons}, index=s.index))
                continue
            prev = r2[1]
            for t in range(1, len(r2)):
                prev = lam * prev + (1 - lam) * r2[t]
                var[t] = prev
            parts.append(pd.DataFrame({f"var_h{h}": var * h for h in horizons}, index=s.index))
        return pd.concat(parts).reindex(data.index)


Volatility.spec = TaskSpec(
    name="volatility",
    description="variance of the next h bars' summed percent log returns",
    config_cls=VolatilityConfig,
    factory=Volatility,
    primary_metric="qlike",  # QLIKE at the first horizon
    higher_is_better=False,
    baselines=(Baseline("garch11", "garch", {"vol": "garch", "dist": "normal"}), Baseline("ewma_0.94", "ewma_baseline")),
    headline=(),  # derived from the horizons: Volatility.headline
    example=TaskExample("sp500", "2003-01-01", "2012-12-31", panel="sp500_stocks", entities=("AAPL", "JNJ", "XOM")),
    reference="garch11",
    data="sp500",
)


@hookimpl
def treum_tasks() -> list[TaskSpec]:
    return [Volatility.spec]


Ewma.spec = ModelSpec(name="ewma_baseline", family="baseline", task="volatility",
                      capabilities=frozenset({"multi_asset", "sequential", "multi_horizon"}), config_cls=EwmaConfig,
                      factory=Ewma, description="RiskMetrics EWMA variance, lambda 0.94", baseline=True)


@hookimpl
def treum_models() -> list[ModelSpec]:
    return [Ewma.spec]
