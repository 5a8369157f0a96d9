"""Portfolio: target weights per entity at each rebalance date, scored by a backtest net of costs.

Prediction: ``weight``, the entity's share of the target portfolio as of the latest
rebalance date at or before the row's timestamp (long-only, fully invested, within
the configured caps; see ``treum.core.weights``). A model may also hold a share outside
the entities, the benchmark index (``benchmark_weight``): only the index baseline does.

Labels: ``target`` is the entity's next simple return, ``close[t+1] / close[t] - 1``
(a fraction), and ``target_benchmark`` the benchmark's (the data column named by
``benchmark``) where the data has one. They are what the backtest earns; no model
is fitted on them unless it wants to be.

The backtest is the scoring, written once (``backtest``): the portfolio starts in cash;
on every rebalance date of the test segment the targets pass the risk layer (the caps;
the turnover cap measured against the drifted holdings) and are traded at the close,
paying ``cost_bps`` on the traded value (the first build from cash included); between
rebalances the holdings drift with prices. Metrics of the daily net returns: CAGR,
annualised volatility, Sharpe (with a block-bootstrap interval), Sortino, maximum
drawdown, Calmar, turnover per year and the cost drag; against 1/N (the reference)
the Sharpe difference with the Ledoit-Wolf (2008) HAC p-value and Jobson-Korkie's
with Memmel's (2003) correction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from treum.core.estimators import JsonStateModel
from treum.core.hookspecs import hookimpl
from treum.core.metrics import block_bootstrap_ci, hac_covariance
from treum.core.specs import Baseline, ModelSpec, TaskExample, TaskSpec
from treum.core.task import Task
from treum.core.weights import PERIODS, WeightsModel, cap_weights, limit_turnover, rebalance_dates

TRADING_DAYS = 252


@dataclass
class PortfolioConfig:
    rebalance: Literal["daily", "weekly", "monthly", "quarterly"] = "monthly"  # the first bar of each period
    cost_bps: float = 10.0  # cost per unit of traded value, in basis points (the first build from cash included)
    max_weight: float | None = None  # the most one entity may hold (None: no cap)
    max_turnover: float | None = None  # the most traded value per rebalance, sum |w_new - w_held| (None: no cap)
    risk_free: float = 0.0  # annual rate subtracted in Sharpe and Sortino (0: plain returns, as the goals quote)
    benchmark: str = "benchmark"  # the data column with the benchmark index's close (for the index baseline)

    def validate(self) -> str | None:
        if self.rebalance not in PERIODS:
            return f"rebalance must be one of {list(PERIODS)}, got {self.rebalance!r}"
        if self.cost_bps < 0:
            return f"cost_bps cannot be negative, got {self.cost_bps}"
        if self.max_weight is not None and not 0 < self.max_weight <= 1:
            return f"max_weight must be in (0, 1], got {self.max_weight}"
        if self.max_turnover is not None and not 0 < self.max_turnover <= 2:
            return f"max_turnover must be in (0, 2] (traded value per rebalance), got {self.max_turnover}"
        return None


# the backtest ------------------------------------------------------------------
def backtest(oos: pd.DataFrame, task: "Portfolio") -> pd.DataFrame:
    """Daily returns of holding the targets in ``oos`` (``weight``, optional ``benchmark_weight``, labels).

    Returns one row per day with a next-day return: ``gross`` and ``net`` (fractions, net of
    the cost paid at that day's close), ``cost`` and ``traded`` (traded value over portfolio
    value), ``invested`` (False while the model had given no target yet: the portfolio is cash).
    """
    cfg = task.config
    w = oos["weight"].astype(float).unstack("entity").sort_index()
    r = oos["target"].astype(float).unstack("entity").reindex(index=w.index, columns=w.columns)
    days = w.index
    bw = (oos["benchmark_weight"].astype(float).groupby(level="timestamp").first().reindex(days)
          if "benchmark_weight" in oos.columns else pd.Series(0.0, index=days))
    rb = (oos["target_benchmark"].astype(float).groupby(level="timestamp").first().reindex(days)
          if "target_benchmark" in oos.columns else pd.Series(np.nan, index=days))
    rebal = set(task.rebalance_dates(days))
    wv, rv, bv, rbv = w.to_numpy(), r.to_numpy(), bw.to_numpy(), rb.to_numpy()
    n_ent = w.shape[1]
    held = np.zeros(n_ent)
    held_b = 0.0
    rows = []
    for i, day in enumerate(days):
        cost = traded = 0.0
        target = wv[i]
        if day in rebal and np.isfinite(target).any():
            share = float(bv[i]) if np.isfinite(bv[i]) else 0.0
            if share < 1:
                names = w.columns[np.isfinite(target)]
                tw = task.constrain(pd.Series(target[np.isfinite(target)], index=names),
                                    pd.Series(held, index=w.columns) if held.sum() > 0 else None)
                new = tw.reindex(w.columns, fill_value=0.0).to_numpy() * (1 - share)
            else:
                new = np.zeros(n_ent)
            traded = float(np.abs(new - held).sum() + abs(share - held_b))
            cost = traded * cfg.cost_bps / 1e4
            held, held_b = new, share
        if not np.isfinite(rv[i]).any():
            continue  # no next bar (the data's last day): nothing earned, nothing to score
        ret = np.nan_to_num(rv[i], nan=0.0)
        if held_b > 0 and not np.isfinite(rbv[i]):
            gross = np.nan  # the benchmark's next return is unknown: the day cannot be scored
        else:
            gross = float(held @ ret + (held_b * rbv[i] if held_b > 0 else 0.0))
        invested = held.sum() + held_b > 0
        net = (1 - cost) * (1 + gross) - 1 if np.isfinite(gross) else np.nan
        rows.append((day, gross, net, cost, traded, invested))
        if np.isfinite(gross) and 1 + gross > 0:
            grown = held * (1 + ret)
            held_b = held_b * (1 + rbv[i]) / (1 + gross) if held_b > 0 else 0.0
            held = grown / (1 + gross)
    out = pd.DataFrame(rows, columns=["timestamp", "gross", "net", "cost", "traded", "invested"]).set_index("timestamp")
    return out


def _cagr(r: np.ndarray) -> float:
    if len(r) == 0:
        return float("nan")
    growth = float(np.prod(1 + r))
    return growth ** (TRADING_DAYS / len(r)) - 1 if growth > 0 else -1.0


def _sharpe(r: np.ndarray, rf_daily: float) -> float:
    sd = float(np.std(r, ddof=1)) if len(r) > 1 else float("nan")
    return float((np.mean(r) - rf_daily) / sd * np.sqrt(TRADING_DAYS)) if sd and np.isfinite(sd) and sd > 0 \
        else float("nan")


def max_drawdown(r: np.ndarray) -> float:
    """The largest fall from a running peak of the value path, as a positive fraction."""
    if len(r) == 0:
        return float("nan")
    value = np.cumprod(1 + r)
    peak = np.maximum.accumulate(np.r_[1.0, value])[1:]
    return float(-(value / peak - 1).min())


def portfolio_metrics(daily: pd.DataFrame, risk_free: float = 0.0, n_boot: int = 500, seed: int = 0) -> dict[str, float]:
    """Figures of a backtest's daily net returns (annualised with 252 days)."""
    scored = daily[daily["invested"] & daily["net"].notna()]
    r = scored["net"].to_numpy(dtype=float)
    g = scored["gross"].to_numpy(dtype=float)
    rf = (1 + risk_free) ** (1 / TRADING_DAYS) - 1
    n = len(r)
    downside = np.sqrt(np.mean(np.minimum(r - rf, 0.0) ** 2)) if n else float("nan")
    cagr, mdd = _cagr(r), max_drawdown(r)
    lo, hi = block_bootstrap_ci(lambda i: _sharpe(r[i], rf), n, n_boot, seed=seed)
    years = n / TRADING_DAYS if n else float("nan")
    return {
        "n": float(n),
        "cagr": cagr,
        "volatility": float(np.std(r, ddof=1) * np.sqrt(TRADING_DAYS)) if n > 1 else float("nan"),
        "sharpe": _sharpe(r, rf),
        "sharpe_ci_low": lo,
        "sharpe_ci_high": hi,
        "sortino": float((np.mean(r) - rf) / downside * np.sqrt(TRADING_DAYS)) if n and downside > 0 else float("nan"),
        "max_drawdown": mdd,
        "calmar": cagr / mdd if mdd and np.isfinite(mdd) and mdd > 0 else float("nan"),
        "turnover": float(scored["traded"].sum() / years) if n else float("nan"),
        "cost_drag": _cagr(g) - cagr if n else float("nan"),
        "total_return": float(np.prod(1 + r) - 1) if n else float("nan"),
    }


