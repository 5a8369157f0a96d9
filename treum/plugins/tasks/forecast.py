"""Forecast: the change of a series over the next h bars, as quantiles.

The series is each entity's ``close``: ``y = log(close)`` with ``change: log`` (prices and other
positive levels; a change is then a log return, not in percent) or ``y = close`` with
``change: plain`` (rates that can be zero or negative: inflation, unemployment, GDP growth).

Labels: ``target_chg_h{h} = y[t+h] - y[t]`` per entity, NaN where t+h is past the data.
Predictions: ``q{NN}_h{h}`` for every horizon h and quantile q (``q10_h1``, ``q50_h1``,
``q90_h1``...), the predicted change from the last observed value in the unit of the label;
``q50_h{h}`` is the point forecast. The quantiles of one horizon must not cross.
Scoring, per horizon: MASE of the median against the random walk *on the same out-of-sample
rows* (mean |y - q50| / mean |y|, since the random walk predicts a change of zero), the mean
pinball loss over the quantiles, the coverage of [lowest, highest quantile] (the 80% interval by
default) and the direction hit rate of the median. The primary metric ``mase`` is the MASE at
``scored_horizon`` (the last horizon by default). ``compare`` gives Diebold-Mariano on absolute
errors against the random walk, per horizon.
Baselines: the random walk (zero change), the random walk with drift (the training mean h-bar
change), the historical mean (the level reverts to the training mean), all three with quantiles
from the training data.

``series``, ``forecast_columns`` and ``quantile_column`` are shared with every model of the task
(sktime, darts), so that they all read one definition of y and of the columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from treum.core.errors import ConfigError
from treum.core.hookspecs import hookimpl
from treum.core.metrics import block_bootstrap_ci, diebold_mariano
from treum.core.model import PerEntityModel
from treum.core.estimators import NoConfig
from treum.core.specs import Baseline, ModelSpec, TaskExample, TaskSpec
from treum.core.task import Task


def quantile_column(q: float, h: int) -> str:
    """The prediction column of quantile ``q`` at horizon ``h``: ``q10_h1`` for (0.1, 1)."""
    return f"q{int(round(q * 100)):02d}_h{h}"


def forecast_columns(horizons: Sequence[int], quantiles: Sequence[float]) -> tuple[str, ...]:
    """Every prediction column, horizon by horizon, quantiles in increasing order within each."""
    return tuple(quantile_column(q, h) for h in horizons for q in sorted(quantiles))


def series(panel: pd.DataFrame, change: str) -> pd.Series:
    """y on the panel's index: ``log(close)`` for ``change='log'``, ``close`` for ``'plain'``.

    A non-positive close has no logarithm; rather than NaN the rows silently, this names
    the setting that fits such a series.
    """
    if "close" not in panel.columns:
        raise ConfigError(f"task forecast reads the 'close' column; the data has {list(panel.columns)[:8]}")
    close = panel["close"].astype(float)
    if change == "plain":
        return close
    if change != "log":
        raise ConfigError(f"task.change must be 'log' or 'plain', got {change!r}")
    bad = close <= 0
    if bad.any():
        ts, ent = close.index[int(np.flatnonzero(bad.to_numpy())[0])]
        raise ConfigError(
            f"task forecast with change=log takes log(close), but close is {close[bad].iloc[0]} (not positive) "
            f"for entity '{ent}' at {pd.Timestamp(ts).date()}: use task.change=plain for rates and series "
            "that can be zero or negative"
        )
    return np.log(close)


def forward_change(y: pd.Series, h: int) -> pd.Series:
    """y[t+h] - y[t] per entity, NaN where t+h is past the entity's data."""
    return y.groupby(level="entity", sort=False).shift(-h) - y


