"""What models share: feature matrices, small estimators and JSON-state models (never pickle)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from treum.core.errors import TreumError
from treum.core.model import Model, feature_columns


def xy(data: pd.DataFrame, columns: list[str], target: str = "target", dtype: type = int) -> tuple[np.ndarray, np.ndarray]:
    """Rows with every column and the target present, as arrays (the target as ``dtype``: classes by default)."""
    if target not in data.columns:
        raise TreumError(f"the training data has no '{target}' column; was it built for this model's task?")
    sub = data[columns + [target]].dropna()
    if len(sub) == 0:
        raise TreumError(f"no training rows have all of {columns[:5]}... and '{target}'")
    return sub[columns].to_numpy(dtype=float), sub[target].to_numpy(dtype=dtype)


def x_rows(data: pd.DataFrame, columns: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mask of rows with every column present, their values); all columns by default."""
    values = data[columns if columns is not None else list(data.columns)].to_numpy(dtype=float)
    ok = np.isfinite(values).all(axis=1)
    return ok, values[ok]


def predict_rows(data: pd.DataFrame, columns: list[str], fn: Any, name: str) -> pd.DataFrame:
    """Apply ``fn(x)`` to the rows with every feature present; NaN elsewhere; one column ``name``."""
    ok, x = x_rows(data, columns)
    out = np.full(len(data), np.nan)
    if ok.any():
        out[ok] = fn(x)
    return pd.DataFrame({name: out}, index=data.index)


class FeatureModel(Model):
    """A model on the feature set's ``f_*`` columns: remembers them at fit, saves them beside its weights."""

    features_: list[str]

    def feature_matrix(self, data: pd.DataFrame, target: str = "target", dtype: type = int) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) of the rows with every feature and the target present; fixes ``features_`` on first use."""
        if not getattr(self, "features_", None):
            self.features_ = feature_columns(data)
            if not self.features_:
                raise TreumError(f"model '{self.spec.name}' uses features, but the data has no f_* columns")
        return xy(data, self.features_, target, dtype)

    def save_features(self, directory: Path) -> None:
        (directory / "features.json").write_text(json.dumps(self.features_))

    def load_features(self, directory: Path) -> None:
        self.features_ = json.loads((directory / "features.json").read_text())


@dataclass
class NoConfig:
    """The config of a model without parameters."""


class JsonStateModel(Model):
    """A model whose whole state is a small JSON document in ``self.state_`` (rules, baselines)."""

    state_: dict

    def save_weights(self, directory: Path) -> None:
        (directory / "state.json").write_text(json.dumps(self.state_, sort_keys=True))

    def load_weights(self, directory: Path) -> None:
        self.state_ = json.loads((directory / "state.json").read_text())


class StandardLogit:
    """Standardised L2 logistic regression (scikit-learn), saved as JSON coefficients."""

    def __init__(self, c: float = 1.0, max_iter: int = 1000):
        self.c = c
        self.max_iter = max_iter

    def fit(self, x: np.ndarray, y: np.ndarray) -> "StandardLogit":
        from sklearn.linear_model import LogisticRegression

        self.mean_ = x.mean(axis=0)
        self.scale_ = x.std(axis=0)
        self.scale_[self.scale_ == 0] = 1.0
        clf = LogisticRegression(C=self.c, max_iter=self.max_iter)
        clf.fit((x - self.mean_) / self.scale_, y)
        self.coef_ = clf.coef_.ravel()
        self.intercept_ = float(clf.intercept_[0])
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = ((x - self.mean_) / self.scale_) @ self.coef_ + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))

    def save(self, path: Path) -> None:
        path.write_text(
            json.dumps(
                {
                    "mean": self.mean_.tolist(),
                    "scale": self.scale_.tolist(),
                    "coef": self.coef_.tolist(),
                    "intercept": self.intercept_,
                }
            )
        )

    def load(self, path: Path) -> "StandardLogit":
        d = json.loads(path.read_text())
        self.mean_, self.scale_ = np.array(d["mean"]), np.array(d["scale"])
        self.coef_, self.intercept_ = np.array(d["coef"]), float(d["intercept"])
        return self