def sharpe_difference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Test of Sharpe(a) = Sharpe(b) on paired daily returns.

    ``sharpe_diff`` is the annualised difference; ``sharpe_diff_pvalue`` the two-sided p-value of
    Ledoit and Wolf (2008) with a HAC (Newey-West) variance of the delta method, robust to fat
    tails and serial correlation; ``sharpe_diff_pvalue_jkm`` Jobson and Korkie's test with Memmel's
    (2003) correction, which assumes i.i.d. normal returns.
    """
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    t = len(a)
    nan = {"sharpe_diff": float("nan"), "sharpe_diff_pvalue": float("nan"), "sharpe_diff_pvalue_jkm": float("nan")}
    if t < 30 or np.std(a) == 0 or np.std(b) == 0:
        return nan
    mu1, mu2 = a.mean(), b.mean()
    g1, g2 = (a**2).mean(), (b**2).mean()
    s1, s2 = np.sqrt(g1 - mu1**2), np.sqrt(g2 - mu2**2)
    diff = mu1 / s1 - mu2 / s2
    grad = np.array([g1 / s1**3, -g2 / s2**3, -mu1 / (2 * s1**3), mu2 / (2 * s2**3)])
    y = np.column_stack([a - mu1, b - mu2, a**2 - g1, b**2 - g2])
    se = float(np.sqrt(max(grad @ hac_covariance(y) @ grad, 0.0) / t))
    if se > 0:
        p_lw = float(2 * stats.norm.sf(abs(diff) / se))
    else:  # no sampling variance of the difference: equal Sharpe ratios (a scaled copy) are no evidence of one
        p_lw = 1.0 if abs(diff) < 1e-12 else float("nan")
    sr1, sr2 = mu1 / s1, mu2 / s2
    rho = float(np.corrcoef(a, b)[0, 1])
    v = (2 - 2 * rho + 0.5 * (sr1**2 + sr2**2 - 2 * sr1 * sr2 * rho**2)) / t
    p_jkm = float(2 * stats.norm.sf(abs(diff) / np.sqrt(v))) if v > 0 else float("nan")
    return {"sharpe_diff": float(diff * np.sqrt(TRADING_DAYS)), "sharpe_diff_pvalue": p_lw,
            "sharpe_diff_pvalue_jkm": p_jkm}


class Portfolio(Task):
    def make_targets(self, panel: pd.DataFrame) -> pd.DataFrame:
        close = panel["close"].astype(float)
        out = pd.DataFrame({"target": close.groupby(level="entity").shift(-1) / close - 1}, index=panel.index)
        col = self.config.benchmark
        if col in panel.columns:
            bench = panel[col].astype(float)
            out["target_benchmark"] = bench.groupby(level="entity").shift(-1) / bench - 1
        return out

    def label_horizon(self) -> int:
        return 1

    def prediction_columns(self) -> tuple[str, ...]:
        return ("weight",)

    def column_ranges(self) -> dict[str, tuple[float, float]]:
        return {"weight": (0.0, self.config.max_weight or 1.0)}

    # the risk layer and the calendar, for models and the backtest alike --------------
    def rebalance_dates(self, timestamps: pd.Index) -> pd.DatetimeIndex:
        """The task's rebalance dates among ``timestamps`` (the first bar of each period)."""
        return rebalance_dates(timestamps, self.config.rebalance)

    def constrain(self, target: pd.Series, holdings: pd.Series | None = None) -> pd.Series:
        """The risk layer: long-only, fully invested, ``max_weight``, then ``max_turnover`` from ``holdings``.

        The weight cap is a hard limit: when drifted holdings are above it, the turnover cap
        yields to the trade that brings them back under.
        """
        capped = cap_weights(target, self.config.max_weight)
        if self.config.max_turnover is None or holdings is None:
            return capped
        moved = limit_turnover(capped, holdings, self.config.max_turnover)
        if self.config.max_weight is not None and (moved > self.config.max_weight + 1e-9).any():
            moved = cap_weights(moved, self.config.max_weight)
        return moved.reindex(capped.index.union(moved.index), fill_value=0.0)

    def check_predictions(self, pred: pd.DataFrame, rows: pd.Index | None = None) -> list[str]:
        """The base checks, and per date: weights (with any benchmark share) sum to one."""
        problems = super().check_predictions(pred, rows)
        if problems:
            return problems
        sub = pred if rows is None else pred.loc[rows]
        if "timestamp" not in (sub.index.names or []):
            return problems  # one served answer: the sum is a property of a whole date
        total = sub["weight"].groupby(level="timestamp").sum()
        if "benchmark_weight" in sub.columns:
            total = total + sub["benchmark_weight"].groupby(level="timestamp").first().fillna(0.0)
        bad = total[(total - 1).abs() > 1e-6]
        if len(bad):
            problems.append(f"weight: on {len(bad)} of {len(total)} dates the weights sum to {bad.iloc[0]:.6f}, "
                            f"not 1 (first: {bad.index[0].date()}); a portfolio is fully invested")
        return problems

    # scoring -------------------------------------------------------------------------
    def score(self, oos: pd.DataFrame, n_boot: int, seed: int) -> dict[str, float]:
        return portfolio_metrics(backtest(oos, self), self.config.risk_free, n_boot, seed)

    def compare(self, oos: pd.DataFrame, reference: pd.DataFrame) -> dict[str, float]:
        """The Sharpe difference against the reference (equal_weight, 1/N) on the days both are invested."""
        mine, ref = backtest(oos, self), backtest(reference, self)
        both = pd.concat({"a": mine.loc[mine["invested"], "net"], "b": ref.loc[ref["invested"], "net"]},
                         axis=1).dropna()
        rf = (1 + self.config.risk_free) ** (1 / TRADING_DAYS) - 1  # excess returns, as the Sharpe ratios use
        return sharpe_difference(both["a"].to_numpy() - rf, both["b"].to_numpy() - rf)

    def performance_row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        return {"sharpe_ratio": metrics.get("sharpe"), "max_drawdown": metrics.get("max_drawdown"),
                "average_return": metrics.get("cagr"), "return_volatility": metrics.get("volatility"),
                "total_predictions": int(metrics.get("n", 0) or 0)}

    # serving -------------------------------------------------------------------------
    def describe(self, values: Mapping[str, float]) -> dict[str, Any]:
        return {"rebalance": self.config.rebalance,
                "meaning": "the instrument's weight in the model's target portfolio as of its latest rebalance "
                           "date (long-only, fully invested); /portfolio/weights gives the whole portfolio"}

    def log_fields(self, values: Mapping[str, float]) -> dict[str, Any]:
        return {"prediction_value": float(values["weight"]), "prediction_probability": None,
                "prediction_class": None}

    def score_outcome(self, logged: Mapping[str, Any], actual: float) -> tuple[bool | None, float | None]:
        """``actual`` is the instrument's realised return over the holding period; a weight alone is not scored."""
        if not np.isfinite(actual):
            raise ValueError(f"a portfolio outcome is the instrument's realised return, got {actual}")
        return None, None