@dataclass
class ForecastConfig:
    horizons: list[int] = field(default_factory=lambda: [1, 5, 21])  # bars ahead
    quantiles: list[float] = field(default_factory=lambda: [0.1, 0.5, 0.9])  # must contain 0.5
    change: Literal["log", "plain"] = "log"  # log: change of log(close); plain: change of close
    scored_horizon: int | None = None  # the horizon of the primary metric; None: the last horizon

    def validate(self) -> str | None:
        if not self.horizons or min(self.horizons) < 1:
            return f"horizons must be positive integers, got {self.horizons}"
        if len(set(self.horizons)) != len(self.horizons):
            return f"horizons must not repeat, got {self.horizons}"
        qs = list(self.quantiles)
        if not qs or any(not 0 < q < 1 for q in qs):
            return f"quantiles must lie strictly between 0 and 1, got {qs}"
        if qs != sorted(qs) or len(set(qs)) != len(qs):
            return f"quantiles must be sorted and unique, got {qs}"
        if 0.5 not in qs:
            return f"quantiles must contain 0.5 (the median is the point forecast), got {qs}"
        names = [quantile_column(q, 1) for q in qs]
        if len(set(names)) != len(names):
            return f"quantiles {qs} round to the same percent column names {names}; use whole percents"
        if self.scored_horizon is not None and self.scored_horizon not in self.horizons:
            return f"scored_horizon {self.scored_horizon} is not one of the horizons {self.horizons}"
        return None


def pinball(y: np.ndarray, pred: np.ndarray, q: float) -> np.ndarray:
    """The pinball (quantile) loss of ``pred`` as the q-quantile of ``y``, per row."""
    diff = y - pred
    return np.maximum(q * diff, (q - 1) * diff)


def forecast_metrics(frame: pd.DataFrame, horizons: Sequence[int], quantiles: Sequence[float], scored: int,
                     n_boot: int = 0, seed: int = 0) -> dict[str, float]:
    """MASE, pinball loss, interval coverage and hit rate per horizon, on the rows with a label and a forecast.

    MASE divides the mean absolute error of the median by that of the random walk (a change of
    zero, so its error is |y|) on the same rows, per series and then averaged over the series
    (``rel_mae_h{h}`` is the same ratio pooled over every row): the out-of-sample random walk, not the in-sample
    naive forecast of Hyndman and Koehler, so that every model is scaled by the same rows it is
    scored on and the random walk itself scores exactly 1. ``hit_h{h}`` is the share of rows with
    a non-zero change whose median has the right sign; a median of exactly zero calls no
    direction and counts as half a hit. ``mase``, ``n`` (and a block-bootstrap interval of MASE
    when ``n_boot``) repeat the scored horizon's.
    """
    qs = sorted(quantiles)
    out: dict[str, float] = {}
    for h in horizons:
        cols = [quantile_column(q, h) for q in qs]
        y = frame[f"target_chg_h{h}"].to_numpy(dtype=float)
        p = frame[cols].to_numpy(dtype=float)
        ok = np.isfinite(y) & np.isfinite(p).all(axis=1)
        y, p = y[ok], p[ok]
        ent = pd.factorize(frame.index.get_level_values("entity"))[0][ok]
        med = p[:, qs.index(0.5)]
        n = len(y)
        out[f"n_h{h}"] = float(n)
        if n == 0:
            for k in ("mase", "pinball", "coverage", "hit"):
                out[f"{k}_h{h}"] = float("nan")
            continue
        rw = np.abs(y).mean()
        out[f"mase_h{h}"] = per_series_ratio(np.abs(y - med), np.abs(y), ent)
        out[f"rel_mae_h{h}"] = float(np.abs(y - med).mean() / rw) if rw > 0 else float("nan")
        out[f"pinball_h{h}"] = float(np.mean([pinball(y, p[:, i], q).mean() for i, q in enumerate(qs)]))
        out[f"coverage_h{h}"] = float(((y >= p[:, 0]) & (y <= p[:, -1])).mean())
        moved = y != 0
        hits = np.where(med == 0, 0.5, (np.sign(med) == np.sign(y)).astype(float))[moved]
        out[f"hit_h{h}"] = float(hits.mean()) if moved.any() else float("nan")
        if h == scored and n_boot:
            err, base = np.abs(y - med), np.abs(y)

            def ratio(i: np.ndarray, err: np.ndarray = err, base: np.ndarray = base, ent: np.ndarray = ent) -> float:
                return per_series_ratio(err[i], base[i], ent[i])

            # overlapping h-bar changes are dependent over h bars: blocks at least that long
            block = max(21, 2 * h)
            out["mase_ci_low"], out["mase_ci_high"] = block_bootstrap_ci(ratio, n, n_boot, block=block, seed=seed)
    out["mase"], out["n"] = out[f"mase_h{scored}"], out[f"n_h{scored}"]
    return out


