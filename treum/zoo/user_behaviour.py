"""Models of users' behaviour: k-means segments with their descriptions, and a risk-appetite regressor.

Both read the ``behaviour`` feature set (rows of day x user, ``users_sim_activity``) and are
trained and scored on SIMULATED users.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from treum.core.estimators import FeatureModel, predict_rows
from treum.core.errors import TreumError
from treum.core.hookspecs import hookimpl
from treum.core.specs import ModelSpec
from treum.zoo.gbm import GBMDirection, GBMDirectionConfig

BEHAVIOUR = ["f_b_active_rate", "f_b_follow_rate", "f_b_follow_risk", "f_b_follow_log_holding", "f_b_skill_gap"]
PROFILE_COLUMNS = ("risk_tolerance", "experience", "age_band", "region", "account_size")


@dataclass
class KMeansConfig:
    k_grid: list[int] = field(default_factory=lambda: [2, 3, 4, 5, 6])  # k is chosen by silhouette on training rows
    sample: int = 4000  # training rows the choice of k is scored on
    seed: int = 0

    def validate(self) -> str | None:
        if not self.k_grid or min(self.k_grid) < 2:
            return f"k_grid must hold numbers of clusters >= 2, got {self.k_grid}"
        return None


class BehaviourKMeans(FeatureModel):
    """k-means on the standardised trailing behaviour; k from ``k_grid`` by silhouette on the training rows.

    ``summary()`` describes each cluster: its share of rows, its centre in the behaviour's own units,
    and the most common stated profile of its users.
    """

    def fit(self, data, valid=None):
        from sklearn.cluster import KMeans
        from sklearn.metrics import silhouette_score

        missing = [c for c in BEHAVIOUR if c not in data.columns]
        if missing:
            raise TreumError(f"behaviour_kmeans reads {missing} of the behaviour feature set; run with features=behaviour")
        self.features_ = list(BEHAVIOUR)
        rows = data[self.features_].dropna()
        x = rows.to_numpy(float)
        self.mean_, self.scale_ = x.mean(axis=0), x.std(axis=0).clip(1e-12)
        z = (x - self.mean_) / self.scale_
        rng = np.random.default_rng(self.config.seed)
        pick = rng.choice(len(z), size=min(self.config.sample, len(z)), replace=False)
        best = None
        for k in self.config.k_grid:
            km = KMeans(n_clusters=int(k), n_init=4, random_state=self.config.seed).fit(z)
            s = float(silhouette_score(z[pick], km.labels_[pick]))
            if best is None or s > best[0] + 1e-9:
                best = (s, int(k), km)
        self.silhouette_, k, km = best
        self.centres_ = km.cluster_centers_
        labels = km.labels_
        self.descriptions_ = self._describe(rows, labels, data)

    def _describe(self, rows: pd.DataFrame, labels: np.ndarray, data: pd.DataFrame) -> list[dict[str, Any]]:
        out = []
        for c in range(len(self.centres_)):
            members = rows.index[labels == c]
            centre = dict(zip(self.features_, (self.centres_[c] * self.scale_ + self.mean_).round(4).tolist()))
            profile = {col: data.loc[members, col].value_counts(normalize=True).round(3).head(2).to_dict()
                       for col in PROFILE_COLUMNS if col in data.columns}
            out.append({"cluster": c, "share": round(float((labels == c).mean()), 4), "centre": centre,
                        "profile": profile})
        return out

    def predict(self, data):
        """The nearest centre's number; a row without enough behaviour to place (too few follows in the
        window) gets one more number, k: the users the service knows too little about yet."""
        def assign(x: np.ndarray) -> np.ndarray:
            z = (x - self.mean_) / self.scale_
            return ((z[:, None, :] - self.centres_[None]) ** 2).sum(axis=2).argmin(axis=1).astype(float)

        out = predict_rows(data, self.features_, assign, "cluster")
        out["cluster"] = out["cluster"].fillna(float(len(self.centres_)))
        return out

    def summary(self) -> dict[str, Any]:
        """k, the training silhouette and each cluster's description (the release report shows it)."""
        return {"k": len(self.centres_), "training_silhouette": round(self.silhouette_, 4),
                "clusters": self.descriptions_,
                "unplaced": f"cluster {len(self.centres_)}: rows with too little behaviour in the window to place"}

    def save_weights(self, directory):
        (directory / "kmeans.json").write_text(json.dumps({
            "mean": self.mean_.tolist(), "scale": self.scale_.tolist(), "centres": self.centres_.tolist(),
            "silhouette": self.silhouette_, "descriptions": self.descriptions_}, sort_keys=True))
        self.save_features(directory)

    def load_weights(self, directory):
        state = json.loads((directory / "kmeans.json").read_text())
        self.mean_, self.scale_ = np.asarray(state["mean"]), np.asarray(state["scale"])
        self.centres_, self.silhouette_ = np.asarray(state["centres"]), float(state["silhouette"])
        self.descriptions_ = state["descriptions"]
        self.load_features(directory)


class RiskAppetiteGBM(GBMDirection):
    """LightGBM regression of the risk a user will follow next month on their behaviour and stated profile."""

    prediction = "risk_appetite"
    objective = "regression"
    label_dtype = float

    def feature_matrix(self, data, target="target", dtype=float):
        """Rows with a label; a missing behaviour figure (fewer than min_follows follows) stays NaN, which
        LightGBM routes down its own branch, instead of dropping the quietest users."""
        if not getattr(self, "features_", None):
            self.features_ = [c for c in data.columns if str(c).startswith("f_")]
            if not self.features_:
                raise TreumError("risk_appetite_gbm uses features, but the data has no f_* columns")
        sub = data[data[target].notna()]
        return sub[self.features_].to_numpy(float), sub[target].to_numpy(float)

    def predict(self, data):
        best = self.booster_.best_iteration or None
        values = self.booster_.predict(data[self.features_].to_numpy(float), num_iteration=best)
        return pd.DataFrame({"risk_appetite": np.clip(values, 0.0, 3.0)}, index=data.index)


BehaviourKMeans.spec = ModelSpec(
    name="behaviour_kmeans", family="clustering", task="segmentation",
    capabilities=frozenset({"multi_asset", "uses_features"}), config_cls=KMeansConfig, factory=BehaviourKMeans,
    description="k-means on users' trailing behaviour, k by silhouette, each cluster described (SIMULATED users)",
)
RiskAppetiteGBM.spec = ModelSpec(
    name="risk_appetite_gbm", family="gradient_boosting", task="risk_profile",
    capabilities=frozenset({"multi_asset", "native_importance", "uses_features", "tree"}),
    config_cls=GBMDirectionConfig, factory=RiskAppetiteGBM,
    description="LightGBM regression of next month's followed risk on behaviour and profile (SIMULATED users)",
)


@hookimpl
def treum_models() -> list[ModelSpec]:
    return [BehaviourKMeans.spec, RiskAppetiteGBM.spec]