# baselines ---------------------------------------------------------------------
@dataclass
class NoLookback:
    min_history: int = 1

    def validate(self) -> str | None:
        return None if self.min_history >= 1 else f"min_history must be at least 1, got {self.min_history}"


@dataclass
class LookbackConfig:
    lookback: int = 252  # bars of daily returns each decision estimates from
    min_history: int = 126  # the fewest return bars an entity needs to be held

    def validate(self) -> str | None:
        if self.min_history < 2 or self.lookback < self.min_history:
            return f"need 2 <= min_history <= lookback, got min_history={self.min_history}, lookback={self.lookback}"
        return None


@dataclass
class MinVarianceConfig(LookbackConfig):
    covariance: Literal["empirical", "ledoit_wolf"] = "ledoit_wolf"  # skfolio's prior estimator


class EqualWeight(WeightsModel, JsonStateModel):
    """1/N: every entity priced on the rebalance date, equally."""

    def lookback(self) -> int:
        return 2

    def fit(self, data, valid=None):
        self.state_ = {}

    def decide(self, history, date, holdings):
        return pd.Series(1.0, index=history.columns)


class InverseVolatility(WeightsModel, JsonStateModel):
    """Weights in proportion to 1 / the standard deviation of the last ``lookback`` daily returns."""

    def fit(self, data, valid=None):
        self.state_ = {}

    def decide(self, history, date, holdings):
        sd = history.std(ddof=1)
        return 1.0 / sd.where(sd > 0)


