"""Markov-switching regime detector with statsmodels.

A k-state Markov-switching regression of daily returns with switching mean and
variance. Predictions are *filtered* probabilities (using returns up to t),
never smoothed ones, which would look into the future.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from treum.core.hookspecs import hookimpl
from treum.core.model import PerEntityModel
from treum.core.specs import ModelSpec
from treum.core.targets import log_returns
from treum.zoo.hmm_regime import class_probabilities, state_classes


@dataclass
class MarkovRegimeConfig:
    k_regimes: int = 2
    smoothing: int = 5  # mean return over this many bars (backward) is the switching series
    bear_state: Literal["high_variance", "low_mean"] = "high_variance"
    search_reps: int = 5
    seed: int = 0

    def validate(self) -> str | None:
        if self.k_regimes < 2:
            return f"k_regimes must be at least 2, got {self.k_regimes}"
        if self.smoothing < 1:
            return f"smoothing must be at least 1, got {self.smoothing}"
        return None


def _series(frame: pd.DataFrame, smoothing: int) -> pd.Series:
    """The switching series: the mean percent log return over the last ``smoothing`` bars."""
    r = log_returns(frame).droplevel("entity")
    return r.rolling(smoothing, min_periods=smoothing).mean().dropna()


def _model(series: pd.Series, k: int):
    from statsmodels.tsa.regime_switching.markov_regression import MarkovRegression

    return MarkovRegression(series.to_numpy(), k_regimes=k, trend="c", switching_variance=True)


class MarkovRegime(PerEntityModel):
    def k(self) -> int:
        """The configured regimes, at least one per class of the task."""
        return max(self.config.k_regimes, len(self.require_task().prediction_columns()) if self.task else 2)

    def fit_entity(self, frame: pd.DataFrame) -> dict:
        k = self.k()
        res = _model(_series(frame, self.config.smoothing), k).fit(
            search_reps=self.config.search_reps, disp=False, rng=self.config.seed
        )
        params = np.asarray(res.params, dtype=float)
        names = list(res.model.param_names)
        means = np.array([params[names.index(f"const[{i}]")] for i in range(k)])
        variances = np.array([params[names.index(f"sigma2[{i}]")] for i in range(k)])
        bear = int(np.argmax(variances) if self.config.bear_state == "high_variance" else np.argmin(means))
        return {"params": params.tolist(), "bear_state": bear, "k": k, "state_class": state_classes(means, bear)}

    def predict_entity(self, frame: pd.DataFrame, params: dict) -> pd.DataFrame:
        s = _series(frame, self.config.smoothing)
        res = _model(s, int(params.get("k", self.config.k_regimes))).filter(np.asarray(params["params"]))
        probs = np.asarray(res.filtered_marginal_probabilities)
        entity = frame.index.get_level_values("entity")[0]
        idx = pd.MultiIndex.from_arrays([s.index, np.full(len(s), entity, dtype=object)], names=["timestamp", "entity"])
        return class_probabilities(probs, params, self.require_task(), idx)


MarkovRegime.spec = ModelSpec(
    name="markov_regime",
    family="markov_switching",
    task="regime",
    capabilities=frozenset({"probabilistic", "multi_asset", "sequential"}),
    config_cls=MarkovRegimeConfig,
    factory=MarkovRegime,
    description="Markov-switching regression of smoothed returns (statsmodels), filtered bear probability",
)


@hookimpl
def treum_models() -> list[ModelSpec]:
    return [MarkovRegime.spec]
