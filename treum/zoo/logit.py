"""Regularised logistic regression of direction on the technical features."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from treum.core.estimators import FeatureModel, StandardLogit, predict_rows
from treum.core.hookspecs import hookimpl
from treum.core.specs import ModelSpec


@dataclass
class LogitDirectionConfig:
    c: float = 0.05  # inverse L2 strength on standardised features
    max_iter: int = 1000

    def validate(self) -> str | None:
        return None if self.c > 0 else f"c must be positive, got {self.c}"


class LogitDirection(FeatureModel):
    def fit(self, data: pd.DataFrame, valid: pd.DataFrame | None = None) -> None:
        # no early stopping to use a valid set for: learn from it too
        x, y = self.feature_matrix(self.join_valid(data, valid))
        self.clf_ = StandardLogit(self.config.c, self.config.max_iter).fit(x, y)

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        return predict_rows(data, self.features_, self.clf_.predict_proba, "p_up")

    def feature_importance(self) -> pd.Series:
        w = np.abs(self.clf_.coef_)
        return pd.Series(w / max(w.sum(), 1e-12), index=self.features_).sort_values(ascending=False)

    def save_weights(self, directory: Path) -> None:
        self.clf_.save(directory / "coefficients.json")
        self.save_features(directory)

    def load_weights(self, directory: Path) -> None:
        self.clf_ = StandardLogit().load(directory / "coefficients.json")
        self.load_features(directory)


LogitDirection.spec = ModelSpec(
    name="logit_direction",
    family="linear",
    task="direction",
    capabilities=frozenset({"probabilistic", "multi_asset", "native_importance", "uses_features"}),
    config_cls=LogitDirectionConfig,
    factory=LogitDirection,
    description="L2-regularised logistic regression of direction on standardised technical features",
)


@hookimpl
def treum_models() -> list[ModelSpec]:
    return [LogitDirection.spec]