class MinimumVariance(WeightsModel, JsonStateModel):
    """skfolio's minimum-variance portfolio (long-only, fully invested) on the last ``lookback`` returns."""

    def fit(self, data, valid=None):
        self.state_ = {}

    def decide(self, history, date, holdings):
        from skfolio import RiskMeasure
        from skfolio.moments import LedoitWolf
        from skfolio.optimization import MeanRisk, ObjectiveFunction
        from skfolio.prior import EmpiricalPrior

        x = history.fillna(0.0)
        cap = self.task.config.max_weight
        if cap is not None:
            cap_weights(pd.Series(1.0, index=x.columns), cap)  # a cap no portfolio can meet: the clear error
        prior = EmpiricalPrior(covariance_estimator=LedoitWolf()) if self.config.covariance == "ledoit_wolf" \
            else EmpiricalPrior()
        model = MeanRisk(objective_function=ObjectiveFunction.MINIMIZE_RISK, risk_measure=RiskMeasure.VARIANCE,
                         prior_estimator=prior, max_weights=self.task.config.max_weight or 1.0)
        model.fit(x)
        return pd.Series(model.weights_, index=x.columns)


class IndexBuyHold(WeightsModel, JsonStateModel):
    """The benchmark index, bought once and held (``benchmark_weight`` 1, no stock)."""

    def lookback(self) -> int:
        return 2

    def fit(self, data, valid=None):
        self.state_ = {}

    def predict_from(self, data, start):
        col = self.require_task().config.benchmark
        out = super().predict_from(data, start)
        if col not in data.columns:  # no benchmark in this data: nothing to hold, no answer
            return out.assign(weight=np.nan, benchmark_weight=np.nan)
        return out

    def decide(self, history, date, holdings):
        raw = pd.Series(0.0, index=history.columns)
        raw.attrs["benchmark_weight"] = 1.0
        return raw


