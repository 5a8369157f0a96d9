"""Personalisation models: LightGBM lambdarank and personalised signal weighting (ranking), and a LightGBM
recommender (recommendation).

Both read the ``personal`` feature set (a user's profile, the signal, both their histories known
at t) and are trained and scored on SIMULATED users (``data=users_sim``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from treum.core.estimators import FeatureModel
from treum.core.hookspecs import hookimpl
from treum.core.queries import query_keys, query_metrics
from treum.core.specs import ModelSpec
from treum.zoo.gbm import GBMDirection, GBMDirectionConfig


@dataclass
class LambdaRankConfig:
    n_estimators: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 100
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 5.0
    eval_at: int = 5  # the NDCG cutoff LightGBM optimises and early-stops on
    early_stopping_rounds: int = 30
    num_threads: int = 2
    seed: int = 0

    def validate(self) -> str | None:
        if not 0 < self.learning_rate <= 1:
            return f"learning_rate must be in (0, 1], got {self.learning_rate}"
        if self.num_leaves < 2:
            return f"num_leaves must be at least 2, got {self.num_leaves}"
        if self.eval_at < 1:
            return f"eval_at must be at least 1, got {self.eval_at}"
        return None


def _query_rows(data: pd.DataFrame, features: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, graded relevance, query sizes) of labelled rows, each query's rows together."""
    sub = data[features + ["target"]].dropna().sort_index()  # (day, user:item): a query's rows are adjacent
    query, _ = query_keys(sub.index)
    sizes = np.bincount(query)[pd.unique(query)]
    return sub[features].to_numpy(float), sub["target"].to_numpy(float), sizes


class LambdaRank(GBMDirection):
    """LightGBM with the lambdarank objective: learns each user's order of signals from their features."""

    prediction = "score"

    def fit(self, data, valid=None):
        import lightgbm as lgb

        cfg = self.config
        self.feature_matrix(data)  # fixes features_ and refuses data without f_* columns
        x, y, sizes = _query_rows(data, self.features_)
        params = {
            "objective": "lambdarank", "metric": "ndcg", "eval_at": [cfg.eval_at], "label_gain": [0, 1, 3],
            "learning_rate": cfg.learning_rate, "num_leaves": cfg.num_leaves, "min_child_samples": cfg.min_child_samples,
            "feature_fraction": cfg.feature_fraction, "bagging_fraction": cfg.bagging_fraction,
            "bagging_freq": cfg.bagging_freq, "lambda_l2": cfg.lambda_l2, "num_threads": cfg.num_threads,
            "seed": cfg.seed, "deterministic": True, "force_row_wise": True, "verbosity": -1,
        }
        train_set = lgb.Dataset(x, y, group=sizes, feature_name=self.features_)
        valid_sets, callbacks = [], []
        if valid is not None and len(valid) and valid["target"].notna().any():
            vx, vy, vs = _query_rows(valid, self.features_)
            valid_sets = [lgb.Dataset(vx, vy, group=vs, reference=train_set)]
            callbacks.append(lgb.early_stopping(cfg.early_stopping_rounds, verbose=False))
        self.booster_ = lgb.train(params, train_set, num_boost_round=cfg.n_estimators, valid_sets=valid_sets,
                                  callbacks=callbacks)

    # predict, feature_importance, save_weights and load_weights: GBMDirection's, in column ``score``


class GBMRecommender(GBMDirection):
    """LightGBM classifier of a hit (the user follows the signal and it pays) on the personal features."""

    prediction = "p_hit"


# the history columns of the personal feature set that signal weighting reads
_OWN = ("f_user_signal_follow_rate", "f_user_signal_win_rate")
_CROWD = ("f_signal_follow_rate", "f_signal_win_rate")
_SEEN = "f_user_signal_shown_log"


@dataclass
class SignalWeightingConfig:
    # how many showings of a signal to a user weigh as much as the crowd's record; chosen on the training rows
    kappa_grid: list[float] = field(default_factory=lambda: [0.0, 5.0, 20.0, 50.0, 150.0, 500.0, 1e9])
    k: int = 5  # the NDCG cutoff the choice maximises

    def validate(self) -> str | None:
        if not self.kappa_grid or any(v < 0 for v in self.kappa_grid):
            return f"kappa_grid must hold non-negative numbers, got {self.kappa_grid}"
        return None


