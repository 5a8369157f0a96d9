"""Regularised logistic regression of direction on the technical features."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from treum.core.estimators import StandardLogit, x_rows, xy
from treum.core.hookspecs import hookimpl
from treum.core.model import Model, feature_columns
from treum.core.specs import ModelSpec


@dataclass
class LogitDirectionConfig:
    c: float = 0.05  # inverse L2 strength on standardised features
    max_iter: int = 1000

    def validate(self) -> str | None:
        return None if self.c > 0 else f"c must be positive, got {self.c}"


class LogitDirection(Model):
    def fit(self, data: pd.DataFrame, valid: pd.DataFrame | None = None) -> "LogitDirection":
        # no early stopping to use a valid set for: learn from it too
        full = data if valid is None else pd.concat([data, valid])
        self.features_ = feature_columns(full)
        x, y = xy(full, self.features_)
        self.clf_ = StandardLogit(self.config.c, self.config.max_iter).fit(x, y)
        self.fitted = True
        return self

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        ok, x = x_rows(data, self.features_)
        p = np.full(len(data), np.nan)
        if ok.any():
            p[ok] = self.clf_.predict_proba(x)
        return pd.DataFrame({"p_up": p}, index=data.index)

    def feature_importance(self) -> pd.Series:
        w = np.abs(self.clf_.coef_)
        return pd.Series(w / max(w.sum(), 1e-12), index=self.features_).sort_values(ascending=False)

    def save_weights(self, directory: Path) -> None:
        self.clf_.save(directory / "coefficients.json")
        (directory / "features.json").write_text(json.dumps(self.features_))

    def load_weights(self, directory: Path) -> None:
        self.clf_ = StandardLogit().load(directory / "coefficients.json")
        self.features_ = json.loads((directory / "features.json").read_text())


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