def _baseline(name, cls, desc, config_cls) -> ModelSpec:
    cls.spec = ModelSpec(name=name, family="baseline", task="portfolio",
                         capabilities=frozenset({"multi_asset", "sequential", "cross_sectional"}),
                         config_cls=config_cls,
                         factory=cls, description=desc, baseline=True)
    return cls.spec


BASELINES = [
    _baseline("equal_weight", EqualWeight, "1/N: every stock equally, rebalanced", NoLookback),
    _baseline("inverse_vol", InverseVolatility, "weights in proportion to 1 / volatility of the last year",
              LookbackConfig),
    _baseline("min_variance", MinimumVariance, "skfolio minimum variance on the last year (Ledoit-Wolf)",
              MinVarianceConfig),
    _baseline("index_buy_hold", IndexBuyHold, "the benchmark index, bought and held", NoLookback),
]

Portfolio.spec = TaskSpec(
    name="portfolio",
    description="target weights per stock at each rebalance date, scored by a backtest net of costs",
    config_cls=PortfolioConfig,
    factory=Portfolio,
    primary_metric="sharpe",
    higher_is_better=True,
    baselines=(Baseline("equal_weight", "equal_weight"), Baseline("inverse_vol", "inverse_vol"),
               Baseline("min_variance", "min_variance"), Baseline("index", "index_buy_hold")),
    headline=("sharpe", "sharpe_diff_pvalue", "cagr", "volatility", "sortino", "max_drawdown", "calmar",
              "turnover", "cost_drag"),
    # a weight cap in the example: every model's contract checks then show that its weights hold it
    example=TaskExample("sp500_stocks", "2011-01-01", "2016-12-31", config={"max_weight": 0.3},
                        panel="sp500_stocks", entities=("AAPL", "JNJ", "JPM", "KO", "XOM", "WMT")),
    reference="equal_weight",
    data="sp500_stocks",
    demo=("experiment=portfolio_stocks",),
)


@hookimpl
def treum_tasks() -> list[TaskSpec]:
    return [Portfolio.spec]


@hookimpl
def treum_models() -> list[ModelSpec]:
    return list(BASELINES)
