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

With ``classes: 3`` the task has a third phase, ``sideways``: a bar of a bull phase
whose log price has no trend over the ``sideways_window`` bars centred on it (the
least-squares trend over the window moves less than ``sideways_band`` in log
terms). Bear markets stay whole, so their detection lag means what it means with
two classes. The window reads ``sideways_window // 2`` later bars, so the label
of a bar is known that many bars later (``labels_as_of`` leaves it NaN before).
Predictions are then ``p_bear``, ``p_sideways`` and ``p_bull`` (summing to 1);
the called class is the most probable one.
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

BULL, BEAR, SIDEWAYS = 0, 1, 2
CLASS_NAMES = {BULL: "bull", BEAR: "bear", SIDEWAYS: "sideways"}
CLASS_COLUMNS = {BULL: "p_bull", BEAR: "p_bear", SIDEWAYS: "p_sideways"}


@dataclass
class RegimeConfig:
    bull_threshold: float = 0.2
    bear_threshold: float = 0.2
    threshold: float = 0.5  # two classes: P(bear) above this is called bear, in scoring and in served answers
    classes: int = 2  # 2: bull/bear; 3: bull/bear/sideways
    sideways_window: int = 126  # bars of the centred window whose trend decides a sideways bar (three classes)
    sideways_band: float = 0.05  # |least-squares trend of log price over the window| below this: sideways

    def validate(self) -> str | None:
        if not (0 < self.bull_threshold < 1 and 0 < self.bear_threshold < 1):
            return "bull_threshold and bear_threshold must be in (0, 1)"
        if self.classes not in (2, 3):
            return f"classes must be 2 (bull/bear) or 3 (bull/bear/sideways), got {self.classes}"
        if self.sideways_window < 10 or not 0 < self.sideways_band < 1:
            return (f"sideways_window must be at least 10 bars and sideways_band in (0, 1), got "
                    f"{self.sideways_window} and {self.sideways_band}")
        return None if 0 < self.threshold < 1 else f"threshold must be in (0, 1), got {self.threshold}"


def trend(logp: np.ndarray, window: int) -> np.ndarray:
    """The least-squares trend of ``logp`` over each trailing window of ``window`` bars, as the fitted
    change from the window's first bar to its last (NaN until a window is full)."""
    y = np.asarray(logp, dtype=float)
    out = np.full(len(y), np.nan)
    if len(y) < window:
        return out
    i = np.arange(window, dtype=float)
    w = (i - i.mean()) / ((i - i.mean()) ** 2).sum()  # slope = sum(w_i y_i)
    slope = np.convolve(y, w[::-1], mode="valid")
    out[window - 1:] = slope * (window - 1)
    return out


def sideways_mask(price: pd.Series, window: int, band: float) -> np.ndarray:
    """True where the trend over the window centred on the bar is flatter than ``band``; NaN-safe:
    False where the centred window is not complete (those bars' third class is unknown)."""
    tr = trend(np.log(price.to_numpy(dtype=float)), window)
    ahead = window - window // 2 - 1  # the centred window's bars after t
    centred = np.full(len(tr), np.nan)
    if ahead > 0:
        centred[:-ahead] = tr[ahead:]
    else:
        centred[:] = tr
    return np.abs(centred) < band


def complete_window(n: int, window: int) -> np.ndarray:
    """True where the centred window of a bar lies inside the data."""
    ahead, behind = window - window // 2 - 1, window // 2
    idx = np.arange(n)
    return (idx >= behind) & (idx < n - ahead)


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


def regime_labels(panel: pd.DataFrame, bull: float, bear: float, confirmed_only: bool = False,
                  sideways: tuple[int, float] | None = None) -> pd.Series:
    """Per bar BULL/BEAR (and SIDEWAYS, given ``sideways=(window, band)``), per entity."""
    parts = []
    for _, g in panel.groupby(level="entity", sort=False):
        lab = lunde_timmermann(g["close"], bull, bear, confirmed_only)
        if sideways is not None:
            window, band = sideways
            values = lab.to_numpy(dtype=float).copy()
            values[(values == BULL) & sideways_mask(g["close"], window, band)] = SIDEWAYS
            values[~complete_window(len(values), window)] = np.nan  # the third class is unknown there
            lab = pd.Series(values, index=lab.index, name=lab.name)
        parts.append(lab)
    return pd.concat(parts).reindex(panel.index).astype(float)


