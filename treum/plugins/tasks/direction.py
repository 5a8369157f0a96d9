"""Direction: the probability that an instrument's close is higher ``horizon`` bars ahead.

Labels: ``target`` is 1 if the ``horizon``-bar forward log return is positive,
0 if negative; a return of exactly zero is a tie, dropped (NaN: neither trained
on nor scored) or counted as down (``ties``). ``target_h{h}`` are the same for
the other labelled horizons, ``target_return`` is the forward log return in
percent (used for the information coefficient). Prediction: ``p_up`` in [0, 1].
Baselines: the training set's majority class, always up, a logistic regression
on the last 5 daily returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

from treum.core.estimators import JsonStateModel, NoConfig, StandardLogit, x_rows, xy
from treum.core.hookspecs import hookimpl
from treum.core.metrics import block_bootstrap_ci, information_coefficient
from treum.core.model import Model
from treum.core.specs import Baseline, ModelSpec, TaskExample, TaskSpec
from treum.core.targets import forward_return, log_returns
from treum.core.task import Task


@dataclass
class DirectionConfig:
    horizon: int = 1  # the scored horizon, in bars
    horizons: list[int] = field(default_factory=lambda: [1, 5, 21])  # labelled horizons
    ties: Literal["drop", "down"] = "drop"

    def validate(self) -> str | None:
        if self.horizon < 1 or any(h < 1 for h in self.horizons):
            return f"horizons must be positive, got horizon={self.horizon}, horizons={self.horizons}"
        return None


def direction_target(panel: pd.DataFrame, horizon: int, ties: str = "drop") -> pd.Series:
    """1 if the h-bar forward return is positive, 0 if negative, ties per ``ties``.

    Coarse price ticks make ties common in some data (skfolio's 1990s quotes:
    8-13% of stock-days), and "up = r > 0" would silently call them down.
    """
    fwd = forward_return(panel, horizon)
    y = pd.Series(np.where(fwd > 0, 1.0, 0.0), index=panel.index)
    y[fwd.isna()] = np.nan
    if ties == "drop":
        y[fwd == 0] = np.nan
    elif ties != "down":
        raise ValueError(f"ties must be 'drop' or 'down', got {ties!r}")
    return y


def direction_metrics(y, p_up, fwd_return, n_boot: int = 500, seed: int = 0) -> dict[str, float]:
    """Accuracy, balanced accuracy, AUC and information coefficient, each with a 95% block-bootstrap CI."""
    y = np.asarray(y, dtype=int)
    p_up = np.asarray(p_up, dtype=float)
    r = np.asarray(fwd_return, dtype=float)
    pred = (p_up > 0.5).astype(int)

    def auc(i):
        return float(roc_auc_score(y[i], p_up[i])) if len(np.unique(y[i])) == 2 else float("nan")

    fns: dict[str, Callable[[np.ndarray], float]] = {
        "accuracy": lambda i: float(accuracy_score(y[i], pred[i])),
        "balanced_accuracy": lambda i: float(balanced_accuracy_score(y[i], pred[i])),
        "auc": auc,
        "ic": lambda i: information_coefficient(p_up[i], r[i]),
    }
    out: dict[str, float] = {"n": float(len(y)), "share_up_predicted": float(pred.mean()) if len(y) else float("nan")}
    full = np.arange(len(y))
    for name, fn in fns.items():
        out[name] = fn(full) if len(y) else float("nan")
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = block_bootstrap_ci(fn, len(y), n_boot, seed=seed)
    return out


class Direction(Task):
    def make_targets(self, panel: pd.DataFrame) -> pd.DataFrame:
        cfg = self.config
        out = pd.DataFrame(index=panel.index)
        out["target"] = direction_target(panel, cfg.horizon, cfg.ties)
        out["target_return"] = forward_return(panel, cfg.horizon)
        for h in cfg.horizons:
            if h != cfg.horizon:
                out[f"target_h{h}"] = direction_target(panel, h, cfg.ties)
        return out

    def label_horizon(self) -> int:
        return max([self.config.horizon, *self.config.horizons])

    def prediction_columns(self) -> tuple[str, ...]:
        return ("p_up",)

    def column_ranges(self) -> dict[str, tuple[float, float]]:
        return {"p_up": (0.0, 1.0)}

    def calibration_target(self) -> tuple[str, str]:
        return ("target", "probability")

    def score(self, oos: pd.DataFrame, n_boot: int, seed: int) -> dict[str, float]:
        sub = oos[oos["target"].notna() & oos["p_up"].notna()]
        return direction_metrics(sub["target"], sub["p_up"], sub["target_return"], n_boot, seed)

    def performance_row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        return {"accuracy": metrics.get("accuracy"), "auc_roc": metrics.get("auc"),
                "total_predictions": int(metrics.get("n", 0) or 0),
                "prediction_distribution": {"share_up_predicted": metrics.get("share_up_predicted")}}

    def label(self, values: Mapping[str, float]) -> str:
        return "up" if values["p_up"] > 0.5 else "down"

    def describe(self, values: Mapping[str, float]) -> dict[str, Any]:
        return {"horizon": f"{self.config.horizon} bar{'s' if self.config.horizon > 1 else ''}"}

    def log_fields(self, values: Mapping[str, float]) -> dict[str, Any]:
        return {"prediction_value": None, "prediction_probability": float(values["p_up"]),
                "prediction_class": self.label(values)}

    def score_outcome(self, logged: Mapping[str, Any], actual: float) -> tuple[bool | None, float | None]:
        """``actual`` is the realised forward return; a tie (0) is not scored when ties are dropped."""
        p = logged.get("prediction_probability")
        if p is None:
            return None, None
        if actual == 0 and self.config.ties == "drop":
            return None, None
        up = actual > 0
        return (p > 0.5) == up, float(p) - (1.0 if up else 0.0)


# baselines ---------------------------------------------------------------------
class MajorityClass(JsonStateModel):
    """The training set's frequency of up as P(up): the majority class on every bar."""

    def fit(self, data, valid=None):
        self.state_ = {"p_up": float(data["target"].dropna().mean())}

    def predict(self, data):
        return pd.DataFrame({"p_up": np.full(len(data), self.state_["p_up"])}, index=data.index)


