"""Small estimators shared by models and baselines, stored as plain JSON (never pickle)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from treum.core.errors import TreumError


def xy(data: pd.DataFrame, columns: list[str], target: str = "target") -> tuple[np.ndarray, np.ndarray]:
    """Rows with every column and the target present, as arrays."""
    if target not in data.columns:
        raise TreumError(f"the training data has no '{target}' column; was it built for this model's task?")
    sub = data[columns + [target]].dropna()
    if len(sub) == 0:
        raise TreumError(f"no training rows have all of {columns[:5]}... and '{target}'")
    return sub[columns].to_numpy(dtype=float), sub[target].to_numpy(dtype=int)


def x_rows(data: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(mask of rows with every column present, their values)."""
    values = data[columns].to_numpy(dtype=float)
    ok = np.isfinite(values).all(axis=1)
    return ok, values[ok]


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
