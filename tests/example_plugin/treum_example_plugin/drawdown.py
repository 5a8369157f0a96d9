"""A third-party task and its model, written against treum's public API only.

Task ``drawdown``: the probability that the next ``horizon`` bars (21 by default)
hold a drawdown of at least ``depth`` (5%): some close in (t, t+h] is at least
``depth`` below the highest close in [t, that bar]. Labels look ``horizon`` bars
ahead, so the walk-forward purges them. Prediction: ``p_drawdown`` in [0, 1].
Scored by AUC (primary), Brier score and the base rate, beside the base-rate
baseline. A served prediction is scored against an outcome of 1 (a drawdown
happened) or 0.

Model ``drawdown_logit``: logistic regression on the last 21 and 63 bars'
realised volatility and return (volatility clusters, so drawdowns do too).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score

from treum.core.hookspecs import hookimpl
from treum.core.model import Model
from treum.core.specs import Baseline, ModelSpec, TaskExample, TaskSpec
from treum.core.task import Task


@dataclass
class DrawdownConfig:
    horizon: int = 21
    depth: float = 0.05

    def validate(self) -> str | None:
        if self.horizon < 1 or not 0 < self.depth < 1:
            return f"horizon must be >= 1 and depth in (0, 1), got {self.horizon}, {self.depth}"
        return None


def drawdown_label(close: pd.Series, horizon: int, depth: float) -> pd.Series:
    """1 if the next ``horizon`` bars hold a drawdown of at least ``depth``, else 0; NaN near the end."""
    p = close.to_numpy(dtype=float)
    out = np.full(len(p), np.nan)
    for t in range(len(p) - horizon):
        window = p[t : t + horizon + 1]
        worst = np.min(window / np.maximum.accumulate(window)) - 1
        out[t] = 1.0 if worst <= -depth else 0.0
    return pd.Series(out, index=close.index)


class Drawdown(Task):
    def make_targets(self, panel: pd.DataFrame) -> pd.DataFrame:
        parts = [drawdown_label(g["close"], self.config.horizon, self.config.depth)
                 for _, g in panel.groupby(level="entity", sort=False)]
        return pd.DataFrame({"target": pd.concat(parts).reindex(panel.index)})

    def label_horizon(self) -> int:
        return self.config.horizon

    def prediction_columns(self) -> tuple[str, ...]:
        return ("p_drawdown",)

    def column_ranges(self) -> dict[str, tuple[float, float]]:
        return {"p_drawdown": (0.0, 1.0)}

    def score(self, oos: pd.DataFrame, n_boot: int, seed: int) -> dict[str, float]:
        sub = oos[oos["target"].notna() & oos["p_drawdown"].notna()]
        y, p = sub["target"].to_numpy(dtype=int), sub["p_drawdown"].to_numpy(dtype=float)
        auc = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
        return {"n": float(len(y)), "auc": auc, "brier": float(brier_score_loss(y, p)) if len(y) else float("nan"),
                "base_rate": float(y.mean()) if len(y) else float("nan")}

    def performance_row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        return {"auc_roc": metrics.get("auc"), "total_predictions": int(metrics.get("n", 0) or 0)}

    def label(self, values: Mapping[str, float]) -> str:
        return "drawdown" if values["p_drawdown"] > 0.5 else "calm"

    def log_fields(self, values: Mapping[str, float]) -> dict[str, Any]:
        return {"prediction_value": None, "prediction_probability": float(values["p_drawdown"]),
                "prediction_class": self.label(values)}

    def score_outcome(self, logged: Mapping[str, Any], actual: float) -> tuple[bool | None, float | None]:
        if actual not in (0, 1):
            raise ValueError(f"a drawdown outcome is 1 (it happened) or 0, got {actual}")
        p = logged.get("prediction_probability")
        if p is None:
            return None, None
        return (p > 0.5) == (actual == 1), float(p) - float(actual)


def _inputs(data: pd.DataFrame) -> pd.DataFrame:
    r = np.log(data["close"].astype(float)).groupby(level="entity").diff()
    g = r.groupby(level="entity")
    return pd.DataFrame({
        "vol21": g.transform(lambda s: s.rolling(21).std()),
        "vol63": g.transform(lambda s: s.rolling(63).std()),
        "ret21": g.transform(lambda s: s.rolling(21).sum()),
        "ret63": g.transform(lambda s: s.rolling(63).sum()),
    }, index=data.index)


@dataclass
class DrawdownLogitConfig:
    c: float = 1.0


class DrawdownLogit(Model):
    def fit(self, data, valid=None):
        x = _inputs(data)
        ok = x.notna().all(axis=1) & data["target"].notna()
        xs = x[ok].to_numpy()
        self.mean_, self.scale_ = xs.mean(axis=0), xs.std(axis=0)
        clf = LogisticRegression(C=self.config.c).fit((xs - self.mean_) / self.scale_, data["target"][ok].astype(int))
        self.coef_, self.intercept_ = clf.coef_.ravel(), float(clf.intercept_[0])

    def predict(self, data):
        x = _inputs(data)
        z = ((x.to_numpy() - self.mean_) / self.scale_) @ self.coef_ + self.intercept_
        return pd.DataFrame({"p_drawdown": 1 / (1 + np.exp(-z))}, index=data.index)

    def save_weights(self, directory: Path) -> None:
        (directory / "coefficients.json").write_text(json.dumps(
            {"mean": self.mean_.tolist(), "scale": self.scale_.tolist(), "coef": self.coef_.tolist(),
             "intercept": self.intercept_}))

    def load_weights(self, directory: Path) -> None:
        d = json.loads((directory / "coefficients.json").read_text())
        self.mean_, self.scale_, self.coef_ = (np.array(d[k]) for k in ("mean", "scale", "coef"))
        self.intercept_ = d["intercept"]


@dataclass
class NoParameters:
    pass


class BaseRate(Model):
    """The training set's drawdown frequency, every bar."""

    def fit(self, data, valid=None):
        self.rate_ = float(data["target"].dropna().mean())

    def predict(self, data):
        return pd.DataFrame({"p_drawdown": np.full(len(data), self.rate_)}, index=data.index)

    def save_weights(self, directory: Path) -> None:
        (directory / "rate.json").write_text(json.dumps({"rate": self.rate_}))

    def load_weights(self, directory: Path) -> None:
        self.rate_ = json.loads((directory / "rate.json").read_text())["rate"]


