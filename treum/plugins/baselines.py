"""The baselines that every leaderboard shows beside the models of a task.

They are models like any other (same contract, same walk-forward), flagged
``baseline=True`` so they are scored but never registered. The GARCH(1,1)
baseline of the volatility task is the ``garch`` model with a fixed config
(see ``treum.core.tasks``), so it is not repeated here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from treum.core.estimators import StandardLogit, x_rows, xy
from treum.core.hookspecs import hookimpl
from treum.core.model import Model
from treum.core.specs import ModelSpec
from treum.core.targets import log_returns


class _JsonStateModel(Model):
    """A baseline whose whole state is a small JSON document in ``self.state_``."""

    def save_weights(self, directory: Path) -> None:
        (directory / "state.json").write_text(json.dumps(self.state_, sort_keys=True))

    def load_weights(self, directory: Path) -> None:
        self.state_ = json.loads((directory / "state.json").read_text())


@dataclass
class NoConfig:
    pass


class MajorityClass(_JsonStateModel):
    """Predicts the training set's more frequent direction, with its training frequency as P(up)."""

    def fit(self, data, valid=None):
        y = data["target"].dropna()
        self.state_ = {"p_up": float(y.mean())}
        self.fitted = True
        return self

    def predict(self, data):
        p = self.state_["p_up"]
        # a constant probability on the majority side of 0.5, so the class is the majority class
        return pd.DataFrame({"p_up": np.full(len(data), p)}, index=data.index)


class AlwaysUp(_JsonStateModel):
    def fit(self, data, valid=None):
        self.state_ = {}
        self.fitted = True
        return self

    def predict(self, data):
        return pd.DataFrame({"p_up": np.full(len(data), 1.0)}, index=data.index)


@dataclass
class LaggedLogitConfig:
    lags: int = 5
    c: float = 1.0


def _lagged(data: pd.DataFrame, lags: int) -> pd.DataFrame:
    r = log_returns(data)
    g = r.groupby(level="entity")
    return pd.DataFrame({f"lag_{k}": g.shift(k) for k in range(lags)}, index=data.index)


class LaggedLogit(Model):
    """Logistic regression of direction on the last ``lags`` daily returns."""

    def fit(self, data, valid=None):
        full = data if valid is None else pd.concat([data, valid]).sort_index()
        x = _lagged(full, self.config.lags)
        cols = list(x.columns)
        x["target"] = full["target"]
        xs, y = xy(x, cols)
        self.clf_ = StandardLogit(self.config.c).fit(xs, y)
        self.fitted = True
        return self

    def predict(self, data):
        x = _lagged(data, self.config.lags)
        ok, values = x_rows(x, list(x.columns))
        p = np.full(len(data), np.nan)
        p[ok] = self.clf_.predict_proba(values)
        return pd.DataFrame({"p_up": p}, index=data.index)

    def save_weights(self, directory):
        self.clf_.save(directory / "coefficients.json")

    def load_weights(self, directory):
        self.clf_ = StandardLogit().load(directory / "coefficients.json")


@dataclass
class EwmaConfig:
    lam: float = 0.94
    horizons: list[int] | None = None


class Ewma(_JsonStateModel):
    """RiskMetrics EWMA variance, lambda 0.94; the h-bar forecast is h times the next-bar one."""

    def fit(self, data, valid=None):
        self.state_ = {"lam": self.config.lam}
        self.fitted = True
        return self

    def predict(self, data):
        lam = self.state_["lam"]
        horizons = self.config.horizons or [1, 21]
        r = log_returns(data)
        parts = []
        for _, s in r.groupby(level="entity", sort=False):
            r2 = (s**2).to_numpy()
            var = np.full(len(s), np.nan)
            # seed with the first 21 squared returns, then the recursion sigma2[t+1] = lam sigma2[t] + (1-lam) r2[t]
            seed = np.nanmean(r2[1:22]) if len(r2) > 22 else np.nanmean(r2[1:])
            prev = seed
            for t in range(1, len(r2)):
                prev = lam * prev + (1 - lam) * r2[t]
                var[t] = prev
            parts.append(pd.DataFrame({f"var_h{h}": var * h for h in horizons}, index=s.index))
        return pd.concat(parts).reindex(data.index)


class Ma200Rule(_JsonStateModel):
    """Bear while the close is below its 200-bar moving average."""

    def fit(self, data, valid=None):
        self.state_ = {"window": 200}
        self.fitted = True
        return self

    def predict(self, data):
        w = self.state_["window"]
        close = data["close"].astype(float)
        ma = close.groupby(level="entity").transform(lambda s: s.rolling(w, min_periods=w).mean())
        p = np.where(ma.isna(), np.nan, (close < ma).astype(float))
        return pd.DataFrame({"p_bear": p}, index=data.index)


class MajorityRegime(_JsonStateModel):
    def fit(self, data, valid=None):
        y = data["target"].dropna()
        self.state_ = {"p_bear": float(y.mean())}
        self.fitted = True
        return self

    def predict(self, data):
        return pd.DataFrame({"p_bear": np.full(len(data), self.state_["p_bear"])}, index=data.index)


def _spec(name, cls, task, desc, config_cls=NoConfig, caps=("multi_asset",)):
    cls.spec = ModelSpec(
        name=name,
        family="baseline",
        task=task,
        capabilities=frozenset(caps),
        config_cls=config_cls,
        factory=cls,
        description=desc,
        baseline=True,
    )
    return cls.spec


SPECS = [
    _spec("majority_class", MajorityClass, "direction", "the training set's majority direction"),
    _spec("always_up", AlwaysUp, "direction", "P(up) = 1 every bar"),
    _spec("lagged_logit", LaggedLogit, "direction", "logistic regression on the last 5 daily returns",
          LaggedLogitConfig, ("multi_asset", "probabilistic", "sequential")),
    _spec("ewma_baseline", Ewma, "volatility", "RiskMetrics EWMA variance, lambda 0.94", EwmaConfig,
          ("multi_asset", "sequential", "multi_horizon")),
    _spec("ma200_rule", Ma200Rule, "regime", "bear while the close is below its 200-bar average", NoConfig,
          ("multi_asset", "sequential")),
    _spec("majority_regime", MajorityRegime, "regime", "the training set's majority regime"),
]


@hookimpl
def treum_models() -> list[ModelSpec]:
    return list(SPECS)
