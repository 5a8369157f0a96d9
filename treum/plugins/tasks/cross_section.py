"""Cross-section: rank the stocks of a universe against each other, day by day.

Labels (per stock-day, from the whole panel): ``target_ret`` is the forward
``horizon``-bar log return in percent, ``100 * log(close[t+h] / close[t])``;
``target`` its cross-sectional percentile rank among the stocks labelled that
day, in [0, 1]; ``target_up`` is 1 when the stock's forward return is above the
day's median, 0 below (NaN at the median). A forward return of exactly zero is
a tie (coarse 1990s price ticks): with ``ties=drop`` (the default, as in the
direction task) the stock-day has no label at all, neither trained on nor
scored; with ``ties=keep`` it is a return of zero, ranked with average ranks.

Prediction: ``score``, any real number, higher = expected to outperform; only
its ranks within a day matter. Scoring: the daily Spearman rank IC (mean,
Newey-West t-statistic, ICIR) and a top-minus-bottom quantile long-short
portfolio, net of costs. Baselines: 12-1 momentum, one-month reversal and
LightGBM on the technical features (the reference).
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
from treum.core.targets import forward_return
from treum.core.task import Task
from treum.zoo.gbm import GBMDirection

TRADING_DAYS = 252


@dataclass
class CrossSectionConfig:
    horizon: int = 1  # label horizon in bars: target_ret looks from close[t] to close[t+horizon]
    quantiles: int = 5  # the long-short buys the top 1/quantiles of the day's stocks, sells the bottom
    cost_bps: float = 10.0  # cost per unit of turnover (one-way), in basis points
    ties: Literal["drop", "keep"] = "drop"  # a forward return of exactly 0: no label (drop) or a zero return
    min_stocks: int | None = None  # fewest stocks a day needs to be scored; None = max(3, quantiles)

    def validate(self) -> str | None:
        if self.horizon < 1:
            return f"horizon must be at least 1 bar, got {self.horizon}"
        if self.quantiles < 2:
            return f"quantiles must be at least 2 (top and bottom), got {self.quantiles}"
        if self.cost_bps < 0:
            return f"cost_bps cannot be negative, got {self.cost_bps}"
        if self.min_stocks is not None and self.min_stocks < max(3, self.quantiles):
            return f"min_stocks must be at least max(3, quantiles={self.quantiles}), got {self.min_stocks}"
        return None

    @property
    def day_minimum(self) -> int:
        return int(self.min_stocks if self.min_stocks is not None else max(3, self.quantiles))


# labels ------------------------------------------------------------------------
def cross_section_targets(panel: pd.DataFrame, horizon: int, ties: str = "drop") -> pd.DataFrame:
    """``target_ret``, its daily percentile rank ``target`` and ``target_up`` (above the day's median)."""
    if ties not in ("drop", "keep"):
        raise ValueError(f"ties must be 'drop' or 'keep', got {ties!r}")
    ret = forward_return(panel, horizon)
    if ties == "drop":
        ret = ret.mask(ret == 0)
    day = ret.groupby(level="timestamp")
    n = day.transform("count")
    rank = (day.rank(method="average") - 1) / (n - 1).where(n > 1)
    median = day.transform("median")
    up = pd.Series(np.where(ret > median, 1.0, np.where(ret < median, 0.0, np.nan)), index=panel.index)
    up[ret.isna() | (n < 2)] = np.nan
    return pd.DataFrame({"target": rank, "target_ret": ret, "target_up": up}, index=panel.index)


# metrics -----------------------------------------------------------------------
def daily_rank_ic(frame: pd.DataFrame, score: str = "score", ret: str = "target_ret", min_stocks: int = 5) -> pd.Series:
    """Spearman correlation of ``score`` with ``ret`` across the stocks of each day.

    Ties get average ranks (so a day with tied returns is scored as scipy's
    ``spearmanr`` would). Days with fewer than ``min_stocks`` stocks holding both
    values, or with a constant score or return, are left out (not counted as 0).
    """
    sub = frame[[score, ret]].dropna()
    ts = sub.index.get_level_values("timestamp")
    g = sub.groupby(ts)
    x = g[score].rank(method="average")
    y = g[ret].rank(method="average")
    parts = pd.DataFrame({"x": x, "y": y, "xy": x * y, "xx": x * x, "yy": y * y}).groupby(ts)
    s = parts.sum()
    n = parts.size()
    cov = s["xy"] - s["x"] * s["y"] / n
    vx = s["xx"] - s["x"] ** 2 / n
    vy = s["yy"] - s["y"] ** 2 / n
    ok = (n >= min_stocks) & (vx > 1e-12) & (vy > 1e-12)
    ic = cov[ok] / np.sqrt(vx[ok] * vy[ok])
    ic.index.name = "timestamp"
    return ic.astype(float)


def newey_west_t(x: np.ndarray, lags: int) -> tuple[float, float]:
    """(t-statistic of the mean, two-sided p-value) with a Newey-West (Bartlett) variance of ``lags`` lags."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 10:
        return float("nan"), float("nan")
    var = hac_covariance(x, lags)
    if var <= 0:
        return float("nan"), float("nan")
    t = float(x.mean() / np.sqrt(var / n))
    return t, float(2 * stats.t.sf(abs(t), df=n - 1))


def long_short(frame: pd.DataFrame, horizon: int, quantiles: int, cost_bps: float, min_stocks: int,
               score: str = "score", ret: str = "target_ret") -> pd.DataFrame:
    """Top-minus-bottom quantile portfolio rebalanced every ``horizon`` scored days.

    On each rebalance day the stocks are sorted by score; the top ``n // quantiles``
    (at least one) get weight +1/k each and the bottom ones -1/k (gross 2; equal scores
    keep the frame's row order). The period return is the mean simple ``horizon``-bar
    return of the longs minus that of the shorts; the cost is ``cost_bps`` per unit of
    turnover, ``sum |w_new - w_old|`` (the first rebalance from cash). The scored days
    are those with at least ``min_stocks`` stocks and a score that is not constant.
    Returns one row per rebalance day: gross, turnover, net (fractions).
    """
    sub = frame[[score, ret]].dropna()
    cols = ["gross", "turnover", "net"]
    if sub.empty:
        return pd.DataFrame(columns=cols, index=pd.DatetimeIndex([], name="timestamp"))
    days, day = np.unique(sub.index.get_level_values("timestamp").values, return_inverse=True)
    entities, ent = np.unique(sub.index.get_level_values("entity").astype(str), return_inverse=True)
    s = sub[score].to_numpy(dtype=float)
    r = np.expm1(sub[ret].to_numpy(dtype=float) / 100.0)
    n = np.bincount(day, minlength=len(days))
    lo = np.full(len(days), np.inf)
    hi = np.full(len(days), -np.inf)
    np.minimum.at(lo, day, s)
    np.maximum.at(hi, day, s)
    kept = np.flatnonzero((n >= min_stocks) & (hi > lo))[::horizon]
    pick = np.isin(day, kept)
    day, ent, s, r = day[pick], ent[pick], s[pick], r[pick]
    rows = np.arange(len(s))
    order = np.lexsort((rows, s, day))  # by day, then score, then row order
    day, ent, s, r = day[order], ent[order], s[order], r[order]
    first = np.searchsorted(day, day, side="left")
    pos = np.arange(len(day)) - first  # rank within the day, 0 = lowest score
    count = n[day]
    k = np.maximum(1, count // quantiles)
    w = np.where(pos >= count - k, 1.0 / k, np.where(pos < k, -1.0 / k, 0.0))
    slot = np.searchsorted(kept, day)
    gross = np.bincount(slot, weights=w * r, minlength=len(kept))
    weights = np.zeros((len(kept), len(entities)))
    weights[slot, ent] = w
    turnover = np.abs(np.diff(weights, axis=0, prepend=0.0)).sum(axis=1)
    out = pd.DataFrame({"gross": gross, "turnover": turnover, "net": gross - turnover * cost_bps / 1e4},
                       index=pd.DatetimeIndex(days[kept], name="timestamp"))
    return out


def cross_section_metrics(oos: pd.DataFrame, cfg: CrossSectionConfig, n_boot: int = 500, seed: int = 0,
                          score: str = "score") -> dict[str, float]:
    """Daily rank IC (mean, Newey-West t, ICIR, bootstrap CI) and the long-short portfolio's figures."""
    sub = oos[oos["target_ret"].notna() & oos[score].notna()]
    ic = daily_rank_ic(sub, score, "target_ret", cfg.day_minimum)
    values = ic.to_numpy()
    mean = float(values.mean()) if len(values) else float("nan")
    sd = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    t, p = newey_west_t(values, cfg.horizon - 1)
    lo, hi = block_bootstrap_ci(lambda i: float(values[i].mean()), len(values), n_boot, seed=seed)
    scored = sub[sub.index.get_level_values("timestamp").isin(ic.index)]
    ls = long_short(sub, cfg.horizon, cfg.quantiles, cfg.cost_bps, cfg.day_minimum, score)
    periods = TRADING_DAYS / cfg.horizon
    net = ls["net"].to_numpy()
    ls_sd = float(net.std(ddof=1)) if len(net) > 1 else float("nan")
    return {
        "n": float(len(scored)),
        "days": float(len(values)),
        "ic": mean,
        "ic_t": t,
        "ic_pvalue": p,
        "ic_std": sd,
        "icir": mean / sd if sd and np.isfinite(sd) and sd > 0 else float("nan"),
        "ic_ci_low": lo,
        "ic_ci_high": hi,
        "ic_hit_rate": float((values > 0).mean()) if len(values) else float("nan"),
        "ls_return": float(net.mean() * periods * 100) if len(net) else float("nan"),
        "ls_gross_return": float(ls["gross"].mean() * periods * 100) if len(net) else float("nan"),
        "ls_sharpe": float(net.mean() / ls_sd * np.sqrt(periods)) if ls_sd and np.isfinite(ls_sd) and ls_sd > 0
        else float("nan"),
        "ls_turnover": float(ls["turnover"].mean()) if len(net) else float("nan"),
    }


class CrossSection(Task):
    def make_targets(self, panel: pd.DataFrame) -> pd.DataFrame:
        return cross_section_targets(panel, self.config.horizon, self.config.ties)

    def label_horizon(self) -> int:
        return self.config.horizon

    def prediction_columns(self) -> tuple[str, ...]:
        return ("score",)

    def score(self, oos: pd.DataFrame, n_boot: int, seed: int) -> dict[str, float]:
        return cross_section_metrics(oos, self.config, n_boot, seed)

    def compare(self, oos: pd.DataFrame, reference: pd.DataFrame) -> dict[str, float]:
        """Paired test of daily IC differences against the reference, on the days both are scored.

        ``ic_diff`` is the mean of IC(model) - IC(reference) per day; ``ic_diff_t`` and
        ``ic_diff_pvalue`` use a Newey-West variance with ``horizon - 1`` lags.
        """
        m = self.config.day_minimum
        mine = daily_rank_ic(oos[oos["target_ret"].notna()], "score", "target_ret", m)
        ref = daily_rank_ic(reference[reference["target_ret"].notna()], "score", "target_ret", m)
        both = pd.concat({"a": mine, "b": ref}, axis=1).dropna()
        d = (both["a"] - both["b"]).to_numpy()
        if len(d) == 0 or np.allclose(d, 0):
            return {"ic_diff": float(d.mean()) if len(d) else float("nan"), "ic_diff_t": float("nan"),
                    "ic_diff_pvalue": float("nan")}
        t, p = newey_west_t(d, self.config.horizon - 1)
        return {"ic_diff": float(d.mean()), "ic_diff_t": t, "ic_diff_pvalue": p}

    def performance_row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        return {"sharpe_ratio": metrics.get("ls_sharpe"), "average_return": metrics.get("ls_return"),
                "win_rate": metrics.get("ic_hit_rate"), "total_predictions": int(metrics.get("n", 0) or 0)}

    def describe(self, values: Mapping[str, float]) -> dict[str, Any]:
        h = self.config.horizon
        return {"horizon": f"{h} bar{'s' if h > 1 else ''}",
                "meaning": "a cross-sectional score: only its rank among the universe's stocks on the same day "
                           "matters (higher = expected to outperform them)"}

    def log_fields(self, values: Mapping[str, float]) -> dict[str, Any]:
        return {"prediction_value": float(values["score"]), "prediction_probability": None,
                "prediction_class": None}

    def score_outcome(self, logged: Mapping[str, Any], actual: float) -> tuple[bool | None, float | None]:
        """``actual`` is the realised forward log return in percent; one stock alone cannot score a ranking.

        A cross-sectional score is right or wrong only against the other stocks of the
        same day (the walk-forward's IC does that), so the outcome is stored, unscored.
        """
        if not np.isfinite(actual):
            raise ValueError(f"a cross_section outcome is the realised forward return in percent, got {actual}")
        return None, None


# baselines ---------------------------------------------------------------------
@dataclass
class MomentumConfig:
    lookback: int = 252  # bars back to the start of the formation window
    skip: int = 21  # the most recent bars left out (the one-month reversal)

    def validate(self) -> str | None:
        if not 0 <= self.skip < self.lookback:
            return f"need 0 <= skip < lookback, got skip={self.skip}, lookback={self.lookback}"
        return None


@dataclass
class ReversalConfig:
    window: int = 21

    def validate(self) -> str | None:
        return None if self.window >= 1 else f"window must be at least 1, got {self.window}"


class Momentum(JsonStateModel):
    """12-1 momentum: log(close[t-skip] / close[t-lookback]); nothing to learn."""

    def fit(self, data, valid=None):
        self.state_ = {}

    def predict(self, data):
        logp = np.log(data["close"].astype(float)).groupby(level="entity")
        return pd.DataFrame({"score": logp.shift(self.config.skip) - logp.shift(self.config.lookback)},
                            index=data.index)


class Reversal(JsonStateModel):
    """One-month reversal: minus the log return of the last ``window`` bars."""

    def fit(self, data, valid=None):
        self.state_ = {}

    def predict(self, data):
        logp = np.log(data["close"].astype(float))
        return pd.DataFrame({"score": -(logp - logp.groupby(level="entity").shift(self.config.window))},
                            index=data.index)


@dataclass
class GBMTechnicalConfig:
    objective: Literal["regression", "lambdarank"] = "regression"
    n_estimators: int = 300
    learning_rate: float = 0.03
    num_leaves: int = 15
    min_child_samples: int = 200
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 5.0
    early_stopping_rounds: int = 50
    num_threads: int = 1  # 160k rows at most; two OpenMP threads beside torch's run slower than one
    seed: int = 0

    def validate(self) -> str | None:
        if not 0 < self.learning_rate <= 1:
            return f"learning_rate must be in (0, 1], got {self.learning_rate}"
        if self.num_leaves < 2:
            return f"num_leaves must be at least 2, got {self.num_leaves}"
        return None


def _ranked_rows(data: pd.DataFrame, features: list[str], relevance: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, group sizes) of rows with every feature and ``target`` present, sorted by day.

    ``y`` is the day's percentile rank of the forward return (``target``); for lambdarank
    it becomes an integer relevance 0..4 (the quintile).
    """
    sub = data[features + ["target"]].dropna().sort_index(level="timestamp", sort_remaining=True)
    y = sub["target"].to_numpy(dtype=float)
    if relevance:
        y = np.minimum((y * 5).astype(int), 4).astype(float)
    groups = sub.groupby(level="timestamp", sort=True).size().to_numpy()
    return sub[features].to_numpy(dtype=float), y, groups


class GBMTechnical(GBMDirection):
    """LightGBM on the technical features, trained on the day's percentile rank of the forward return."""

    prediction = "score"

    def fit(self, data, valid=None):
        import lightgbm as lgb

        cfg = self.config
        self.feature_matrix(data)  # fixes features_ (and refuses data without f_* columns)
        rank = cfg.objective == "lambdarank"
        x, y, groups = _ranked_rows(data, self.features_, rank)
        params = {
            "objective": cfg.objective, "learning_rate": cfg.learning_rate, "num_leaves": cfg.num_leaves,
            "min_child_samples": cfg.min_child_samples, "feature_fraction": cfg.feature_fraction,
            "bagging_fraction": cfg.bagging_fraction, "bagging_freq": cfg.bagging_freq, "lambda_l2": cfg.lambda_l2,
            "num_threads": cfg.num_threads, "seed": cfg.seed, "deterministic": True, "force_row_wise": True,
            "verbosity": -1,
        }
        if rank:
            params.update({"metric": "ndcg", "eval_at": [5], "label_gain": [0, 1, 2, 3, 4]})
        train_set = lgb.Dataset(x, y, group=groups if rank else None, feature_name=self.features_)
        valid_sets, callbacks = [], []
        if valid is not None and len(valid) and valid["target"].notna().any():
            vx, vy, vg = _ranked_rows(valid, self.features_, rank)
            valid_sets = [lgb.Dataset(vx, vy, group=vg if rank else None, reference=train_set)]
            callbacks.append(lgb.early_stopping(cfg.early_stopping_rounds, verbose=False))
        self.booster_ = lgb.train(params, train_set, num_boost_round=cfg.n_estimators, valid_sets=valid_sets,
                                  callbacks=callbacks)

    # predict, feature_importance, save_weights and load_weights: GBMDirection's, in column ``score``


def _baseline(name, cls, desc, config_cls, caps, family="baseline") -> ModelSpec:
    cls.spec = ModelSpec(name=name, family=family, task="cross_section", capabilities=frozenset(caps),
                         config_cls=config_cls, factory=cls, description=desc, baseline=True)
    return cls.spec


BASELINES = [
    _baseline("momentum_12_1", Momentum, "12-1 momentum: the return from t-252 to t-21", MomentumConfig,
              ("multi_asset", "sequential")),
    _baseline("reversal_1m", Reversal, "one-month reversal: minus the last 21 bars' return", ReversalConfig,
              ("multi_asset", "sequential")),
    _baseline("gbm_technical", GBMTechnical, "LightGBM on the technical features, fitted to the day's rank "
              "of the forward return", GBMTechnicalConfig,
              ("multi_asset", "uses_features", "native_importance"), family="gradient_boosting"),
]

CrossSection.spec = TaskSpec(
    name="cross_section",
    description="rank the universe's stocks by their forward return, day by day (rank IC, long-short)",
    config_cls=CrossSectionConfig,
    factory=CrossSection,
    primary_metric="ic",
    higher_is_better=True,
    baselines=(Baseline("momentum_12_1", "momentum_12_1"), Baseline("reversal_1m", "reversal_1m"),
               Baseline("gbm_technical", "gbm_technical")),
    headline=("ic", "ic_t", "icir", "ic_ci_low", "ic_ci_high", "ls_return", "ls_sharpe", "days"),
    example=TaskExample("sp500_stocks", "2012-01-01", "2016-12-31", panel="sp500_stocks",
                        entities=("AAPL", "BAC", "JNJ", "JPM", "KO", "MSFT", "WMT", "XOM")),
    reference="gbm_technical",
    data="sp500_stocks",
    demo=("eval.refit_every=504",),  # 7 refits over 2010-2022 keep the demo's leaderboard near a minute
)


@hookimpl
def treum_tasks() -> list[TaskSpec]:
    return [CrossSection.spec]


@hookimpl
def treum_models() -> list[ModelSpec]:
    return list(BASELINES)
