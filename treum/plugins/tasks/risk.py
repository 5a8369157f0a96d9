"""Risk: the next bar's value at risk and expected shortfall, backtested.

Labels: ``target`` = 100 * (close[t+1] / close[t] - 1), the next bar's simple return in percent.
Predictions: for every level of the task's config (``levels: [0.95, 0.99]``), ``var_{level}``
and ``es_{level}`` (``var_99``, ``es_99``): POSITIVE losses in percent of the position's value,
the loss that the next bar exceeds with probability 1 - level and the mean loss beyond it.
An exception is a next-bar return below ``-var``.
Scoring (``treum.core.risk``): per level, exceptions against the expected number, Kupiec's
proportion of failures, Christoffersen's independence and conditional coverage, the quantile
(pinball) loss of the VaR and the FZ0 loss of the (VaR, ES) pair (Patton, Ziegel and Chen
2019). The primary metric is the FZ0 loss at the highest level (lower is better); a model
whose VaR at that level fails Kupiec's test at 5% is never validated, whatever its loss.
Against the reference (historical simulation over 250 bars): a Diebold-Mariano test of the
FZ0 loss difference with a Newey-West variance.
Baselines: historical simulation (``hs_var``) and RiskMetrics (``ewma_var``: EWMA 0.94
variance, normal quantiles, zero mean).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from treum.core.estimators import JsonStateModel
from treum.core.hookspecs import hookimpl
from treum.core.metrics import block_bootstrap_ci
from treum.core.risk import fz0_loss, level_key, newey_west_dm, normal_var_es, pinball_loss, var_backtest
from treum.core.specs import Baseline, ModelSpec, TaskExample, TaskSpec
from treum.core.task import Task


@dataclass
class RiskConfig:
    levels: list[float] = field(default_factory=lambda: [0.95, 0.99])  # confidence levels of the VaR and ES

    def validate(self) -> str | None:
        if not self.levels or any(not 0.5 <= x < 1 for x in self.levels):
            return f"levels must be confidence levels in [0.5, 1), e.g. [0.95, 0.99]; got {self.levels}"
        if len({level_key(x) for x in self.levels}) != len(self.levels):
            return f"levels must not repeat, got {self.levels}"
        return None


def next_return_pct(panel: pd.DataFrame) -> pd.Series:
    """100 * (close[t+1] / close[t] - 1) per entity; NaN on each entity's last bar."""
    close = panel["close"].astype(float)
    return (close.groupby(level="entity").shift(-1) / close - 1) * 100


def simple_returns_pct(panel: pd.DataFrame) -> pd.Series:
    """100 * (close[t] / close[t-1] - 1) per entity; NaN on each entity's first bar."""
    close = panel["close"].astype(float)
    return (close / close.groupby(level="entity").shift(1) - 1) * 100


