"""LightGBM regime classifier trained on the per-fold regime labels, with a purge.

The regime task's labels are decided after the fact (a bear market is dated from its peak
once prices have fallen far enough), so the walk-forward hands each fold the labels as they
were known at its last training bar (``Task.labels_as_of``): bars whose phase was not yet
confirmed are NaN and never trained on. On top of that the classifier drops the last
``purge`` labelled bars of each instrument: their labels rest on the few prices after them,
and they sit next to the test block, whose phase they share.

Inputs, all from prices up to the bar: the technical feature set (``f_*``) and, computed
here per instrument, the drawdown from the running 252-bar peak, the rise from the running
252-bar trough, returns over 126 and 252 bars, and the least-squares trend of log price
over 63 and 126 bars. With ``balanced`` the classes are weighted inversely to their
frequency, since the task is scored by balanced accuracy and bear bars are few.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from treum.core.errors import TreumError
from treum.core.hookspecs import hookimpl
from treum.core.model import Model, feature_columns
from treum.core.specs import ModelSpec

OWN = ("r_drawdown_252", "r_rise_252", "r_ret_126", "r_ret_252", "r_trend_63", "r_trend_126")


@dataclass
class RegimeClassifierConfig:
    n_estimators: int = 300
    learning_rate: float = 0.03
    num_leaves: int = 15
    min_child_samples: int = 100
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 5.0
    early_stopping_rounds: int = 50
    purge: int = 21  # labelled bars dropped at the end of each instrument's training rows
    balanced: bool = True  # weight classes inversely to their frequency
    num_threads: int = 1
    seed: int = 0

    def validate(self) -> str | None:
        if not 0 < self.learning_rate <= 1:
            return f"learning_rate must be in (0, 1], got {self.learning_rate}"
        if self.num_leaves < 2 or self.n_estimators < 1:
            return f"num_leaves must be at least 2 and n_estimators at least 1, got {self.num_leaves}, {self.n_estimators}"
        if self.purge < 0:
            return f"purge cannot be negative, got {self.purge}"
        return None


def regime_inputs(data: pd.DataFrame) -> pd.DataFrame:
    """The classifier's own price features, per instrument, backward-looking only."""
    from treum.plugins.tasks.regime import trend

    parts = []
    for _, g in data.groupby(level="entity", sort=False):
        logp = np.log(g["close"].astype(float))
        peak = logp.rolling(252, min_periods=21).max()
        trough = logp.rolling(252, min_periods=21).min()
        values = logp.to_numpy()
        parts.append(pd.DataFrame({
            "r_drawdown_252": (logp - peak) * 100,
            "r_rise_252": (logp - trough) * 100,
            "r_ret_126": (logp - logp.shift(126)) * 100,
            "r_ret_252": (logp - logp.shift(252)) * 100,
            "r_trend_63": trend(values, 63) * 100,
            "r_trend_126": trend(values, 126) * 100,
        }, index=g.index))
    return pd.concat(parts).reindex(data.index)


def purged(data: pd.DataFrame, bars: int) -> pd.DataFrame:
    """The rows less each instrument's last ``bars`` labelled bars."""
    if bars == 0:
        return data
    keep = []
    for _, g in data.groupby(level="entity", sort=False):
        labelled = np.flatnonzero(g["target"].notna().to_numpy())
        cut = labelled[-bars] if len(labelled) > bars else 0
        keep.append(g.iloc[:cut])
    return pd.concat(keep)