def per_series_ratio(err: np.ndarray, base: np.ndarray, entity: np.ndarray) -> float:
    """The mean over series of each series' mean error over its mean random-walk error.

    Per series, so that a panel of series on different scales (GDP growth and unemployment) is
    not scored by its most volatile series alone; a series whose random walk is never wrong is
    left out.
    """
    ratios = []
    for e in np.unique(entity):
        sel = entity == e
        b = base[sel].mean()
        if b > 0:
            ratios.append(err[sel].mean() / b)
    return float(np.mean(ratios)) if ratios else float("nan")


def crossing_problems(pred: pd.DataFrame, horizons: Sequence[int], quantiles: Sequence[float]) -> list[str]:
    """Rows where a lower quantile's forecast is above a higher one's, per horizon."""
    qs = sorted(quantiles)
    problems = []
    for h in horizons:
        values = pred[[quantile_column(q, h) for q in qs]].to_numpy(dtype=float)
        diffs = np.diff(values, axis=1)
        crossed = np.isfinite(diffs) & (diffs < -1e-9 * (1 + np.abs(values[:, 1:])))
        rows = crossed.any(axis=1)
        if rows.any():
            i = int(np.flatnonzero(rows)[0])
            problems.append(f"quantiles of horizon {h} cross on {int(rows.sum())} rows, e.g. row {pred.index[i]}: "
                            f"{dict(zip([quantile_column(q, h) for q in qs], values[i].round(6)))}; sort them")
    return problems