class SignalWeighting(FeatureModel):
    """Each user's own weight on each signal, from their history, shrunk towards the crowd's.

    The weight is the expected gain of showing the signal: P(follow) x (1 + 2 P(win)), once from
    the user's own record with this signal and once from every user's; they are blended with
    weight n / (n + kappa) on the user's own, n the times the user was shown the signal. kappa is
    the one fitted number: the value of ``kappa_grid`` with the best NDCG@k on the training rows.
    """

    def _score(self, data: pd.DataFrame, kappa: float) -> np.ndarray:
        own = data[_OWN[0]].to_numpy(float) * (1 + 2 * data[_OWN[1]].to_numpy(float))
        crowd = data[_CROWD[0]].to_numpy(float) * (1 + 2 * data[_CROWD[1]].to_numpy(float))
        n = np.expm1(data[_SEEN].to_numpy(float))
        w = n / (n + kappa) if kappa > 0 else np.ones_like(n)
        return w * own + (1 - w) * crowd

    def fit(self, data, valid=None):
        missing = [c for c in (*_OWN, *_CROWD, _SEEN) if c not in data.columns]
        if missing:
            from treum.core.errors import TreumError

            raise TreumError(f"signal_weighting reads {missing} of the personal feature set; run with features=personal")
        self.features_ = [*_OWN, *_CROWD, _SEEN]
        rows = data[self.features_ + ["target"]].dropna()
        best = None
        for kappa in self.config.kappa_grid:
            frame = pd.DataFrame({"score": self._score(rows, float(kappa)), "target": rows["target"]}, index=rows.index)
            ndcg = float(query_metrics(frame, "score", self.config.k)["ndcg"].mean())
            if best is None or ndcg > best[1] + 1e-12:
                best = (float(kappa), ndcg)
        self.kappa_, self.train_ndcg_ = best

    def predict(self, data):
        ok = data[self.features_].notna().all(axis=1).to_numpy()
        score = np.full(len(data), np.nan)
        score[ok] = self._score(data[ok], self.kappa_)
        return pd.DataFrame({"score": score}, index=data.index)

    def save_weights(self, directory):
        import json

        (directory / "weights.json").write_text(json.dumps({"kappa": self.kappa_, "train_ndcg": self.train_ndcg_}))
        self.save_features(directory)

    def load_weights(self, directory):
        import json

        state = json.loads((directory / "weights.json").read_text())
        self.kappa_, self.train_ndcg_ = float(state["kappa"]), float(state["train_ndcg"])
        self.load_features(directory)


LambdaRank.spec = ModelSpec(
    name="ltr_lambdarank",
    family="gradient_boosting",
    task="ranking",
    capabilities=frozenset({"multi_asset", "native_importance", "uses_features", "tree"}),
    config_cls=LambdaRankConfig,
    factory=LambdaRank,
    description="LightGBM lambdarank of each user's signals of the day on the personal features (SIMULATED users)",
)

SignalWeighting.spec = ModelSpec(
    name="signal_weighting",
    family="personalisation",
    task="ranking",
    capabilities=frozenset({"multi_asset", "uses_features"}),
    config_cls=SignalWeightingConfig,
    factory=SignalWeighting,
    description="each user's weight on each signal from their own history, shrunk towards the crowd's",
)


GBMRecommender.spec = ModelSpec(
    name="gbm_recommender",
    family="gradient_boosting",
    task="recommendation",
    capabilities=frozenset({"probabilistic", "multi_asset", "native_importance", "uses_features", "tree"}),
    config_cls=GBMDirectionConfig,
    factory=GBMRecommender,
    description="LightGBM classifier of P(a user follows the signal and it pays) on the personal features "
                "(SIMULATED users)",
)


@hookimpl
def treum_models() -> list[ModelSpec]:
    return [LambdaRank.spec, SignalWeighting.spec, GBMRecommender.spec]
