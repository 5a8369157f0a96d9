"""Anomaly (market stress): the chance that a stress episode begins within the next ``horizon`` bars.

An episode is defined from the entity's closes alone, by a causal state machine
(the state at t depends on closes up to t only):

- ``episode: drawdown`` (default): an episode **begins** on the first close at
  least ``drawdown`` (10%) below the running peak, the highest close since the
  start of the data or since the last episode ended. It **ends** on the first
  later close that regains that peak, or on its ``max_episode_bars``-th bar
  (63) after the start, whichever comes first; the end bar is calm again and the
  running peak restarts from its close (so a bear market that keeps falling
  makes a new episode after a fresh 10% fall).
- ``episode: volatility``: realised volatility (the standard deviation of the
  last ``vol_window`` percent log returns) above its threshold, the
  ``vol_quantile`` (95th percentile) of every realised volatility up to that bar
  (an expanding, point-in-time quantile, from ``vol_min_history`` bars on).
  Each fold's training labels therefore use a threshold computed from training
  data only, and the labels are the same in every fold. It begins on the first
  bar above the threshold and ends on the first bar back at or below it (or
  after ``max_episode_bars``).

Labels: ``target_stress`` at t is NaN inside an episode (from its start bar to
the bar before its end: those bars are stress, not "before" it, and are
neither trained on nor scored), 1 if an episode begins in bars t+1..t+h, 0 if
none does and t+h is in the data, NaN otherwise. ``target_lead`` is the number
of bars from t to that start (1..h), NaN elsewhere; scoring uses it for lead
times. Labels look ``horizon`` bars ahead: the walk-forward's purge covers them.

Prediction: ``p_stress`` in [0, 1], a score (higher = more stress ahead).

Scoring: ``ap`` (average precision, primary), ``base_rate``; at an equal alert
budget (each model alerts on its top ``alert_rate`` share of the scored rows):
``precision_at_alert``, ``lead_time_median`` (bars from the first alert in the
``horizon`` bars before each episode to its start), ``episodes``,
``episodes_missed`` and ``false_alarms_per_year`` (alert onsets on rows with no
episode ahead, per 252 scored rows). ``compare`` against the reference
``vol_zscore``: the moving-block bootstrap interval of the AP difference
(``ap_diff``, ``ap_diff_lo``, ``ap_diff_hi``; blocks of ``horizon`` bars, seeded)
and ``precision_at_ref``, the model's precision when it alerts on as many rows
as the reference flags at its own threshold (``p_stress >= threshold``).

Baselines: ``vol_zscore`` (the reference), ``ma200_stress`` (the 200-day rule)
and ``vix_level`` (arch's VIX, 2014-2019 only: scored on fewer rows).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import average_precision_score

from treum.core.estimators import JsonStateModel, NoConfig
from treum.core.hookspecs import hookimpl
from treum.core.metrics import block_bootstrap_ci
from treum.core.specs import Baseline, ModelSpec, TaskExample, TaskSpec
from treum.core.task import Task


@dataclass
class AnomalyConfig:
    horizon: int = 21  # an episode must begin within bars t+1..t+horizon
    episode: Literal["drawdown", "volatility"] = "drawdown"
    drawdown: float = 0.10  # the fall from the running peak that begins an episode
    max_episode_bars: int = 63  # an episode ends after this many bars at the latest
    vol_window: int = 21  # realised volatility window (episode=volatility)
    vol_quantile: float = 0.95  # point-in-time quantile of realised volatility (episode=volatility)
    vol_min_history: int = 252  # bars of realised volatility before the quantile is defined
    alert_rate: float = 0.10  # share of scored rows each model alerts on (lead time, false alarms)
    threshold: float = 0.9  # p_stress at or above it is an alert: served label, the reference's own flag
    n_boot: int = 500  # bootstrap resamples of the AP difference in compare (0 = none)
    seed: int = 0

    def validate(self) -> str | None:
        if self.horizon < 1:
            return f"horizon must be at least 1 bar, got {self.horizon}"
        if not 0 < self.drawdown < 1:
            return f"drawdown must be in (0, 1) (0.10 = a 10% fall from the running peak), got {self.drawdown}"
        if self.max_episode_bars < 1:
            return f"max_episode_bars must be at least 1, got {self.max_episode_bars}"
        if self.vol_window < 2:
            return f"vol_window must be at least 2 bars, got {self.vol_window}"
        if not 0 < self.vol_quantile < 1:
            return f"vol_quantile must be in (0, 1), got {self.vol_quantile}"
        if self.vol_min_history < self.vol_window:
            return f"vol_min_history ({self.vol_min_history}) must be at least vol_window ({self.vol_window})"
        if not 0 < self.alert_rate < 1:
            return f"alert_rate must be in (0, 1), got {self.alert_rate}"
        if not 0 < self.threshold < 1:
            return f"threshold must be in (0, 1), got {self.threshold}"
        return None if self.n_boot >= 0 else f"n_boot cannot be negative, got {self.n_boot}"


# episodes ----------------------------------------------------------------------
def drawdown_episodes(close: np.ndarray, drawdown: float, max_bars: int) -> tuple[np.ndarray, list[int]]:
    """(in-episode mask, start positions) of drawdown episodes; see the module docstring for the rule."""
    c = np.asarray(close, dtype=float)
    inside = np.zeros(len(c), dtype=bool)
    starts: list[int] = []
    peak = -np.inf
    start = -1
    ep_peak = np.nan
    for i, x in enumerate(c):
        if start < 0:
            peak = max(peak, x)
            if x <= (1 - drawdown) * peak:
                start, ep_peak = i, peak
                starts.append(i)
                inside[i] = True
        elif x >= ep_peak or i - start >= max_bars:
            start, peak = -1, x  # the end bar is calm; the running peak restarts from it
        else:
            inside[i] = True
    return inside, starts


def realised_vol(close: np.ndarray, window: int) -> np.ndarray:
    """The standard deviation of the last ``window`` percent log returns, per bar (NaN in the warm-up)."""
    r = pd.Series(np.log(np.asarray(close, dtype=float))).diff() * 100.0
    return r.rolling(window, min_periods=window).std().to_numpy()


def volatility_episodes(close: np.ndarray, window: int, quantile: float, min_history: int,
                        max_bars: int) -> tuple[np.ndarray, list[int], np.ndarray]:
    """(in-episode mask, start positions, threshold per bar) of realised-volatility episodes.

    The threshold at t is the ``quantile`` of every realised volatility up to t
    (point in time), defined once ``min_history`` of them exist.
    """
    rv = realised_vol(close, window)
    thr = pd.Series(rv).expanding(min_periods=min_history).quantile(quantile).to_numpy()
    inside = np.zeros(len(rv), dtype=bool)
    starts: list[int] = []
    start = -1
    for i in range(len(rv)):
        if not np.isfinite(thr[i]):
            continue
        high = rv[i] > thr[i]
        if start < 0:
            if high:
                start = i
                starts.append(i)
                inside[i] = True
        elif not high or i - start >= max_bars:
            start = -1
        else:
            inside[i] = True
    return inside, starts, thr


def stress_labels(close: np.ndarray, cfg: AnomalyConfig) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(``target_stress``, ``target_lead``, episode starts) of one entity's closes."""
    if cfg.episode == "drawdown":
        inside, starts = drawdown_episodes(close, cfg.drawdown, cfg.max_episode_bars)
        known = np.ones(len(close), dtype=bool)
    else:
        inside, starts, thr = volatility_episodes(close, cfg.vol_window, cfg.vol_quantile, cfg.vol_min_history,
                                                  cfg.max_episode_bars)
        known = np.isfinite(thr)
    n, h = len(close), cfg.horizon
    lead = np.full(n, np.nan)
    for s in reversed(starts):  # the nearest start ahead wins: visit later starts first, overwrite with earlier
        lo = max(0, s - h)
        lead[lo:s] = s - np.arange(lo, s)
    y = np.where(np.isfinite(lead), 1.0, np.nan)
    # a 0 needs the whole window t+1..t+h observed and the episode rule defined on all of it
    first = int(np.argmax(known)) if known.any() else n
    t = np.arange(n)
    y[np.isnan(lead) & (t + h < n) & (t + 1 >= first)] = 0.0
    y[inside] = np.nan
    lead[inside] = np.nan
    return y, lead, starts