class Forecast(Task):
    @property
    def horizons(self) -> list[int]:
        return list(self.config.horizons)

    @property
    def quantiles(self) -> list[float]:
        return sorted(self.config.quantiles)

    @property
    def change(self) -> str:
        return self.config.change

    @property
    def scored_horizon(self) -> int:
        return self.config.scored_horizon if self.config.scored_horizon is not None else self.horizons[-1]

    def series(self, panel: pd.DataFrame) -> pd.Series:
        """y per entity under this task's ``change``."""
        return series(panel, self.change)

    def make_targets(self, panel: pd.DataFrame) -> pd.DataFrame:
        y = self.series(panel)
        return pd.DataFrame({f"target_chg_h{h}": forward_change(y, h) for h in self.horizons}, index=panel.index)

    def label_horizon(self) -> int:
        return max(self.horizons)

    def prediction_columns(self) -> tuple[str, ...]:
        return forecast_columns(self.horizons, self.quantiles)

    def check_predictions(self, pred: pd.DataFrame, rows: pd.Index | None = None) -> list[str]:
        problems = super().check_predictions(pred, rows)
        if problems and problems[0].startswith("missing"):
            return problems
        sub = pred if rows is None else pred.loc[rows]
        return problems + crossing_problems(sub, self.horizons, self.quantiles)

    def score(self, oos: pd.DataFrame, n_boot: int, seed: int) -> dict[str, float]:
        return forecast_metrics(oos, self.horizons, self.quantiles, self.scored_horizon, n_boot, seed)

    def headline(self) -> tuple[str, ...]:
        s = self.scored_horizon
        cols = [f"mase_h{h}" for h in self.horizons] + [f"pinball_h{s}", f"coverage_h{s}", f"hit_h{s}"]
        return tuple(cols + [f"dm_stat_h{s}", f"dm_pvalue_h{s}"])

    def compare(self, oos: pd.DataFrame, reference: pd.DataFrame) -> dict[str, float]:
        """Diebold-Mariano of absolute errors of the median against the reference's, per horizon.

        On a panel the loss differences are averaged across entities per timestamp first, so
        the test sees one series of dependent h-bar errors (Newey-West lag h-1).
        """
        out: dict[str, float] = {}
        ref_cols = [quantile_column(0.5, h) for h in self.horizons]
        joined = oos.join(reference[ref_cols], rsuffix="_ref", how="inner")
        for h in self.horizons:
            y = joined[f"target_chg_h{h}"]
            a = (y - joined[quantile_column(0.5, h)]).abs()
            b = (y - joined[f"{quantile_column(0.5, h)}_ref"]).abs()
            d = pd.DataFrame({"a": a, "b": b}).dropna()
            per_time = d.groupby(level="timestamp").mean()
            out[f"dm_stat_h{h}"], out[f"dm_pvalue_h{h}"] = diebold_mariano(per_time["a"].to_numpy(),
                                                                           per_time["b"].to_numpy(), h)
        return out

    def performance_row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        s = self.scored_horizon
        return {"total_predictions": int(metrics.get("n", 0) or 0),
                "prediction_distribution": {"mase": metrics.get(f"mase_h{s}"),
                                            "coverage": metrics.get(f"coverage_h{s}"),
                                            "hit_rate": metrics.get(f"hit_h{s}")}}

    # serving ---------------------------------------------------------------
    def label(self, values: Mapping[str, float]) -> str:
        med = float(values[quantile_column(0.5, self.horizons[0])])
        return "up" if med > 0 else "down" if med < 0 else "flat"

    def describe(self, values: Mapping[str, float]) -> dict[str, Any]:
        """Per horizon the median change and the interval [lowest, highest quantile].

        The answer holds changes, not levels (the last level is not among the predicted
        values); for a log series they are shown as percent changes of the level,
        ``100 * (exp(change) - 1)``.
        """
        lo, hi = self.quantiles[0], self.quantiles[-1]
        out: dict[str, Any] = {"change": self.change,
                               "interval": f"{int(round(lo * 100))}%-{int(round(hi * 100))}% quantiles"}
        for h in self.horizons:
            med, low, high = (float(values[quantile_column(q, h)]) for q in (0.5, lo, hi))
            if self.change == "log":
                out[f"change_pct_h{h}"] = 100 * float(np.expm1(med))
                out[f"interval_pct_h{h}"] = [100 * float(np.expm1(low)), 100 * float(np.expm1(high))]
            else:
                out[f"change_h{h}"] = med
                out[f"interval_h{h}"] = [low, high]
        return out

    def log_fields(self, values: Mapping[str, float]) -> dict[str, Any]:
        return {"prediction_value": float(values[quantile_column(0.5, self.horizons[0])]),
                "prediction_probability": None, "prediction_class": self.label(values)}

    def score_outcome(self, logged: Mapping[str, Any], actual: float) -> tuple[bool | None, float | None]:
        """``actual`` is the realised change over the first horizon, in the label's unit.

        ``is_correct`` is whether the median had the right sign (None when either is zero);
        ``prediction_error`` is the median minus the realised change.
        """
        if not np.isfinite(actual):
            raise ValueError(f"a realised change must be a finite number, got {actual}")
        value = logged.get("prediction_value")
        if value is None:
            return None, None
        value = float(value)
        correct = None if value == 0 or actual == 0 else bool(np.sign(value) == np.sign(actual))
        return correct, value - float(actual)


# baselines ------------------------------------------------------------------


def _offsets(changes: np.ndarray, quantiles: Sequence[float]) -> list[float]:
    """Empirical quantiles of ``changes`` less their median: a spread centred at zero."""
    qs = np.quantile(changes, sorted(quantiles))
    return [float(v) for v in qs - np.quantile(changes, 0.5)]


