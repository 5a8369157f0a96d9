"""Regime: the probability that the market is in a bear phase, dated by Lunde and Timmermann (2004).

Labels: ``target`` is 1 (bear) or 0 (bull) per bar. A bear market starts at a
peak once the price has fallen ``bear_threshold`` below it; a bull market
starts at a trough once the price has risen ``bull_threshold`` above it. The
dating is decided after the fact (it knows where the peaks were), so the task
has no label horizon: for each walk-forward fold the labels are recomputed from
the prices up to the fold's last fitted bar, and a phase not yet confirmed then
(the bars after the running peak or trough) is unlabelled for training. The
labels of the whole sample are used only to score. Prediction: ``p_bear`` in
[0, 1]. Baselines: the 200-bar moving-average rule and the majority regime.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from treum.core.data import slice_time
from treum.core.estimators import JsonStateModel, NoConfig
from treum.core.hookspecs import hookimpl
from treum.core.specs import Baseline, ModelSpec, TaskExample, TaskSpec
from treum.core.task import Task

BULL, BEAR = 0, 1


@dataclass
class RegimeConfig:
    bull_threshold: float = 0.2
    bear_threshold: float = 0.2
    threshold: float = 0.5  # P(bear) above this is called bear, in scoring and in served answers

    def validate(self) -> str | None:
        if not (0 < self.bull_threshold < 1 and 0 < self.bear_threshold < 1):
            return "bull_threshold and bear_threshold must be in (0, 1)"
        return None if 0 < self.threshold < 1 else f"threshold must be in (0, 1), got {self.threshold}"


def lunde_timmermann(price: pd.Series, bull: float = 0.20, bear: float = 0.20, confirmed_only: bool = False) -> pd.Series:
    """Bull/bear dating per bar: BEAR (1) or BULL (0).

    With ``confirmed_only`` the bars whose phase the series does not yet decide are
    NaN: those before the first turn, and those after the running extreme of the
    current phase (a later fall from that peak, or rise from that trough, could
    still make them the start of the next phase).
    """
    p = price.to_numpy(dtype=float)
    n = len(p)
    labels = np.full(n, np.nan)
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
    if confirmed_only:
        if state is not None:  # the current phase holds up to its running extreme
            extreme = peak_i if state == BULL else trough_i
            labels[last_switch : extreme + 1] = state
    else:
        labels[last_switch:] = BULL if state in (None, BULL) else BEAR
    return pd.Series(labels, index=price.index, name="regime")


def regime_labels(panel: pd.DataFrame, bull: float, bear: float, confirmed_only: bool = False) -> pd.Series:
    parts = [lunde_timmermann(g["close"], bull, bear, confirmed_only) for _, g in panel.groupby(level="entity", sort=False)]
    return pd.concat(parts).reindex(panel.index).astype(float)


def regime_metrics(y: np.ndarray, p_bear: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Balanced accuracy and bear-class F1 against the labels, and detection lag in bars.

    The lag of a bear market is the number of bars from its first labelled bar to
    the first bar the model calls bear; bear markets never detected while they last
    count in ``bears_missed``.
    """
    y = np.asarray(y, dtype=int)
    pred = (np.asarray(p_bear, dtype=float) > threshold).astype(int)
    out = {
        "n": float(len(y)),
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


class Regime(Task):
    def make_targets(self, panel: pd.DataFrame) -> pd.DataFrame:
        """The whole sample's dating: for scoring only (the walk-forward fits on ``labels_as_of``)."""
        cfg = self.config
        return pd.DataFrame({"target": regime_labels(panel, cfg.bull_threshold, cfg.bear_threshold)}, index=panel.index)

    def label_horizon(self) -> None:
        return None  # decided after the fact

    def labels_as_of(self, panel: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
        cfg = self.config
        known = slice_time(panel, end=end)
        labels = regime_labels(known, cfg.bull_threshold, cfg.bear_threshold, confirmed_only=True)
        return pd.DataFrame({"target": labels}, index=known.index)

    def prediction_columns(self) -> tuple[str, ...]:
        return ("p_bear",)

    def column_ranges(self) -> dict[str, tuple[float, float]]:
        return {"p_bear": (0.0, 1.0)}

    def score(self, oos: pd.DataFrame, n_boot: int, seed: int) -> dict[str, float]:
        sub = oos[oos["target"].notna() & oos["p_bear"].notna()]
        if sub.index.get_level_values("entity").nunique() > 1:
            # dating and lags are per instrument; score the first and say so in the docs
            first = sub.index.get_level_values("entity")[0]
            sub = sub.xs(first, level="entity", drop_level=False)
        return regime_metrics(sub["target"].to_numpy(), sub["p_bear"].to_numpy(), self.config.threshold)

    def performance_row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        return {"accuracy": metrics.get("accuracy"), "f1_score": metrics.get("bear_f1"),
                "total_predictions": int(metrics.get("n", 0) or 0),
                "prediction_distribution": {"share_bear_predicted": metrics.get("share_bear_predicted")}}

    def label(self, values: Mapping[str, float]) -> str:
        return "bear" if values["p_bear"] > self.config.threshold else "bull"

    def describe(self, values: Mapping[str, float]) -> dict[str, Any]:
        return {"p_bull": 1.0 - float(values["p_bear"])}

    def log_fields(self, values: Mapping[str, float]) -> dict[str, Any]:
        return {"prediction_value": None, "prediction_probability": float(values["p_bear"]),
                "prediction_class": self.label(values)}

    def score_outcome(self, logged: Mapping[str, Any], actual: float) -> tuple[bool | None, float | None]:
        """``actual`` is the dated regime of that bar: 1 for bear, 0 for bull."""
        if actual not in (0, 1):
            raise ValueError(f"a regime outcome is 1 (bear) or 0 (bull), got {actual}")
        p = logged.get("prediction_probability")
        if p is None:
            return None, None
        return (p > self.config.threshold) == (actual == 1), float(p) - float(actual)


class Ma200Rule(JsonStateModel):
    """Bear while the close is below its 200-bar moving average."""

    def fit(self, data, valid=None):
        self.state_ = {"window": 200}

    def predict(self, data):
        w = self.state_["window"]
        close = data["close"].astype(float)
        ma = close.groupby(level="entity").transform(lambda s: s.rolling(w, min_periods=w).mean())
        return pd.DataFrame({"p_bear": np.where(ma.isna(), np.nan, (close < ma).astype(float))}, index=data.index)


class MajorityRegime(JsonStateModel):
    def fit(self, data, valid=None):
        self.state_ = {"p_bear": float(data["target"].dropna().mean())}

    def predict(self, data):
        return pd.DataFrame({"p_bear": np.full(len(data), self.state_["p_bear"])}, index=data.index)


def _baseline(name, cls, desc, caps) -> ModelSpec:
    cls.spec = ModelSpec(name=name, family="baseline", task="regime", capabilities=frozenset(caps), config_cls=NoConfig,
                         factory=cls, description=desc, baseline=True)
    return cls.spec


BASELINES = [
    _baseline("ma200_rule", Ma200Rule, "bear while the close is below its 200-bar average", ("multi_asset", "sequential")),
    _baseline("majority_regime", MajorityRegime, "the training set's majority regime", ("multi_asset",)),
]

Regime.spec = TaskSpec(
    name="regime",
    description="P(bear market), Lunde-Timmermann dating, labels recomputed per fold",
    config_cls=RegimeConfig,
    factory=Regime,
    primary_metric="balanced_accuracy",
    higher_is_better=True,
    baselines=(Baseline("ma200_rule", "ma200_rule"), Baseline("majority_regime", "majority_regime")),
    headline=("balanced_accuracy", "bear_f1", "accuracy", "detection_lag_bars", "bears_missed", "bear_markets"),
    example=TaskExample("sp500_index", "1995-01-01", "2012-12-31", panel="sp500_stocks", entities=("AAPL", "JNJ", "XOM")),
    data="sp500_index",
)


@hookimpl
def treum_tasks() -> list[TaskSpec]:
    return [Regime.spec]


@hookimpl
def treum_models() -> list[ModelSpec]:
    return list(BASELINES)