class AlwaysUp(JsonStateModel):
    def fit(self, data, valid=None):
        self.state_ = {}

    def predict(self, data):
        return pd.DataFrame({"p_up": np.full(len(data), 1.0)}, index=data.index)


@dataclass
class LaggedLogitConfig:
    lags: int = 5
    c: float = 1.0


def _lagged(data: pd.DataFrame, lags: int) -> pd.DataFrame:
    g = log_returns(data).groupby(level="entity")
    return pd.DataFrame({f"lag_{k}": g.shift(k) for k in range(lags)}, index=data.index)


class LaggedLogit(Model):
    """Logistic regression of direction on the last ``lags`` daily returns."""

    def fit(self, data, valid=None):
        full = self.join_valid(data, valid)
        x = _lagged(full, self.config.lags)
        cols = list(x.columns)
        x["target"] = full["target"]
        self.clf_ = StandardLogit(self.config.c).fit(*xy(x, cols))

    def predict(self, data):
        ok, values = x_rows(_lagged(data, self.config.lags))
        p = np.full(len(data), np.nan)
        p[ok] = self.clf_.predict_proba(values)
        return pd.DataFrame({"p_up": p}, index=data.index)

    def save_weights(self, directory):
        self.clf_.save(directory / "coefficients.json")

    def load_weights(self, directory):
        self.clf_ = StandardLogit().load(directory / "coefficients.json")


def _baseline(name, cls, desc, config_cls=NoConfig, caps=("multi_asset",)) -> ModelSpec:
    cls.spec = ModelSpec(name=name, family="baseline", task="direction", capabilities=frozenset(caps),
                         config_cls=config_cls, factory=cls, description=desc, baseline=True)
    return cls.spec


BASELINES = [
    _baseline("majority_class", MajorityClass, "the training set's majority direction"),
    _baseline("always_up", AlwaysUp, "P(up) = 1 every bar"),
    _baseline("lagged_logit", LaggedLogit, "logistic regression on the last 5 daily returns", LaggedLogitConfig,
              ("multi_asset", "probabilistic", "sequential")),
]

Direction.spec = TaskSpec(
    name="direction",
    description="P(close higher in `horizon` bars); ties explicit",
    config_cls=DirectionConfig,
    factory=Direction,
    primary_metric="auc",
    higher_is_better=True,
    baselines=(Baseline("majority_class", "majority_class"), Baseline("always_up", "always_up"),
               Baseline("lagged_logit", "lagged_logit")),
    headline=("accuracy", "balanced_accuracy", "auc", "ic"),
    example=TaskExample("sp500", "2003-01-01", "2012-12-31", panel="sp500_stocks", entities=("AAPL", "JNJ", "XOM")),
    data="sp500",
)


@hookimpl
def treum_tasks() -> list[TaskSpec]:
    return [Direction.spec]


@hookimpl
def treum_models() -> list[ModelSpec]:
    return list(BASELINES)