class _ForecastBaseline(PerEntityModel):
    """Per entity: a centre per horizon (from the training data, or the last value) plus fixed quantile offsets."""

    def training_changes(self, frame: pd.DataFrame, h: int) -> np.ndarray:
        """The h-bar changes the training rows' labels hold (never past the fold's training end)."""
        values = frame[f"target_chg_h{h}"].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        if len(values) < 2:
            raise ConfigError(f"{self.spec.name}: fewer than 2 training labels at horizon {h}; give it more data")
        return values

    def predict_entity(self, frame: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
        task = self.require_task()
        y = task.series(frame).to_numpy(dtype=float)
        cols = {}
        for h in task.horizons:
            # the random walks: a constant change; the historical mean: the training mean less y[t]
            centre = np.full(len(frame), params["drift"][str(h)]) - (y if params["revert"] else 0.0)
            for q, off in zip(task.quantiles, params["offsets"][str(h)]):
                cols[quantile_column(q, h)] = centre + off
        return pd.DataFrame(cols, index=frame.index)


class RandomWalk(_ForecastBaseline):
    """A change of zero; quantiles from the training h-bar changes, centred at zero."""

    drift = False

    def fit_entity(self, frame: pd.DataFrame) -> dict[str, Any]:
        task = self.require_task()
        params: dict[str, Any] = {"revert": False, "drift": {}, "offsets": {}}
        for h in task.horizons:
            c = self.training_changes(frame, h)
            params["drift"][str(h)] = float(c.mean()) if self.drift else 0.0
            params["offsets"][str(h)] = _offsets(c, task.quantiles)
        return params


class RandomWalkDrift(RandomWalk):
    """The training mean h-bar change; quantiles as the random walk's, around it."""

    drift = True


class HistoricalMean(_ForecastBaseline):
    """The level reverts to the training mean of y: change = mean(y_train) - y[t].

    Quantiles: the training distribution of y, centred at its mean, minus y[t].
    """

    def fit_entity(self, frame: pd.DataFrame) -> dict[str, Any]:
        task = self.require_task()
        y = task.series(frame).to_numpy(dtype=float)
        y = y[np.isfinite(y)]
        off = _offsets(y, task.quantiles)
        return {"revert": True, "drift": {str(h): float(y.mean()) for h in task.horizons},
                "offsets": {str(h): off for h in task.horizons}}


def _baseline(name: str, cls: type, desc: str) -> ModelSpec:
    cls.spec = ModelSpec(name=name, family="baseline", task="forecast",
                         capabilities=frozenset({"multi_asset", "multi_horizon", "probabilistic"}),
                         config_cls=NoConfig, factory=cls, description=desc, baseline=True)
    return cls.spec


BASELINES = [
    _baseline("random_walk", RandomWalk, "no change; quantiles of the training h-bar changes, centred at zero"),
    _baseline("rw_drift", RandomWalkDrift, "the training mean h-bar change, with the random walk's quantiles"),
    _baseline("historical_mean", HistoricalMean, "the level reverts to the training mean of the series"),
]

Forecast.spec = TaskSpec(
    name="forecast",
    description="change of log(close) or close over the next h bars, as quantiles",
    config_cls=ForecastConfig,
    factory=Forecast,
    primary_metric="mase",  # MASE at scored_horizon (the last horizon by default)
    higher_is_better=False,
    baselines=(Baseline("random_walk", "random_walk"), Baseline("rw_drift", "rw_drift"),
               Baseline("historical_mean", "historical_mean")),
    headline=(),  # derived from the horizons: Forecast.headline
    # a daily set: the contract tests the last year and validates on the year before
    example=TaskExample("sp500", "2009-01-01", "2012-12-31", config={"horizons": [1, 5]}, panel="sp500_stocks",
                        entities=("AAPL", "JNJ", "XOM")),
    reference="random_walk",
    # the demo: the quarterly macro set (three entities, plain changes, 1/4/8 quarters), which shows the
    # models beating the random walk; on daily prices nothing does (docs/tasks/forecast.md)
    data="macro",
    demo=("experiment=forecast_macro",),
)


@hookimpl
def treum_tasks() -> list[TaskSpec]:
    return [Forecast.spec]


@hookimpl
def treum_models() -> list[ModelSpec]:
    return list(BASELINES)