def regime_metrics(y: np.ndarray, p_bear: np.ndarray, threshold: float = 0.5,
                   called: np.ndarray | None = None) -> dict[str, float]:
    """Balanced accuracy and bear-class F1 against the labels, and detection lag in bars.

    ``called`` is the class the model calls per bar (three classes: the most probable one);
    by default bear where ``p_bear > threshold``, else bull. The lag of a bear market is the
    number of bars from its first labelled bar to the first bar the model calls bear; bear
    markets never detected while they last count in ``bears_missed``.
    """
    y = np.asarray(y, dtype=int)
    pred = (np.asarray(p_bear, dtype=float) > threshold).astype(int) if called is None else np.asarray(called, int)
    is_bear, called_bear = (y == BEAR).astype(int), (pred == BEAR).astype(int)
    out = {
        "n": float(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "bear_f1": float(f1_score(is_bear, called_bear, pos_label=1, zero_division=0)),
        "share_bear_labelled": float(is_bear.mean()),
        "share_bear_predicted": float(called_bear.mean()),
    }
    if called is not None:
        out["macro_f1"] = float(f1_score(y, pred, average="macro", zero_division=0))
        out["share_sideways_labelled"] = float((y == SIDEWAYS).mean())
        out["share_sideways_predicted"] = float((pred == SIDEWAYS).mean())
    lags: list[int] = []
    missed = 0
    starts = np.flatnonzero((is_bear == 1) & (np.r_[0, is_bear[:-1]] == 0))
    for s in starts:
        end = s
        while end < len(y) and is_bear[end] == 1:
            end += 1
        hit = np.flatnonzero(called_bear[s:end] == 1)
        if len(hit):
            lags.append(int(hit[0]))
        else:
            missed += 1
    out["bear_markets"] = float(len(starts))
    out["bears_missed"] = float(missed)
    out["detection_lag_bars"] = float(np.mean(lags)) if lags else float("nan")
    return out


class Regime(Task):
    @property
    def classes(self) -> tuple[int, ...]:
        """The classes in use, in the order of ``prediction_columns``."""
        return (BEAR,) if self.config.classes == 2 else (BEAR, SIDEWAYS, BULL)

    def _sideways(self) -> tuple[int, float] | None:
        cfg = self.config
        return (cfg.sideways_window, cfg.sideways_band) if cfg.classes == 3 else None

    def make_targets(self, panel: pd.DataFrame) -> pd.DataFrame:
        """The whole sample's dating: for scoring only (the walk-forward fits on ``labels_as_of``)."""
        cfg = self.config
        labels = regime_labels(panel, cfg.bull_threshold, cfg.bear_threshold, sideways=self._sideways())
        return pd.DataFrame({"target": labels}, index=panel.index)

    def label_horizon(self) -> None:
        return None  # decided after the fact

    def labels_as_of(self, panel: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
        cfg = self.config
        known = slice_time(panel, end=end)
        labels = regime_labels(known, cfg.bull_threshold, cfg.bear_threshold, confirmed_only=True,
                               sideways=self._sideways())
        return pd.DataFrame({"target": labels}, index=known.index)

    def prediction_columns(self) -> tuple[str, ...]:
        return tuple(CLASS_COLUMNS[c] for c in self.classes)

    def column_ranges(self) -> dict[str, tuple[float, float]]:
        return {c: (0.0, 1.0) for c in self.prediction_columns()}

    def check_predictions(self, pred: pd.DataFrame, rows: pd.Index | None = None) -> list[str]:
        problems = super().check_predictions(pred, rows)
        if problems or self.config.classes == 2:
            return problems
        sub = pred if rows is None else pred.loc[rows]
        total = sub[list(self.prediction_columns())].sum(axis=1).to_numpy(dtype=float)
        off = np.abs(total - 1) > 1e-6
        if off.any():
            problems.append(f"class probabilities do not sum to 1 on {int(off.sum())} rows, e.g. {total[off][0]!r}")
        return problems

    def called(self, frame: pd.DataFrame) -> np.ndarray:
        """The class called per row: bear above the threshold (two classes), else the most probable one."""
        if self.config.classes == 2:
            return (frame["p_bear"].to_numpy(dtype=float) > self.config.threshold).astype(int)
        probs = frame[list(self.prediction_columns())].to_numpy(dtype=float)
        return np.asarray(self.classes)[np.argmax(probs, axis=1)]

    def score(self, oos: pd.DataFrame, n_boot: int, seed: int) -> dict[str, float]:
        cols = list(self.prediction_columns())
        sub = oos[oos["target"].notna() & oos[cols].notna().all(axis=1)]
        if sub.index.get_level_values("entity").nunique() > 1:
            # dating and lags are per instrument; score the first and say so in the docs
            first = sub.index.get_level_values("entity")[0]
            sub = sub.xs(first, level="entity", drop_level=False)
        return regime_metrics(sub["target"].to_numpy(), sub["p_bear"].to_numpy(), self.config.threshold,
                              None if self.config.classes == 2 else self.called(sub))

    def headline(self) -> tuple[str, ...]:
        if self.config.classes == 2:
            return tuple(self.spec.headline)
        return ("balanced_accuracy", "macro_f1", "bear_f1", "accuracy", "detection_lag_bars", "bears_missed",
                "bear_markets")

    def performance_row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        return {"accuracy": metrics.get("accuracy"), "f1_score": metrics.get("macro_f1", metrics.get("bear_f1")),
                "total_predictions": int(metrics.get("n", 0) or 0),
                "prediction_distribution": {"share_bear_predicted": metrics.get("share_bear_predicted")}}

    def label(self, values: Mapping[str, float]) -> str:
        if self.config.classes == 2:
            return "bear" if values["p_bear"] > self.config.threshold else "bull"
        return CLASS_NAMES[max(self.classes, key=lambda c: values[CLASS_COLUMNS[c]])]

    def describe(self, values: Mapping[str, float]) -> dict[str, Any]:
        return {"p_bull": 1.0 - float(values["p_bear"])} if self.config.classes == 2 else {}

    def log_fields(self, values: Mapping[str, float]) -> dict[str, Any]:
        return {"prediction_value": None, "prediction_probability": float(values["p_bear"]),
                "prediction_class": self.label(values)}

    def score_outcome(self, logged: Mapping[str, Any], actual: float) -> tuple[bool | None, float | None]:
        """``actual`` is the dated regime of that bar: 1 for bear, 0 for bull (2 for sideways, three classes)."""
        allowed = (BULL, BEAR) if self.config.classes == 2 else (BULL, BEAR, SIDEWAYS)
        if actual not in allowed:
            names = "1 (bear) or 0 (bull)" if self.config.classes == 2 else "1 (bear), 0 (bull) or 2 (sideways)"
            raise ValueError(f"a regime outcome is {names}, got {actual}")
        p = logged.get("prediction_probability")
        if p is None:
            return None, None
        called = logged.get("prediction_class")
        correct = (called == CLASS_NAMES[int(actual)]) if called else (p > self.config.threshold) == (actual == BEAR)
        return correct, float(p) - float(actual == BEAR)


def one_hot(called: np.ndarray, classes: tuple[int, ...], valid: np.ndarray, index: pd.Index) -> pd.DataFrame:
    """Probability columns of hard calls (1 for the called class), NaN where ``valid`` is False."""
    out = {}
    for c in classes:
        out[CLASS_COLUMNS[c]] = np.where(valid, (called == c).astype(float), np.nan)
    return pd.DataFrame(out, index=index)


class Ma200Rule(JsonStateModel):
    """Bear while the close is below its 200-bar moving average.

    With three classes, a bar above the average is sideways when the trailing trend over
    the task's ``sideways_window`` bars (the label's window, read backwards) is flatter than
    ``sideways_band``, else bull.
    """

    def fit(self, data, valid=None):
        self.state_ = {"window": 200}

    def predict(self, data):
        w = self.state_["window"]
        task = self.require_task()
        close = data["close"].astype(float)
        ma = close.groupby(level="entity").transform(lambda s: s.rolling(w, min_periods=w).mean())
        below = (close < ma).to_numpy()
        if task.config.classes == 2:
            return pd.DataFrame({"p_bear": np.where(ma.isna(), np.nan, below.astype(float))}, index=data.index)
        window, band = task.config.sideways_window, task.config.sideways_band
        tr = close.groupby(level="entity", group_keys=False).apply(
            lambda s: pd.Series(trend(np.log(s.to_numpy()), window), index=s.index)).reindex(data.index).to_numpy()
        called = np.where(below, BEAR, np.where(np.abs(tr) < band, SIDEWAYS, BULL))
        return one_hot(called, task.classes, ma.notna().to_numpy() & np.isfinite(tr), data.index)


class MajorityRegime(JsonStateModel):
    """The training labels' class shares, every bar."""

    def fit(self, data, valid=None):
        y = data["target"].dropna().astype(int)
        classes = self.require_task().classes
        self.state_ = {CLASS_COLUMNS[c]: float((y == c).mean()) for c in classes}

    def predict(self, data):
        cols = self.require_task().prediction_columns()
        return pd.DataFrame({c: np.full(len(data), self.state_[c]) for c in cols}, index=data.index)


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