Drawdown.spec = TaskSpec(
    name="drawdown",
    description="P(the next 21 bars hold a 5% drawdown)",
    config_cls=DrawdownConfig,
    factory=Drawdown,
    primary_metric="auc",
    higher_is_better=True,
    baselines=(Baseline("base_rate", "drawdown_base_rate"),),
    headline=("auc", "brier", "base_rate"),
    example=TaskExample("sp500", "2003-01-01", "2012-12-31", panel="sp500_stocks", entities=("AAPL", "JNJ", "XOM")),
    data="sp500",
)
DrawdownLogit.spec = ModelSpec(
    name="drawdown_logit", family="linear", task="drawdown",
    capabilities=frozenset({"probabilistic", "multi_asset", "sequential"}), config_cls=DrawdownLogitConfig,
    factory=DrawdownLogit, description="logistic regression of a coming 5% drawdown on realised volatility and returns",
)
BaseRate.spec = ModelSpec(
    name="drawdown_base_rate", family="baseline", task="drawdown", capabilities=frozenset({"multi_asset"}),
    config_cls=NoParameters, factory=BaseRate, description="the training set's drawdown frequency", baseline=True,
)


@hookimpl
def treum_tasks():
    return [Drawdown.spec]


@hookimpl
def treum_models():
    return [DrawdownLogit.spec, BaseRate.spec]


@hookimpl
def treum_config_searchpath():
    return ["pkg://treum_example_plugin.conf"]
