"""Risk profile: the risk a user will actually take, estimated from their behaviour (adaptive risk tolerance).

Rows are (day, user) (``users_sim_activity``). The stated risk tolerance is a questionnaire answer
given once; what a user does drifts from it. Label: ``target`` is the mean risk level (0-3) of
the signals the user follows over the next ``horizon`` bars (NaN when they follow nothing). The
prediction ``risk_appetite`` (0-3) is refreshed every day from what the user did up to then.

Scoring: MAE and RMSE, and the Spearman correlation of predicted with realised appetite across
rows, each with a 95% bootstrap interval over days. Baselines: the stated tolerance (the training
rows' mean realised appetite per stated level: the questionnaire, read as well as it can be) and
the user's own recent mean (persistence).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from treum.core.estimators import JsonStateModel, NoConfig
from treum.core.hookspecs import hookimpl
from treum.core.metrics import day_resample_ci
from treum.core.specs import Baseline, ModelSpec, TaskExample, TaskSpec
from treum.core.task import Task


@dataclass
class RiskProfileConfig:
    horizon: int = 21  # bars ahead whose follows define the realised appetite

    def validate(self) -> str | None:
        return None if self.horizon >= 1 else f"horizon must be at least 1, got {self.horizon}"


def forward_appetite(panel: pd.DataFrame, horizon: int) -> pd.Series:
    """Mean risk level of what each user follows over bars t+1..t+horizon (NaN without a follow)."""
    def ahead(col: str) -> pd.Series:
        g = panel[col].groupby(level="entity", sort=False)
        total = g.transform(lambda s: s[::-1].rolling(horizon, min_periods=horizon).sum()[::-1].shift(-1))
        return total

    follows = ahead("followed")
    return (ahead("followed_risk") / follows.where(follows > 0)).rename("target")


class RiskProfile(Task):
    def make_targets(self, panel: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in ("followed", "followed_risk") if c not in panel.columns]
        if missing:
            raise ValueError(f"risk_profile needs {missing} per (day, user) (data=users_sim_activity has them)")
        return forward_appetite(panel, self.config.horizon).to_frame()

    def label_horizon(self) -> int:
        return int(self.config.horizon)

    def prediction_columns(self) -> tuple[str, ...]:
        return ("risk_appetite",)

    def column_ranges(self) -> dict[str, tuple[float, float]]:
        return {"risk_appetite": (0.0, 3.0)}

    def calibration_target(self) -> tuple[str, str]:
        return ("target", "value")

    def score(self, oos: pd.DataFrame, n_boot: int, seed: int) -> dict[str, float]:
        sub = oos[["risk_appetite", "target"]].dropna()
        p, y = sub["risk_appetite"].to_numpy(float), sub["target"].to_numpy(float)
        day = pd.factorize(sub.index.get_level_values("timestamp"))[0]

        def figures(weights: np.ndarray) -> dict[str, float]:
            idx = np.repeat(np.arange(len(sub)), weights.astype(int))  # a day drawn twice counts twice
            e = p[idx] - y[idx]
            rho = stats.spearmanr(p[idx], y[idx]).statistic if len(idx) > 2 and np.ptp(p[idx]) > 0 else np.nan
            return {"mae": float(np.abs(e).mean()), "rmse": float(np.sqrt((e**2).mean())), "spearman": float(rho)}

        out: dict[str, float] = {"n": float(len(sub)), **figures(np.ones(len(sub)))}
        out.update(day_resample_ci(figures, day, n_boot, seed))
        return out

    def performance_row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        return {"mean_absolute_error": metrics.get("mae"), "root_mean_squared_error": metrics.get("rmse"),
                "total_predictions": int(metrics.get("n", 0) or 0)}

    def describe(self, values: Mapping[str, float]) -> dict[str, Any]:
        v = values["risk_appetite"]
        return {"scale": "0 (bond and dividend signals) to 3 (crypto and options)",
                "reads_as": "conservative" if v < 1.0 else "moderate" if v < 2.0 else "aggressive"}


class StatedTolerance(JsonStateModel):
    """The questionnaire: the training rows' mean realised appetite of each stated risk tolerance."""

    def fit(self, data, valid=None):
        rows = self.join_valid(data, valid)[["risk_tolerance", "target"]].dropna()
        means = rows.groupby("risk_tolerance")["target"].mean()
        self.state_ = {"levels": {str(k): float(v) for k, v in means.items()}, "all": float(rows["target"].mean())}

    def predict(self, data):
        table = self.state_["levels"]
        values = [table.get(str(v), self.state_["all"]) for v in data["risk_tolerance"]]
        return pd.DataFrame({"risk_appetite": np.clip(values, 0, 3)}, index=data.index)


class RecentAppetite(JsonStateModel):
    """Persistence: the mean risk of what the user followed over the behaviour window (f_b_follow_risk)."""

    def fit(self, data, valid=None):
        self.state_ = {"fallback": float(self.join_valid(data, valid)["target"].mean())}

    def predict(self, data):
        values = data["f_b_follow_risk"].fillna(self.state_["fallback"]).clip(0, 3)
        return pd.DataFrame({"risk_appetite": values.to_numpy(float)}, index=data.index)


def _baseline(name, cls, desc, caps=("multi_asset",)) -> ModelSpec:
    cls.spec = ModelSpec(name=name, family="baseline", task="risk_profile", capabilities=frozenset(caps),
                         config_cls=NoConfig, factory=cls, description=desc, baseline=True)
    return cls.spec


BASELINES = [
    _baseline("stated_tolerance", StatedTolerance, "the questionnaire: mean realised appetite per stated tolerance"),
    _baseline("recent_appetite", RecentAppetite, "the mean risk of what the user followed lately",
              ("multi_asset", "uses_features")),
]

RiskProfile.spec = TaskSpec(
    name="risk_profile",
    description="the risk level a user will follow over the next month, from their behaviour (SIMULATED users)",
    config_cls=RiskProfileConfig,
    factory=RiskProfile,
    primary_metric="mae",
    higher_is_better=False,
    baselines=(Baseline("stated_tolerance", "stated_tolerance"), Baseline("recent_appetite", "recent_appetite")),
    headline=("mae", "rmse", "spearman"),
    example=TaskExample("users_sim_activity", "2022-01-03", "2024-12-27", features="behaviour", data_config={"n_users": 40}),
    reference="stated_tolerance",
    data="users_sim_activity",
    demo=("features=behaviour",),
)


@hookimpl
def treum_tasks() -> list[TaskSpec]:
    return [RiskProfile.spec]


@hookimpl
def treum_models() -> list[ModelSpec]:
    return list(BASELINES)
