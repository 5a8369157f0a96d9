"""Recommendation: the chance that a user follows a signal and the trade pays, and whether to recommend it.

Rows are (day, ``<user>:<signal>``) pairs of the signals each user was offered (``users_sim``).
Label: ``target`` is 1 when the user followed the signal and it paid, 0 otherwise; it is decided
when the outcome is known, ``resolve_bars`` later (the purge); a follow whose outcome is not
known yet has no label. Prediction: ``p_hit`` in [0, 1]; the signal is recommended (pushed to
the user) when ``p_hit >= threshold``: the decision the fairness checks judge per segment.

Scoring: AUC, log loss and Brier score of ``p_hit``, and the precision, recall and selection
rate of the recommendation, each with a 95% bootstrap interval over days (whole days are
resampled, so a day's users move together). Baselines: each signal's hit rate in the training
data (the reference) and the overall base rate. The bandits of this task are also compared by
their regret in the simulator: ``treum bandits``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from treum.core.estimators import JsonStateModel, NoConfig
from treum.core.hookspecs import hookimpl
from treum.core.metrics import day_resample_ci
from treum.core.queries import check_resolution, quality_on_first_rows, split_entity
from treum.core.specs import Baseline, ModelSpec, TaskExample, TaskSpec
from treum.core.task import Task


@dataclass
class RecommendationConfig:
    threshold: float = 0.10  # recommend a signal when p_hit is at least this
    resolve_bars: int = 5  # bars until a follow's outcome is known: the labels' horizon (purge)
    k: int = 5  # NDCG@k of each user's day, the quality the fairness checks compare across segments

    def validate(self) -> str | None:
        if not 0 < self.threshold < 1:
            return f"threshold must be in (0, 1), got {self.threshold}"
        if self.resolve_bars < 0 or self.k < 1:
            return f"resolve_bars >= 0 and k >= 1 needed, got {self.resolve_bars}, {self.k}"
        return None


def hit_target(panel: pd.DataFrame) -> pd.Series:
    """1 followed and paid, 0 ignored or lost; NaN while a follow's outcome is unknown."""
    followed = panel["target_followed"].to_numpy(float)
    outcome = panel["target_outcome"].to_numpy(float)
    y = np.where((followed == 1) & (outcome > 0), 1.0, 0.0)
    y[((followed == 1) & ~np.isfinite(outcome)) | ~np.isfinite(followed)] = np.nan
    return pd.Series(y, index=panel.index)


def weighted_auc(groups: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """AUC with row weights (bootstrap counts); ``groups`` are the scores' ranks among distinct values (ties share)."""
    pos = np.bincount(groups, weights=w * y)
    neg = np.bincount(groups, weights=w * (1 - y))
    p, n = pos.sum(), neg.sum()
    if p == 0 or n == 0:
        return float("nan")
    below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
    return float((pos * (below + 0.5 * neg)).sum() / (p * n))


def recommendation_metrics(frame: pd.DataFrame, threshold: float, n_boot: int, seed: int) -> dict[str, float]:
    """AUC, log loss, Brier, precision, recall and selection rate, each with a 95% CI from resampled days."""
    sub = frame[["p_hit", "target"]].dropna()
    p = sub["p_hit"].to_numpy(float).clip(1e-6, 1 - 1e-6)
    y = sub["target"].to_numpy(float)
    sel = (sub["p_hit"].to_numpy(float) >= threshold).astype(float)
    day = pd.factorize(sub.index.get_level_values("timestamp"))[0]
    groups = np.unique(p, return_inverse=True)[1]
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))

    def figures(w: np.ndarray) -> dict[str, float]:
        tw = w.sum()
        chosen = (w * sel).sum()
        return {"auc": weighted_auc(groups, y, w), "log_loss": float((w * loss).sum() / tw),
                "brier": float((w * (p - y) ** 2).sum() / tw),
                "precision": float((w * sel * y).sum() / chosen) if chosen else float("nan"),
                "recall": float((w * sel * y).sum() / (w * y).sum()) if (w * y).sum() else float("nan"),
                "selection_rate": float(chosen / tw)}

    out: dict[str, float] = {"n": float(len(sub)), "base_rate": float(y.mean()) if len(y) else float("nan"),
                             **figures(np.ones(len(sub)))}
    out.update(day_resample_ci(figures, day, n_boot, seed))
    return out


