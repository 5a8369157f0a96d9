"""Stress detectors of the ``anomaly`` task on the cross-asset features.

All three read the feature set's ``f_*`` columns except ``f_vix`` (which covers
2014-2019 only; see ``treum.plugins.features.cross_asset.MODEL_EXCLUDED``),
standardised with the training rows' mean and standard deviation, and answer
``p_stress`` on rows whose features are all present (NaN in the warm-up):

- ``isolation_forest``: scikit-learn's IsolationForest fitted on every training
  row (it needs no labels); the anomaly score (``-score_samples``) is mapped to
  [0, 1] by the training rows' empirical CDF, so ``p_stress`` is the share of
  training days less anomalous than today. Saved without pickle: the training
  matrix and the sorted training scores in ``isolation_forest.npz``; loading refits
  the forest deterministically from them and the seed, and refuses to load
  (``ArtifactIntegrityError``) if the refitted forest does not give back the
  stored training scores to 1e-12 (another scikit-learn, say).
- ``autoencoder_stress``: a small Lightning autoencoder (d-16-4-16-d, tanh)
  trained on the calm training rows only (``target_stress == 0``: no episode
  within the horizon, not inside one), so that it learns what a normal market
  looks like; the reconstruction error is mapped to [0, 1] by the empirical CDF
  of the errors of every training row. Seeded, deterministic torch; weights in
  safetensors.
- ``correlation_breakdown``: a LightGBM classifier of a jump in the 20 stocks'
  average pairwise correlation: ``f_corr_21`` 21 bars ahead exceeds today's by
  at least ``jump`` (0.10). The target is computed inside ``fit`` from the
  training rows' own ``f_corr_21`` (the last ``horizon`` training rows have none),
  with early stopping on the validation rows' own target. Its probability of a
  jump is ``p_stress``: correlations jump when markets sell off together.
  ``jump_auc`` in ``docs/tasks/anomaly.md`` is how well it predicts the jump itself.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from treum.core.errors import ArtifactIntegrityError, TreumError
from treum.core.hookspecs import hookimpl
from treum.core.model import Model, feature_columns
from treum.core.specs import ModelSpec
from treum.plugins.features.cross_asset import MODEL_EXCLUDED as EXCLUDED



def model_features(data: pd.DataFrame) -> list[str]:
    """The ``f_*`` columns a stress model reads: all but the VIX (2014-2019 only)."""
    cols = [c for c in feature_columns(data) if c not in EXCLUDED]
    if not cols:
        raise TreumError("the stress models read f_* feature columns, and the data has none; run with features=cross_asset")
    return cols


def ecdf(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The share of ``reference`` (sorted) at or below each value: a training percentile in [0, 1]."""
    return np.searchsorted(reference, values, side="right") / len(reference)