class RegimeClassifier(Model):
    features_: list[str]

    def _matrix(self, data: pd.DataFrame) -> pd.DataFrame:
        own = regime_inputs(data)
        return pd.concat([data[self.features_[: -len(OWN)]], own], axis=1)

    def _xy(self, data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        x = self._matrix(data).to_numpy(dtype=float)
        y = data["target"].to_numpy(dtype=float)
        ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
        return x[ok], y[ok].astype(int)

    def _classes(self) -> list[int]:
        return list(self.require_task().classes) if len(self.require_task().prediction_columns()) > 1 else [0, 1]

    def fit(self, data: pd.DataFrame, valid: pd.DataFrame | None = None) -> None:
        import lightgbm as lgb

        cfg = self.config
        self.features_ = feature_columns(data) + list(OWN)
        if len(self.features_) == len(OWN):
            raise TreumError("regime_classifier reads the technical features (f_* columns); the data has none")
        x, y = self._xy(purged(data, cfg.purge))
        classes = self._classes()
        present = sorted(set(y.tolist()))
        if len(present) < 2:
            raise TreumError(f"regime_classifier needs at least two regimes among its training labels, got {present}; "
                             "start the training segment earlier")
        multi = len(classes) > 2
        params = {
            "objective": "multiclass" if multi else "binary", "learning_rate": cfg.learning_rate,
            "num_leaves": cfg.num_leaves, "min_child_samples": cfg.min_child_samples,
            "feature_fraction": cfg.feature_fraction, "bagging_fraction": cfg.bagging_fraction,
            "bagging_freq": cfg.bagging_freq, "lambda_l2": cfg.lambda_l2, "num_threads": cfg.num_threads,
            "seed": cfg.seed, "deterministic": True, "force_row_wise": True, "verbosity": -1,
        }
        if multi:
            params["num_class"] = 3
        weight = None
        if cfg.balanced:
            counts = np.bincount(y, minlength=3).astype(float)
            weight = (len(y) / (len(present) * np.maximum(counts, 1)))[y]
        train = lgb.Dataset(x, y, weight=weight, feature_name=self.features_)
        valid_sets, callbacks = [], []
        if valid is not None and len(valid) and valid["target"].notna().any():
            # the validation rows need their history for the price features: computed on train+valid, kept on valid
            joined = self._matrix(pd.concat([data, valid]).sort_index()).loc[valid.index]
            vx = joined.to_numpy(dtype=float)
            vy = valid["target"].to_numpy(dtype=float)
            ok = np.isfinite(vx).all(axis=1) & np.isfinite(vy)
            if ok.sum() and len(set(vy[ok].astype(int))) > 1:
                vw = None
                if cfg.balanced:
                    vc = np.bincount(vy[ok].astype(int), minlength=3).astype(float)
                    vw = (ok.sum() / (len(present) * np.maximum(vc, 1)))[vy[ok].astype(int)]
                valid_sets = [lgb.Dataset(vx[ok], vy[ok].astype(int), weight=vw, reference=train)]
                callbacks.append(lgb.early_stopping(cfg.early_stopping_rounds, verbose=False))
        self.booster_ = lgb.train(params, train, num_boost_round=cfg.n_estimators, valid_sets=valid_sets,
                                  callbacks=callbacks)

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        from treum.plugins.tasks.regime import CLASS_COLUMNS

        x = self._matrix(data).to_numpy(dtype=float)
        ok = np.isfinite(x).all(axis=1)
        best = self.booster_.best_iteration or None
        task = self.require_task()
        cols = task.prediction_columns()
        out = {c: np.full(len(data), np.nan) for c in cols}
        if ok.any():
            p = self.booster_.predict(x[ok], num_iteration=best)
            if len(cols) == 1:
                out["p_bear"][ok] = p
            else:
                for c in task.classes:  # multiclass columns are in label order: bull 0, bear 1, sideways 2
                    out[CLASS_COLUMNS[c]][ok] = p[:, c]
        return pd.DataFrame(out, index=data.index)

    def save_weights(self, directory: Path) -> None:
        self.booster_.save_model(str(directory / "model.txt"))
        (directory / "features.json").write_text(json.dumps(self.features_))

    def load_weights(self, directory: Path) -> None:
        import lightgbm as lgb

        self.booster_ = lgb.Booster(model_file=str(directory / "model.txt"))
        self.features_ = json.loads((directory / "features.json").read_text())


RegimeClassifier.spec = ModelSpec(
    name="regime_classifier",
    family="gradient_boosting",
    task="regime",
    capabilities=frozenset({"probabilistic", "multi_asset", "sequential", "uses_features"}),
    config_cls=RegimeClassifierConfig,
    factory=RegimeClassifier,
    description="LightGBM on technical and trend/drawdown features, trained on the per-fold regime labels with a purge",
)


@hookimpl
def treum_models() -> list[ModelSpec]:
    return [RegimeClassifier.spec]