class Recommendation(Task):
    def make_targets(self, panel: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in ("target_followed", "target_outcome") if c not in panel.columns]
        if missing:
            raise ValueError(f"recommendation needs the feedback columns {missing} (rows of day x user x signal, "
                             "as data=users_sim gives)")
        split_entity(panel.index)  # refuses entities that name no user and signal
        check_resolution(panel, self.config.resolve_bars)
        return pd.DataFrame({"target": hit_target(panel)}, index=panel.index)

    def label_horizon(self) -> int:
        return int(self.config.resolve_bars)

    def prediction_columns(self) -> tuple[str, ...]:
        return ("p_hit",)

    def column_ranges(self) -> dict[str, tuple[float, float]]:
        return {"p_hit": (0.0, 1.0)}

    def calibration_target(self) -> tuple[str, str]:
        return ("target", "probability")

    def score(self, oos: pd.DataFrame, n_boot: int, seed: int) -> dict[str, float]:
        return recommendation_metrics(oos, self.config.threshold, n_boot, seed)

    def decisions(self, oos: pd.DataFrame) -> pd.DataFrame:
        """``selected``: recommended (p_hit >= threshold); ``positive``: followed and paid; ``quality``: the
        user's day's NDCG@k by p_hit, on the day's first row."""
        sub = oos[["p_hit", "target"]].dropna()
        return pd.DataFrame({"selected": (sub["p_hit"] >= self.config.threshold).astype(float),
                             "positive": sub["target"].astype(float),
                             "quality": quality_on_first_rows(sub, "p_hit", self.config.k)}, index=sub.index)

    def performance_row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        return {"auc_roc": metrics.get("auc"), "precision": metrics.get("precision"), "recall": metrics.get("recall"),
                "total_predictions": int(metrics.get("n", 0) or 0),
                "prediction_distribution": {"selection_rate": metrics.get("selection_rate"),
                                            "base_rate": metrics.get("base_rate")}}

    def label(self, values: Mapping[str, float]) -> str:
        return "recommend" if values["p_hit"] >= self.config.threshold else "skip"

    def log_fields(self, values: Mapping[str, float]) -> dict[str, Any]:
        return {"prediction_value": None, "prediction_probability": float(values["p_hit"]),
                "prediction_class": self.label(values)}

    def score_outcome(self, logged: Mapping[str, Any], actual: float) -> tuple[bool | None, float | None]:
        """``actual`` is 1 when the user followed the signal and it paid, else 0."""
        if actual not in (0, 1, 0.0, 1.0):
            raise ValueError(f"a recommendation's outcome is 1 (followed and paid) or 0, got {actual}")
        p = logged.get("prediction_probability")
        if p is None:
            return None, None
        return (p >= self.config.threshold) == bool(actual), float(p) - float(actual)


# baselines -----------------------------------------------------------------------------------------
class SignalHitRate(JsonStateModel):
    """Each signal's hit rate over the training rows, the same for every user."""

    def fit(self, data, valid=None):
        rows = self.join_valid(data, valid)
        _, item = split_entity(rows.index)
        y = rows["target"].to_numpy(float)
        ok = np.isfinite(y)
        rates = pd.Series(y[ok]).groupby(item[ok]).mean()
        self.state_ = {"items": {str(k): float(v) for k, v in rates.items()}, "unseen": float(y[ok].mean())}

    def predict(self, data):
        _, item = split_entity(data.index)
        table = self.state_["items"]
        return pd.DataFrame({"p_hit": [table.get(str(i), self.state_["unseen"]) for i in item]}, index=data.index)


class BaseRate(JsonStateModel):
    """The training rows' hit rate for every row: says nothing about who or which signal."""

    def fit(self, data, valid=None):
        self.state_ = {"p": float(self.join_valid(data, valid)["target"].dropna().mean())}

    def predict(self, data):
        return pd.DataFrame({"p_hit": np.full(len(data), self.state_["p"])}, index=data.index)


def _baseline(name, cls, desc) -> ModelSpec:
    cls.spec = ModelSpec(name=name, family="baseline", task="recommendation", capabilities=frozenset({"multi_asset"}),
                         config_cls=NoConfig, factory=cls, description=desc, baseline=True)
    return cls.spec


BASELINES = [
    _baseline("signal_hit_rate", SignalHitRate, "each signal's hit rate in the training rows, for every user"),
    _baseline("base_rate", BaseRate, "the training rows' hit rate on every row"),
]
Recommendation.spec = TaskSpec(
    name="recommendation",
    description="P(a user follows a signal and it pays); recommend when it clears a threshold (SIMULATED users)",
    config_cls=RecommendationConfig,
    factory=Recommendation,
    primary_metric="auc",
    higher_is_better=True,
    baselines=(Baseline("signal_hit_rate", "signal_hit_rate"), Baseline("base_rate", "base_rate")),
    headline=("auc", "log_loss", "brier", "precision", "recall", "selection_rate"),
    example=TaskExample("users_sim", "2022-01-03", "2024-12-27", features="personal", data_config={"n_users": 40}),
    reference="signal_hit_rate",
    data="users_sim",
    demo=("features=personal", "data.n_users=60"),  # fewer simulated users keep the demo near 20 s a task
)


@hookimpl
def treum_tasks() -> list[TaskSpec]:
    return [Recommendation.spec]


@hookimpl
def treum_models() -> list[ModelSpec]:
    return list(BASELINES)