class StressModel(Model):
    """Shared: feature selection, training standardisation, rows with every feature present."""

    features_: list[str]
    mean_: np.ndarray
    std_: np.ndarray

    def _standardiser(self, frame: pd.DataFrame) -> None:
        self.features_ = model_features(frame)
        x = frame[self.features_].to_numpy(dtype=float)
        x = x[np.isfinite(x).all(axis=1)]
        if len(x) < 50:
            raise TreumError(f"model '{self.spec.name}' has {len(x)} training rows with every feature present; "
                             "it needs at least 50 (a longer training segment, or features=cross_asset)")
        self.mean_ = x.mean(axis=0)
        self.std_ = x.std(axis=0)
        self.std_[~np.isfinite(self.std_) | (self.std_ == 0)] = 1.0

    def _rows(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(mask of rows with every feature present, their standardised values)."""
        missing = [c for c in self.features_ if c not in frame.columns]
        if missing:
            raise TreumError(f"model '{self.spec.name}' was fitted on {missing[:4]}..., which the data lacks; "
                             "compute the features with features=cross_asset")
        x = frame[self.features_].to_numpy(dtype=float)
        ok = np.isfinite(x).all(axis=1)
        return ok, (x[ok] - self.mean_) / self.std_

    def _answer(self, frame: pd.DataFrame, fn) -> pd.DataFrame:
        ok, x = self._rows(frame)
        out = np.full(len(frame), np.nan)
        if ok.any():
            out[ok] = np.clip(fn(x), 0.0, 1.0)
        return pd.DataFrame({"p_stress": out}, index=frame.index)

    def _meta(self) -> dict:
        return {"features": self.features_, "mean": self.mean_.tolist(), "std": self.std_.tolist()}

    def _load_meta(self, meta: dict) -> None:
        self.features_ = meta["features"]
        self.mean_, self.std_ = np.array(meta["mean"]), np.array(meta["std"])


# isolation forest ------------------------------------------------------------------
@dataclass
class IsolationForestConfig:
    n_estimators: int = 100
    max_samples: int = 256
    seed: int = 0

    def validate(self) -> str | None:
        if self.n_estimators < 1:
            return f"n_estimators must be at least 1, got {self.n_estimators}"
        return None if self.max_samples >= 2 else f"max_samples must be at least 2, got {self.max_samples}"


class IsolationForestStress(StressModel):
    def _forest(self, x: np.ndarray):
        from sklearn.ensemble import IsolationForest

        cfg = self.config
        return IsolationForest(n_estimators=cfg.n_estimators, max_samples=min(cfg.max_samples, len(x)),
                               random_state=cfg.seed, n_jobs=1).fit(x)

    def fit(self, data: pd.DataFrame, valid: pd.DataFrame | None = None) -> None:
        full = self.join_valid(data, valid)
        self._standardiser(full)
        _, self.x_train_ = self._rows(full)
        self.forest_ = self._forest(self.x_train_)
        self.train_scores_ = np.sort(-self.forest_.score_samples(self.x_train_))

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        return self._answer(data, lambda x: ecdf(self.train_scores_, -self.forest_.score_samples(x)))

    def save_weights(self, directory: Path) -> None:
        np.savez(directory / "isolation_forest.npz", x_train=self.x_train_, train_scores=self.train_scores_)
        (directory / "standardisation.json").write_text(json.dumps(self._meta()))

    def load_weights(self, directory: Path) -> None:
        self._load_meta(json.loads((directory / "standardisation.json").read_text()))
        with np.load(directory / "isolation_forest.npz", allow_pickle=False) as f:
            self.x_train_, self.train_scores_ = f["x_train"], f["train_scores"]
        self.forest_ = self._forest(self.x_train_)  # deterministic refit: same rows, same seed
        again = np.sort(-self.forest_.score_samples(self.x_train_))
        if not np.allclose(again, self.train_scores_, rtol=0, atol=1e-12):
            raise ArtifactIntegrityError(
                f"{directory}: the isolation forest refitted from its saved training rows does not reproduce its "
                "saved training scores (a different scikit-learn version?); refit the model")


# autoencoder -----------------------------------------------------------------------
@dataclass
class AutoencoderStressConfig:
    hidden: int = 16
    bottleneck: int = 4
    lr: float = 2e-2
    weight_decay: float = 1e-5
    batch_size: int = 1024
    max_epochs: int = 15
    train_on: Literal["calm", "all"] = "calm"  # calm: rows with target_stress == 0 only
    seed: int = 0
    num_threads: int = 1
    accelerator: Literal["cpu", "auto"] = "cpu"

    def validate(self) -> str | None:
        if self.bottleneck < 1 or self.hidden < self.bottleneck:
            return f"need 1 <= bottleneck <= hidden, got bottleneck={self.bottleneck}, hidden={self.hidden}"
        if self.max_epochs < 1:
            return f"max_epochs must be at least 1, got {self.max_epochs}"
        return None if self.lr > 0 else f"lr must be positive, got {self.lr}"


def _autoencoder(n: int, cfg: AutoencoderStressConfig):
    from torch import nn

    return nn.Sequential(nn.Linear(n, cfg.hidden), nn.Tanh(), nn.Linear(cfg.hidden, cfg.bottleneck), nn.Tanh(),
                         nn.Linear(cfg.bottleneck, cfg.hidden), nn.Tanh(), nn.Linear(cfg.hidden, n))


def _lightning(net, cfg: AutoencoderStressConfig):
    """A Lightning module whose one training step runs every epoch: seeded mini-batch passes (manual optimisation).

    Lightning's fixed cost per step and per epoch (tens to hundreds of milliseconds on a
    busy CPU) would otherwise dwarf this small network's work: the demo refits it 18 times.
    """
    import lightning as L
    import torch

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net
            self.automatic_optimization = False
            self.order = torch.Generator().manual_seed(cfg.seed)

        def training_step(self, batch, _):
            (x,) = batch
            opt = self.optimizers()
            for _ in range(cfg.max_epochs):
                perm = torch.randperm(len(x), generator=self.order)
                for i in range(0, len(x), cfg.batch_size):
                    xb = x[perm[i : i + cfg.batch_size]]
                    loss = torch.nn.functional.mse_loss(self.net(xb), xb)
                    opt.zero_grad()
                    self.manual_backward(loss)
                    opt.step()

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    return Module()


class AutoencoderStress(StressModel):
    def _errors(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            t = torch.from_numpy(x.astype(np.float32))
            return ((self.net_(t) - t) ** 2).mean(dim=1).double().numpy()

    def fit(self, data: pd.DataFrame, valid: pd.DataFrame | None = None) -> None:
        import lightning as L
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        cfg = self.config
        for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
            logging.getLogger(name).setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", message=r".*tensorboardX.*")
        torch.set_num_threads(cfg.num_threads)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        full = self.join_valid(data, valid)
        self._standardiser(full)
        ok, x = self._rows(full)
        if cfg.train_on == "calm":
            if "target_stress" not in full.columns:
                raise TreumError("autoencoder_stress with train_on=calm needs the anomaly task's target_stress labels")
            calm = full["target_stress"].to_numpy(dtype=float)[ok] == 0
            x_fit = x[calm]
        else:
            x_fit = x
        if len(x_fit) < 50:
            raise TreumError(f"autoencoder_stress has {len(x_fit)} training rows to learn from; it needs 50")
        rows = torch.from_numpy(x_fit.astype(np.float32))
        loader = DataLoader(TensorDataset(rows), batch_size=len(rows))  # one batch: the module makes the mini-batches
        self.net_ = _autoencoder(len(self.features_), cfg)
        # max_epochs=1: the module's one training step runs cfg.max_epochs passes over mini-batches
        trainer = L.Trainer(max_epochs=1, accelerator=cfg.accelerator, devices=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            deterministic=True)
        trainer.fit(_lightning(self.net_, cfg), loader)
        self.net_.eval()
        self.train_errors_ = np.sort(self._errors(x))

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        return self._answer(data, lambda x: ecdf(self.train_errors_, self._errors(x)))

    def save_weights(self, directory: Path) -> None:
        from safetensors.numpy import save_file as save_numpy
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in self.net_.state_dict().items()}, str(directory / "weights.safetensors"))
        save_numpy({"train_errors": self.train_errors_}, str(directory / "train_errors.safetensors"))
        (directory / "standardisation.json").write_text(json.dumps(self._meta()))

    def load_weights(self, directory: Path) -> None:
        from safetensors.numpy import load_file as load_numpy
        from safetensors.torch import load_file

        self._load_meta(json.loads((directory / "standardisation.json").read_text()))
        self.net_ = _autoencoder(len(self.features_), self.config)
        self.net_.load_state_dict(load_file(str(directory / "weights.safetensors")))
        self.net_.eval()
        self.train_errors_ = load_numpy(str(directory / "train_errors.safetensors"))["train_errors"]


# correlation breakdown ---------------------------------------------------------------
@dataclass
class CorrelationBreakdownConfig:
    jump: float = 0.10  # a jump: f_corr_21 `horizon` bars ahead exceeds today's by at least this
    horizon: int = 21
    n_estimators: int = 300
    learning_rate: float = 0.03
    num_leaves: int = 7
    min_child_samples: int = 100
    feature_fraction: float = 0.8
    lambda_l2: float = 5.0
    early_stopping_rounds: int = 30
    num_threads: int = 1
    seed: int = 0

    def validate(self) -> str | None:
        if not 0 < self.jump < 2:
            return f"jump must be in (0, 2) (a rise of the average correlation), got {self.jump}"
        if self.horizon < 1:
            return f"horizon must be at least 1 bar, got {self.horizon}"
        return None if 0 < self.learning_rate <= 1 else f"learning_rate must be in (0, 1], got {self.learning_rate}"


def correlation_jump(frame: pd.DataFrame, jump: float, horizon: int, column: str = "f_corr_21") -> pd.Series:
    """1 if ``column`` ``horizon`` bars ahead exceeds today's by ``jump``, 0 if not, NaN where either is missing.

    Computed within ``frame`` only (per entity): the last ``horizon`` rows have no target.
    """
    if column not in frame.columns:
        raise TreumError(f"correlation_breakdown needs the '{column}' feature; run with features=cross_asset")
    corr = frame[column].astype(float)
    ahead = corr.groupby(level="entity", sort=False).shift(-horizon)
    y = (ahead - corr >= jump).astype(float)
    return y.where(ahead.notna() & corr.notna())


class CorrelationBreakdown(StressModel):
    def _params(self) -> dict:
        cfg = self.config
        return {"objective": "binary", "learning_rate": cfg.learning_rate, "num_leaves": cfg.num_leaves,
                "min_child_samples": cfg.min_child_samples, "feature_fraction": cfg.feature_fraction,
                "lambda_l2": cfg.lambda_l2, "num_threads": cfg.num_threads, "seed": cfg.seed,
                "deterministic": True, "force_row_wise": True, "verbosity": -1}

    def _xy(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        ok, x = self._rows(frame)
        y = correlation_jump(frame, self.config.jump, self.config.horizon).to_numpy()[ok]
        keep = np.isfinite(y)
        return x[keep], y[keep].astype(int)

    def fit(self, data: pd.DataFrame, valid: pd.DataFrame | None = None) -> None:
        import lightgbm as lgb

        cfg = self.config
        self._standardiser(data)
        x, y = self._xy(data)
        if len(np.unique(y)) < 2:
            raise TreumError(f"correlation_breakdown: the training rows hold no {'jump' if y.sum() == 0 else 'calm'} "
                             f"of the average correlation (jump={cfg.jump}); lower model.jump or train on more data")
        train = lgb.Dataset(x, y, feature_name=self.features_)
        valid_sets, callbacks = [], []
        if valid is not None and len(valid):
            vx, vy = self._xy(valid)
            if len(np.unique(vy)) == 2:
                valid_sets = [lgb.Dataset(vx, vy, reference=train)]
                callbacks = [lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)]
        self.booster_ = lgb.train(self._params(), train, num_boost_round=cfg.n_estimators, valid_sets=valid_sets,
                                  callbacks=callbacks)

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        best = self.booster_.best_iteration or None
        return self._answer(data, lambda x: self.booster_.predict(x, num_iteration=best))

    def feature_importance(self) -> pd.Series:
        gain = self.booster_.feature_importance(importance_type="gain")
        return pd.Series(gain / max(gain.sum(), 1e-12), index=self.features_).sort_values(ascending=False)

    def save_weights(self, directory: Path) -> None:
        self.booster_.save_model(str(directory / "model.txt"), num_iteration=self.booster_.best_iteration or None)
        (directory / "standardisation.json").write_text(json.dumps(self._meta()))

    def load_weights(self, directory: Path) -> None:
        import lightgbm as lgb

        self._load_meta(json.loads((directory / "standardisation.json").read_text()))
        self.booster_ = lgb.Booster(model_file=str(directory / "model.txt"))


def _spec(cls, name, family, config_cls, desc, caps) -> ModelSpec:
    cls.spec = ModelSpec(name=name, family=family, task="anomaly", capabilities=frozenset(caps),
                         config_cls=config_cls, factory=cls, description=desc)
    return cls.spec


SPECS = [
    _spec(IsolationForestStress, "isolation_forest", "isolation_forest", IsolationForestConfig,
          "scikit-learn IsolationForest on the cross-asset features; anomaly score as a training percentile",
          ("probabilistic", "multi_asset", "uses_features")),
    _spec(AutoencoderStress, "autoencoder_stress", "autoencoder", AutoencoderStressConfig,
          "Lightning autoencoder trained on calm days; reconstruction error as a training percentile",
          ("probabilistic", "multi_asset", "uses_features")),
    _spec(CorrelationBreakdown, "correlation_breakdown", "gradient_boosting", CorrelationBreakdownConfig,
          "LightGBM P(the 20 stocks' average correlation jumps within 21 bars) as the stress score",
          ("probabilistic", "multi_asset", "native_importance", "uses_features")),
]


@hookimpl
def treum_models() -> list[ModelSpec]:
    return list(SPECS)
