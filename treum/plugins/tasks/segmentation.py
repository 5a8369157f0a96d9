"""Segmentation: group users by how they behave, for targeting and for fairness by behaviour (clustering).

Rows are (day, user) (``users_sim_activity``). There is no label to predict: a model assigns each
row a ``cluster`` from the user's behaviour up to t. The task scores the clusters in one fixed
space, the same for every model: the user's trailing behaviour (active-day share, follow rate,
risk and holding period of what they followed, skill proxy; ``window`` bars), standardised with
the test rows' own means and deviations. Its copy of that space is carried as ``target_space_*``
columns, so predict never sees it. Scoring: the silhouette of the test rows' clusters (on a seeded
sample of ``sample`` rows: silhouette costs n squared), the number of clusters, and the largest
cluster's share. Baseline: the stated risk tolerance as the segments (does the questionnaire
group people by what they do?).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from treum.core.estimators import JsonStateModel, NoConfig
from treum.core.hookspecs import hookimpl
from treum.core.specs import Baseline, ModelSpec, TaskExample, TaskSpec
from treum.core.task import Task
from treum.core.user_sim import BEHAVIOUR_INPUTS, RISK_TOLERANCE, trailing_behaviour

SPACE = "target_space_"


@dataclass
class SegmentationConfig:
    window: int = 63  # bars of behaviour behind the scoring space
    sample: int = 4000  # test rows the silhouette is computed on
    seed: int = 0

    def validate(self) -> str | None:
        if self.window < 5 or self.sample < 100:
            return f"window >= 5 and sample >= 100 needed, got window={self.window}, sample={self.sample}"
        return None


class Segmentation(Task):
    def make_targets(self, panel: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in BEHAVIOUR_INPUTS if c not in panel.columns]
        if missing:
            raise ValueError(f"segmentation needs {missing} per (day, user) (data=users_sim_activity has them)")
        space = trailing_behaviour(panel, self.config.window)
        return space.rename(columns=lambda c: SPACE + c.removeprefix("f_b_"))

    def label_horizon(self) -> int:
        return 0  # the space looks back only

    def prediction_columns(self) -> tuple[str, ...]:
        return ("cluster",)

    def column_ranges(self) -> dict[str, tuple[float, float]]:
        return {"cluster": (0.0, 50.0)}

    def score(self, oos: pd.DataFrame, n_boot: int, seed: int) -> dict[str, float]:
        from sklearn.metrics import silhouette_score

        cols = [c for c in oos.columns if str(c).startswith(SPACE)]
        sub = oos[["cluster", *cols]].dropna()
        out: dict[str, float] = {"n": float(len(sub))}
        labels = sub["cluster"].to_numpy(int)
        out["clusters"] = float(len(np.unique(labels)))
        out["largest_share"] = float(np.bincount(labels).max() / len(labels)) if len(labels) else float("nan")
        if len(np.unique(labels)) < 2:
            out["silhouette"] = float("nan")
            return out
        x = sub[cols].to_numpy(float)
        x = (x - x.mean(axis=0)) / x.std(axis=0).clip(1e-12)
        out["silhouette"] = float(silhouette_score(x, labels, sample_size=min(self.config.sample, len(x)),
                                                   random_state=self.config.seed))
        return out

    def performance_row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        return {"total_predictions": int(metrics.get("n", 0) or 0),
                "prediction_distribution": {"clusters": metrics.get("clusters"),
                                            "largest_share": metrics.get("largest_share"),
                                            "silhouette": metrics.get("silhouette")}}

    def label(self, values: Mapping[str, float]) -> str:
        return f"cluster {int(values['cluster'])}"


class StatedSegments(JsonStateModel):
    """The stated risk tolerance as the segments: conservative 0, moderate 1, aggressive 2."""

    LEVELS = RISK_TOLERANCE

    def fit(self, data, valid=None):
        self.state_ = {}

    def predict(self, data):
        values = data["risk_tolerance"].map({v: float(i) for i, v in enumerate(self.LEVELS)})
        return pd.DataFrame({"cluster": values.to_numpy(float)}, index=data.index)


StatedSegments.spec = ModelSpec(name="stated_segments", family="baseline", task="segmentation",
                                capabilities=frozenset({"multi_asset"}), config_cls=NoConfig, factory=StatedSegments,
                                description="the stated risk tolerance as the segments", baseline=True)

Segmentation.spec = TaskSpec(
    name="segmentation",
    description="group users by their behaviour (clustering); silhouette in a fixed behaviour space (SIMULATED users)",
    config_cls=SegmentationConfig,
    factory=Segmentation,
    primary_metric="silhouette",
    higher_is_better=True,
    baselines=(Baseline("stated_segments", "stated_segments"),),
    headline=("silhouette", "clusters", "largest_share"),
    example=TaskExample("users_sim_activity", "2022-01-03", "2024-12-27", features="behaviour", data_config={"n_users": 40}),
    reference="stated_segments",
    data="users_sim_activity",
    demo=("features=behaviour",),
)


@hookimpl
def treum_tasks() -> list[TaskSpec]:
    return [Segmentation.spec]


@hookimpl
def treum_models() -> list[ModelSpec]:
    return [StatedSegments.spec]
