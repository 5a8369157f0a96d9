"""LightGBM next-bar direction classifier on the technical features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from pathlib import Path

import pandas as pd

from treum.core.estimators import FeatureModel, predict_rows
from treum.core.hookspecs import hookimpl
from treum.core.specs import ModelSpec


@dataclass
class GBMDirectionConfig:
    n_estimators: int = 400
    learning_rate: float = 0.02
    num_leaves: int = 15
    min_child_samples: int = 200
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 5.0
    early_stopping_rounds: int = 50
    num_threads: int = 2
    seed: int = 0
    device_type: Literal["cpu", "gpu", "cuda"] = "cpu"  # gpu/cuda: only with a LightGBM built for it (not PyPI's)

    def validate(self) -> str | None:
        if not 0 < self.learning_rate <= 1:
            return f"learning_rate must be in (0, 1], got {self.learning_rate}"
        if self.num_leaves < 2:
            return f"num_leaves must be at least 2, got {self.num_leaves}"
        return None


class GBMDirection(FeatureModel):
    prediction = "p_up"  # the column it answers in (subclasses of other tasks rename it)
    objective = "binary"  # LightGBM's objective (a regression subclass sets "regression")
    label_dtype: type = int  # the target's type for that objective

    def fit(self, data: pd.DataFrame, valid: pd.DataFrame | None = None) -> None:
        import lightgbm as lgb

        cfg = self.config
        x, y = self.feature_matrix(data, dtype=self.label_dtype)
        params = {
            "objective": self.objective,
            "learning_rate": cfg.learning_rate,
            "num_leaves": cfg.num_leaves,
            "min_child_samples": cfg.min_child_samples,
            "feature_fraction": cfg.feature_fraction,
            "bagging_fraction": cfg.bagging_fraction,
            "bagging_freq": cfg.bagging_freq,
            "lambda_l2": cfg.lambda_l2,
            "num_threads": cfg.num_threads,
            "device_type": cfg.device_type,
            "seed": cfg.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        train_set = lgb.Dataset(x, y, feature_name=self.features_)
        callbacks = []
        valid_sets = []
        if valid is not None and len(valid) and valid["target"].notna().any():
            vx, vy = self.feature_matrix(valid, dtype=self.label_dtype)
            valid_sets = [lgb.Dataset(vx, vy, reference=train_set)]
            callbacks.append(lgb.early_stopping(cfg.early_stopping_rounds, verbose=False))
        self.booster_ = lgb.train(
            params, train_set, num_boost_round=cfg.n_estimators, valid_sets=valid_sets, callbacks=callbacks
        )

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        best = self.booster_.best_iteration or None
        return predict_rows(data, self.features_, lambda x: self.booster_.predict(x, num_iteration=best),
                            self.prediction)

    def tree_model(self) -> Any:
        """The fitted LightGBM Booster (capability ``tree``): exactly the trees predict uses, for SHAP's TreeExplainer."""
        return self.booster_

    def feature_importance(self) -> pd.Series:
        gain = self.booster_.feature_importance(importance_type="gain")
        return pd.Series(gain / max(gain.sum(), 1e-12), index=self.features_).sort_values(ascending=False)

    def save_weights(self, directory: Path) -> None:
        self.booster_.save_model(str(directory / "model.txt"))
        self.save_features(directory)

    def load_weights(self, directory: Path) -> None:
        import lightgbm as lgb

        self.booster_ = lgb.Booster(model_file=str(directory / "model.txt"))
        self.load_features(directory)


GBMDirection.spec = ModelSpec(
    name="gbm_direction",
    family="gradient_boosting",
    task="direction",
    capabilities=frozenset({"probabilistic", "multi_asset", "native_importance", "uses_features", "tree"}),
    config_cls=GBMDirectionConfig,
    factory=GBMDirection,
    description="LightGBM classifier of next-bar direction on the technical features",
)


@hookimpl
def treum_models() -> list[ModelSpec]:
    return [GBMDirection.spec]