class Risk(Task):
    @property
    def levels(self) -> list[float]:
        """The configured levels, lowest first."""
        return sorted(float(x) for x in self.config.levels)

    @property
    def top(self) -> str:
        """The key of the highest level (``'99'``): its FZ0 loss is the primary metric."""
        return level_key(self.levels[-1])

    def make_targets(self, panel: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"target": next_return_pct(panel)}, index=panel.index)

    def label_horizon(self) -> int:
        return 1

    def prediction_columns(self) -> tuple[str, ...]:
        return tuple(c for x in self.levels for c in (f"var_{level_key(x)}", f"es_{level_key(x)}"))

    def column_ranges(self) -> dict[str, tuple[float, float]]:
        # a long position loses at most 100%; ES must be positive for the FZ0 loss
        return {c: ((-100.0, 100.0) if c.startswith("var_") else (1e-9, 100.0)) for c in self.prediction_columns()}

    def check_predictions(self, pred: pd.DataFrame, rows: pd.Index | None = None) -> list[str]:
        """The base checks, and ES at least the VaR at each level (the mean loss beyond a VaR exceeds it)."""
        problems = super().check_predictions(pred, rows)
        if problems:
            return problems
        sub = pred if rows is None else pred.loc[rows]
        for x in self.levels:
            k = level_key(x)
            below = (sub[f"es_{k}"] < sub[f"var_{k}"] - 1e-9).to_numpy()
            if below.any():
                problems.append(f"es_{k}: {int(below.sum())} rows below var_{k}; ES is the mean loss beyond the VaR")
        return problems

    def _rows(self, oos: pd.DataFrame) -> pd.DataFrame:
        cols = list(self.prediction_columns())
        ok = np.isfinite(oos[cols + ["target"]].to_numpy(dtype=float)).all(axis=1)
        return oos[ok]

    def losses(self, oos: pd.DataFrame, level: float) -> pd.Series:
        """The FZ0 loss per row at ``level`` (rows with every prediction and the label)."""
        rows = self._rows(oos)
        k = level_key(level)
        return pd.Series(fz0_loss(rows["target"].to_numpy(float), rows[f"var_{k}"].to_numpy(float),
                                  rows[f"es_{k}"].to_numpy(float), level), index=rows.index)

    def score(self, oos: pd.DataFrame, n_boot: int, seed: int) -> dict[str, float]:
        rows = self._rows(oos)
        y = rows["target"].to_numpy(float)
        groups = rows.index.get_level_values("entity").to_numpy()
        backtest = var_backtest(y, {x: rows[f"var_{level_key(x)}"].to_numpy(float) for x in self.levels}, groups)
        out: dict[str, float] = {"n": float(len(rows))}
        for x in self.levels:
            k, bt = level_key(x), backtest[x]
            for name in ("exceptions", "expected_exceptions", "exception_rate", "kupiec_lr", "kupiec_pvalue",
                         "christoffersen_ind_pvalue", "christoffersen_cc_pvalue"):
                out[f"{name}_{k}"] = bt[name]
            v, e = rows[f"var_{k}"].to_numpy(float), rows[f"es_{k}"].to_numpy(float)
            out[f"pinball_{k}"] = float(np.mean(pinball_loss(y, v, x))) if len(y) else float("nan")
            out[f"fz_loss_{k}"] = float(np.mean(fz0_loss(y, v, e, x))) if len(y) else float("nan")
        out["fz_loss"] = out[f"fz_loss_{self.top}"]
        if len(rows):
            # an interval from moving blocks of dates (the mean loss across entities on each date)
            per_date = self.losses(oos, self.levels[-1]).groupby(level="timestamp").mean().to_numpy()
            lo, hi = block_bootstrap_ci(lambda idx: float(per_date[idx].mean()), len(per_date), n_boot, seed=seed)
            out["fz_loss_ci_low"], out["fz_loss_ci_high"] = lo, hi
        return out

    def headline(self) -> tuple[str, ...]:
        cols = ["fz_loss"]
        for x in reversed(self.levels):
            k = level_key(x)
            cols += [f"exception_rate_{k}", f"kupiec_pvalue_{k}", f"christoffersen_cc_pvalue_{k}"]
        return tuple(cols + ["dm_stat", "dm_pvalue"])

    def compare(self, oos: pd.DataFrame, reference: pd.DataFrame) -> dict[str, float]:
        """Diebold-Mariano of the FZ0 loss at the highest level against the reference, on the rows both answer.

        On a panel the loss difference is averaged across entities per date first, so that the
        Newey-West variance sees one time series. A negative statistic: this model's loss is lower.
        """
        mine = self.losses(oos, self.levels[-1])
        ref_frame = reference[list(self.prediction_columns())].join(oos[["target"]], how="inner")
        theirs = self.losses(ref_frame, self.levels[-1])
        both = pd.concat([mine.rename("a"), theirs.rename("b")], axis=1, join="inner")
        d = (both["a"] - both["b"]).groupby(level="timestamp").mean()
        stat, p = newey_west_dm(d.to_numpy(), np.zeros(len(d)))
        return {"dm_stat": stat, "dm_pvalue": p, "fz_loss_diff": float(d.mean()) if len(d) else float("nan")}

    def beats(self, model_metrics: Mapping[str, float], baseline_metrics: list[Mapping[str, float]]) -> bool:
        """A lower FZ0 loss than every baseline, on as many rows, AND a VaR at the highest level that
        passes Kupiec's test at 5%: a VaR that fails its backtest is never validated."""
        p = model_metrics.get(f"kupiec_pvalue_{self.top}")
        if p is None or not np.isfinite(p) or p < 0.05:
            return False
        return super().beats(model_metrics, baseline_metrics)

    def performance_row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        """``total_predictions``; ``failed_predictions``: the exceptions at the highest level (a VaR that a loss
        exceeded), ``successful_predictions`` the rest; ``error_distribution``: the backtest per level."""
        n = int(metrics.get("n", 0) or 0)
        exc = metrics.get(f"exceptions_{self.top}")
        failed = int(exc) if exc is not None and np.isfinite(exc) else None
        backtest = {}
        for x in self.levels:
            k = level_key(x)
            backtest[k] = {name: metrics.get(f"{name}_{k}") for name in (
                "exception_rate", "kupiec_pvalue", "christoffersen_cc_pvalue", "pinball", "fz_loss")}
        return {"total_predictions": n, "failed_predictions": failed,
                "successful_predictions": None if failed is None else n - failed,
                "error_distribution": {"backtest": backtest}}

    def describe(self, values: Mapping[str, float]) -> dict[str, Any]:
        out: dict[str, Any] = {"unit": "percent of the position's value, a positive loss over the next bar"}
        for x in self.levels:
            k = level_key(x)
            var, es = float(values[f"var_{k}"]), float(values[f"es_{k}"])
            out[f"var_{k}_meaning"] = (
                f"a 1-bar loss of {var:.2f}% that the next bar exceeds with probability {1 - x:.3g} "
                f"(about {(1 - x) * 252:.3g} bars a year); beyond it the loss averages {es:.2f}% (ES)")
        return out

    def log_fields(self, values: Mapping[str, float]) -> dict[str, Any]:
        return {"prediction_value": float(values[f"var_{self.top}"]), "prediction_probability": None,
                "prediction_class": None}

    def score_outcome(self, logged: Mapping[str, Any], actual: float) -> tuple[bool | None, float | None]:
        """``actual`` is the next bar's simple return in percent. ``is_correct`` is False exactly when it is an
        exception (below minus the logged VaR at the highest level); the error is the loss beyond the VaR
        (0 when there is no exception)."""
        actual = float(actual)
        if not np.isfinite(actual) or actual < -100:
            raise ValueError(f"a simple return in percent is a finite number of at least -100, got {actual}")
        value = logged.get("prediction_value")
        if value is None:
            return None, None
        exceeded = actual < -float(value)
        return not exceeded, (-actual - float(value)) if exceeded else 0.0