def episode_table(panel: pd.DataFrame, cfg: AnomalyConfig) -> pd.DataFrame:
    """Every episode of every entity: entity, start, end (the first calm bar, NaT if still open), bars, depth %."""
    rows = []
    for entity, g in panel.groupby(level="entity", sort=False):
        close = g["close"].to_numpy(dtype=float)
        ts = g.index.get_level_values("timestamp")
        if cfg.episode == "drawdown":
            inside, starts = drawdown_episodes(close, cfg.drawdown, cfg.max_episode_bars)
        else:
            inside, starts, _ = volatility_episodes(close, cfg.vol_window, cfg.vol_quantile, cfg.vol_min_history,
                                                    cfg.max_episode_bars)
        for s in starts:
            e = s
            while e < len(close) and inside[e]:
                e += 1
            rows.append({"entity": entity, "start": ts[s].date(), "end": ts[e].date() if e < len(close) else None,
                         "bars": e - s, "worst_close_vs_start_pct": round(100 * (close[s:e].min() / close[s] - 1), 1)})
    return pd.DataFrame(rows)


# metrics -------------------------------------------------------------------------
def _ap(y: np.ndarray, p: np.ndarray) -> float:
    return float(average_precision_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def top_share_alerts(p: np.ndarray, rate: float) -> np.ndarray:
    """Alerts on exactly ``ceil(rate * n)`` rows, the highest scores: an equal budget for every model.

    Rows above the cut all alert; rows tied at the cut (a 0/1 rule has nothing but ties) fill
    the rest of the budget, spread evenly over time, so that a coarse score neither alerts on
    every row nor on the earliest ones only.
    """
    n = len(p)
    alert = np.zeros(n, dtype=bool)
    k = min(n, int(np.ceil(rate * n)))
    if k == 0:
        return alert
    cut = np.sort(p)[n - k]  # the k-th highest score
    above = p > cut
    alert[above] = True
    tied = np.flatnonzero(p == cut)
    need = k - int(above.sum())
    if need > 0:
        alert[tied[np.linspace(0, len(tied) - 1, need).round().astype(int)]] = True
    return alert


def anomaly_metrics(frame: pd.DataFrame, alert_rate: float) -> dict[str, float]:
    """AP, base rate and the alert figures of ``p_stress`` against ``target_stress`` (see the module docstring).

    ``frame`` is one model's out-of-sample rows with ``p_stress``, ``target_stress`` and
    ``target_lead``, in time order per entity; rows lacking a score or a label are left out.
    """
    parts = []
    for _, g in frame.groupby(level="entity", sort=False):
        g = g.sort_index(level="timestamp")
        pos = np.arange(len(g))
        parts.append(pd.DataFrame({"y": g["target_stress"].to_numpy(dtype=float),
                                   "p": g["p_stress"].to_numpy(dtype=float),
                                   "lead": g["target_lead"].to_numpy(dtype=float), "pos": pos,
                                   "entity": str(g.index.get_level_values("entity")[0])}))
    if not parts:
        return {"n": 0.0, "ap": float("nan")}
    d = pd.concat(parts, ignore_index=True)
    d = d[np.isfinite(d["y"]) & np.isfinite(d["p"])].reset_index(drop=True)
    y, p = d["y"].to_numpy(dtype=int), d["p"].to_numpy()
    out: dict[str, float] = {"n": float(len(d)), "base_rate": float(y.mean()) if len(d) else float("nan"),
                             "ap": _ap(y, p)}
    alert = top_share_alerts(p, alert_rate)
    out["alert_rate"] = float(alert.mean()) if len(d) else float("nan")
    out["precision_at_alert"] = float(y[alert].mean()) if alert.any() else float("nan")
    # episodes: the rows labelled 1 before one start share entity and pos + lead
    d["alert"] = alert
    pos_rows = d[d["y"] == 1]
    leads = []
    episodes = missed = 0
    for _, ep in pos_rows.groupby([pos_rows["entity"], pos_rows["pos"] + pos_rows["lead"]]):
        episodes += 1
        hit = ep["lead"][ep["alert"]]
        if len(hit):
            leads.append(float(hit.max()))
        else:
            missed += 1
    out["episodes"] = float(episodes)
    out["episodes_missed"] = float(missed)
    out["lead_time_median"] = float(np.median(leads)) if leads else float("nan")
    # false alarms: alert onsets (an alert after a row without one) on rows with no episode ahead
    prev = np.r_[False, alert[:-1]] & (np.r_[-2, d["pos"].to_numpy()[:-1]] == d["pos"].to_numpy() - 1)
    onsets = alert & ~prev
    years = len(d) / 252.0
    out["false_alarms_per_year"] = float((onsets & (y == 0)).sum() / years) if years else float("nan")
    return out


class Anomaly(Task):
    def make_targets(self, panel: pd.DataFrame) -> pd.DataFrame:
        ys, leads = [], []
        for _, g in panel.groupby(level="entity", sort=False):
            y, lead, _ = stress_labels(g["close"].to_numpy(dtype=float), self.config)
            ys.append(pd.Series(y, index=g.index))
            leads.append(pd.Series(lead, index=g.index))
        return pd.DataFrame({"target_stress": pd.concat(ys).reindex(panel.index),
                             "target_lead": pd.concat(leads).reindex(panel.index)}, index=panel.index)

    def label_horizon(self) -> int:
        return self.config.horizon  # the episode state is causal: a label at t is decided by bar t+h

    def prediction_columns(self) -> tuple[str, ...]:
        return ("p_stress",)

    def column_ranges(self) -> dict[str, tuple[float, float]]:
        return {"p_stress": (0.0, 1.0)}

    def score(self, oos: pd.DataFrame, n_boot: int, seed: int) -> dict[str, float]:
        return anomaly_metrics(oos, self.config.alert_rate)

    def beats(self, model_metrics: Mapping[str, float], baseline_metrics: list[Mapping[str, float]]) -> bool:
        """As every task, against the baselines scored on at least the model's rows: average precision
        depends on the base rate, so a baseline scored on part of the test (``vix_level``, 2014-2019)
        is shown beside the others but does not gate validation."""
        n = model_metrics.get("n") or 0
        return super().beats(model_metrics, [b for b in baseline_metrics if (b.get("n") or 0) >= n])

    def compare(self, oos: pd.DataFrame, reference: pd.DataFrame) -> dict[str, float]:
        """AP difference to the reference on the rows both score, with its moving-block bootstrap interval."""
        joined = oos[["p_stress", "target_stress"]].join(reference[["p_stress"]], rsuffix="_ref", how="inner")
        joined = joined.dropna().sort_index(level=["entity", "timestamp"])
        y = joined["target_stress"].to_numpy(dtype=int)
        a, b = joined["p_stress"].to_numpy(), joined["p_stress_ref"].to_numpy()
        out = {"ap_diff": _ap(y, a) - _ap(y, b) if len(y) else float("nan")}
        out["ap_diff_lo"], out["ap_diff_hi"] = block_bootstrap_ci(
            lambda i: _ap(y[i], a[i]) - _ap(y[i], b[i]), len(y), self.config.n_boot, block=self.config.horizon,
            seed=self.config.seed)
        flagged = b >= self.config.threshold
        out["ref_alert_rate"] = float(flagged.mean()) if len(y) else float("nan")
        k = int(flagged.sum())
        if k:
            top = np.argsort(-a, kind="stable")[:k]
            out["precision_at_ref"] = float(y[top].mean())
        else:
            out["precision_at_ref"] = float("nan")
        return out

    def performance_row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        # the spec's table has no average-precision column: AP rides in the distribution's JSON
        return {"precision": metrics.get("precision_at_alert"),
                "total_predictions": int(metrics.get("n", 0) or 0),
                "prediction_distribution": {"average_precision": metrics.get("ap"),
                                            "alert_rate": metrics.get("alert_rate"),
                                            "base_rate": metrics.get("base_rate")}}

    def label(self, values: Mapping[str, float]) -> str:
        return "stress" if values["p_stress"] >= self.config.threshold else "calm"

    def describe(self, values: Mapping[str, float]) -> dict[str, Any]:
        cfg = self.config
        what = (f"a close {cfg.drawdown:.0%} below its running peak" if cfg.episode == "drawdown"
                else f"{cfg.vol_window}-bar realised volatility above its {cfg.vol_quantile:.0%} quantile")
        return {"horizon": f"{cfg.horizon} bars", "episode": what, "alert_threshold": cfg.threshold}

    def log_fields(self, values: Mapping[str, float]) -> dict[str, Any]:
        return {"prediction_value": None, "prediction_probability": float(values["p_stress"]),
                "prediction_class": self.label(values)}

    def score_outcome(self, logged: Mapping[str, Any], actual: float) -> tuple[bool | None, float | None]:
        """``actual`` is 1 if an episode began within the horizon, 0 if not."""
        if actual not in (0, 1):
            raise ValueError(f"a stress outcome is 1 (an episode began within the horizon) or 0, got {actual}")
        p = logged.get("prediction_probability")
        if p is None:
            return None, None
        return (p >= self.config.threshold) == (actual == 1), float(p) - float(actual)


# baselines ---------------------------------------------------------------------
@dataclass
class VolZscoreConfig:
    window: int = 21

    def validate(self) -> str | None:
        return None if self.window >= 2 else f"window must be at least 2 bars, got {self.window}"


def _log_vol(data: pd.DataFrame, window: int) -> pd.Series:
    parts = [pd.Series(np.log(realised_vol(g["close"].to_numpy(dtype=float), window)), index=g.index)
             for _, g in data.groupby(level="entity", sort=False)]
    return pd.concat(parts).reindex(data.index).replace([np.inf, -np.inf], np.nan)


class VolZscore(JsonStateModel):
    """Realised volatility's z-score against the training rows (in logs), mapped by the normal CDF."""

    def fit(self, data, valid=None):
        lv = _log_vol(self.join_valid(data, valid), self.config.window).dropna()
        self.state_ = {"mean": float(lv.mean()), "std": float(lv.std()) or 1.0}

    def predict(self, data):
        z = (_log_vol(data, self.config.window) - self.state_["mean"]) / self.state_["std"]
        return pd.DataFrame({"p_stress": stats.norm.cdf(z.to_numpy())}, index=data.index)


class Ma200Stress(JsonStateModel):
    """The 200-day rule: 1 while the close is below its 200-bar average, 0 above (NaN in the warm-up)."""

    def fit(self, data, valid=None):
        self.state_ = {"window": 200}

    def predict(self, data):
        w = self.state_["window"]
        close = data["close"].astype(float)
        ma = close.groupby(level="entity").transform(lambda s: s.rolling(w, min_periods=w).mean())
        return pd.DataFrame({"p_stress": np.where(ma.isna(), np.nan, (close < ma).astype(float))}, index=data.index)


class VixLevel(JsonStateModel):
    """The VIX close of the row's date (arch.data.vix), as its percentile among the training rows' VIX.

    NaN outside 2014-01-03..2019-01-03. With fewer than 21 VIX closes in the training
    rows (folds that end before 2014) the mapping is VIX / (VIX + 20), 0.5 at the
    VIX's long-run average of about 20: fixed, not fitted.
    """

    def fit(self, data, valid=None):
        from treum.plugins.features.cross_asset import vix_close

        ts = pd.DatetimeIndex(self.join_valid(data, valid).index.get_level_values("timestamp").unique())
        seen = vix_close().reindex(ts).dropna()
        self.state_ = {"train_vix": sorted(map(float, seen)) if len(seen) >= 21 else []}

    def predict(self, data):
        from treum.plugins.features.cross_asset import vix_close

        v = vix_close().reindex(pd.DatetimeIndex(data.index.get_level_values("timestamp"))).to_numpy()
        ref = np.asarray(self.state_["train_vix"], dtype=float)
        if len(ref):
            p = np.searchsorted(ref, v, side="right") / len(ref)
        else:
            p = v / (v + 20.0)
        return pd.DataFrame({"p_stress": np.where(np.isfinite(v), p, np.nan)}, index=data.index)


def _baseline(name, cls, desc, config_cls=NoConfig, caps=("multi_asset",)) -> ModelSpec:
    cls.spec = ModelSpec(name=name, family="baseline", task="anomaly", capabilities=frozenset(caps),
                         config_cls=config_cls, factory=cls, description=desc, baseline=True)
    return cls.spec


BASELINES = [
    _baseline("vol_zscore", VolZscore, "21-bar realised volatility's z-score (training, logs) through the normal CDF",
              VolZscoreConfig, ("multi_asset", "sequential", "probabilistic")),
    _baseline("ma200_stress", Ma200Stress, "the 200-day rule: 1 while the close is below its 200-bar average",
              caps=("multi_asset", "sequential")),
    _baseline("vix_level", VixLevel, "the VIX close as a training percentile (2014-2019 only)"),
]

Anomaly.spec = TaskSpec(
    name="anomaly",
    description="P(a stress episode, a 10% fall from the running peak, begins within 21 bars)",
    config_cls=AnomalyConfig,
    factory=Anomaly,
    primary_metric="ap",
    higher_is_better=True,
    baselines=(Baseline("vol_zscore", "vol_zscore"), Baseline("ma200_stress", "ma200_stress"),
               Baseline("vix_level", "vix_level")),
    headline=("ap", "ap_diff", "ap_diff_lo", "ap_diff_hi", "precision_at_ref", "lead_time_median",
              "episodes_missed", "false_alarms_per_year", "base_rate"),
    # 2008-2018: the 2008, 2010, 2011, 2015-16 and 2018 episodes; the tested last year (2018) has VIX data
    example=TaskExample("sp500_index", "2008-06-01", "2018-12-28", features="cross_asset", panel="sp500_stocks",
                        entities=("AAPL", "XOM")),
    reference="vol_zscore",
    data="sp500_index",
    demo=("features=cross_asset",),
)


@hookimpl
def treum_tasks() -> list[TaskSpec]:
    return [Anomaly.spec]


@hookimpl
def treum_models() -> list[ModelSpec]:
    return list(BASELINES)