# baselines ---------------------------------------------------------------------------
@dataclass
class HsConfig:
    window: int = 250  # bars of returns in the historical sample (one trading year)

    def validate(self) -> str | None:
        return None if self.window >= 20 else f"window must be at least 20 bars, got {self.window}"


class HistoricalVar(JsonStateModel):
    """Historical simulation: the empirical quantile and tail mean of the last ``window`` one-bar returns.

    Bars with fewer than ``window`` returns before them are left empty (NaN).
    """

    def fit(self, data, valid=None):
        self.state_ = {"window": int(self.config.window)}

    def predict(self, data):
        window = self.state_["window"]
        levels = self.require_task().levels
        cols = self.require_task().prediction_columns()
        parts = []
        for _, r in simple_returns_pct(data).groupby(level="entity", sort=False):
            out = np.full((len(r), len(cols)), np.nan)
            x = r.to_numpy(dtype=float)[1:]  # the first bar has no return
            if len(x) >= window:
                win = np.lib.stride_tricks.sliding_window_view(x, window)  # row j: returns up to bar j + window
                rows = np.arange(window, len(r))
                for i, level in enumerate(levels):
                    q = np.quantile(win, 1 - level, axis=1)
                    tail = np.where(win <= q[:, None], win, np.nan)
                    out[rows, 2 * i] = -q
                    out[rows, 2 * i + 1] = -np.nanmean(tail, axis=1)
            parts.append(pd.DataFrame(out, index=r.index, columns=list(cols)))
        return pd.concat(parts).reindex(data.index)


@dataclass
class EwmaVarConfig:
    lam: float = 0.94  # RiskMetrics' daily decay

    def validate(self) -> str | None:
        return None if 0 < self.lam < 1 else f"lam must be in (0, 1), got {self.lam}"


class EwmaVar(JsonStateModel):
    """RiskMetrics: sigma2[t+1] = lam sigma2[t] + (1 - lam) r[t]^2, then normal VaR and ES with zero mean.

    The recursion starts from the first squared return (nothing later, so the answer at t
    uses returns up to t only).
    """

    def fit(self, data, valid=None):
        self.state_ = {"lam": float(self.config.lam)}

    def predict(self, data):
        lam = self.state_["lam"]
        task = self.require_task()
        parts = []
        for _, r in simple_returns_pct(data).groupby(level="entity", sort=False):
            r2 = (r ** 2).to_numpy()
            var = np.full(len(r2), np.nan)
            if len(r2) >= 2:
                prev = r2[1]
                for t in range(1, len(r2)):
                    prev = lam * prev + (1 - lam) * r2[t]
                    var[t] = prev
            sigma = np.sqrt(var)
            cols = {}
            for level in task.levels:
                v, e = normal_var_es(sigma, level)
                cols[f"var_{level_key(level)}"], cols[f"es_{level_key(level)}"] = v, e
            parts.append(pd.DataFrame(cols, index=r.index)[list(task.prediction_columns())])
        return pd.concat(parts).reindex(data.index)


Risk.spec = TaskSpec(
    name="risk",
    description="the next bar's value at risk and expected shortfall (positive losses in percent), backtested",
    config_cls=RiskConfig,
    factory=Risk,
    primary_metric="fz_loss",  # the FZ0 loss at the highest level
    higher_is_better=False,
    baselines=(Baseline("hs_var", "hs_var"), Baseline("ewma_var", "ewma_var")),
    headline=(),  # derived from the levels: Risk.headline
    example=TaskExample("sp500", "2005-01-01", "2012-12-31", panel="sp500_stocks", entities=("AAPL", "JNJ", "XOM")),
    reference="hs_var",
    data="sp500",
)


@hookimpl
def treum_tasks() -> list[TaskSpec]:
    return [Risk.spec]


HistoricalVar.spec = ModelSpec(
    name="hs_var", family="baseline", task="risk", capabilities=frozenset({"multi_asset", "sequential"}),
    config_cls=HsConfig, factory=HistoricalVar,
    description="historical simulation over the last 250 bars (empirical quantile and tail mean)", baseline=True)
EwmaVar.spec = ModelSpec(
    name="ewma_var", family="baseline", task="risk", capabilities=frozenset({"multi_asset", "sequential"}),
    config_cls=EwmaVarConfig, factory=EwmaVar,
    description="RiskMetrics: EWMA 0.94 variance, normal VaR and ES with zero mean", baseline=True)


@hookimpl
def treum_models() -> list[ModelSpec]:
    return [HistoricalVar.spec, EwmaVar.spec]
