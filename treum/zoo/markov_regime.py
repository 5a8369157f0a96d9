"""Markov-switching regime detector with statsmodels.

A k-state Markov-switching regression of daily returns with switching mean and
variance. Predictions are *filtered* probabilities (using returns up to t),
never smoothed ones, which would look into the future.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from treum.core.hookspecs import hookimpl
from treum.core.model import Model
from treum.core.specs import ModelSpec
from treum.core.targets import log_returns


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


def _series(data: pd.DataFrame, smoothing: int) -> dict[str, pd.Series]:
    r = log_returns(data)
    out = {}
    for entity, s in r.groupby(level="entity", sort=False):
        s = s.droplevel("entity")
        out[str(entity)] = s.rolling(smoothing, min_periods=smoothing).mean().dropna()
    return out


def _model(series: pd.Series, k: int):
    from statsmodels.tsa.regime_switching.markov_regression import MarkovRegression

    return MarkovRegression(series.to_numpy(), k_regimes=k, trend="c", switching_variance=True)


class MarkovRegime(Model):
    def fit(self, data: pd.DataFrame, valid: pd.DataFrame | None = None) -> "MarkovRegime":
        full = data if valid is None else pd.concat([data, valid]).sort_index()
        self.params_: dict[str, list[float]] = {}
        self.bear_: dict[str, int] = {}
        k = self.config.k_regimes
        for entity, s in _series(full, self.config.smoothing).items():
            res = _model(s, k).fit(search_reps=self.config.search_reps, disp=False, rng=self.config.seed)
            params = np.asarray(res.params, dtype=float)
            names = list(res.model.param_names)
            means = np.array([params[names.index(f"const[{i}]")] for i in range(k)])
            variances = np.array([params[names.index(f"sigma2[{i}]")] for i in range(k)])
            bear = int(np.argmax(variances) if self.config.bear_state == "high_variance" else np.argmin(means))
            self.params_[entity] = params.tolist()
            self.bear_[entity] = bear
        self.fitted = True
        return self

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        parts = []
        for entity, s in _series(data, self.config.smoothing).items():
            if entity not in self.params_:
                raise ValueError(
                    f"markov_regime was fitted per instrument on {', '.join(self.params_)}; "
                    f"it has no parameters for '{entity}'"
                )
            res = _model(s, self.config.k_regimes).filter(np.asarray(self.params_[entity]))
            p_bear = np.asarray(res.filtered_marginal_probabilities)[:, self.bear_[entity]]
            idx = pd.MultiIndex.from_arrays(
                [s.index, np.full(len(s), entity, dtype=object)], names=["timestamp", "entity"]
            )
            parts.append(pd.DataFrame({"p_bear": p_bear}, index=idx))
        return pd.concat(parts).reindex(data.index)

    def save_weights(self, directory: Path) -> None:
        (directory / "params.json").write_text(
            json.dumps({"params": self.params_, "bear_state": self.bear_}, indent=2, sort_keys=True)
        )

    def load_weights(self, directory: Path) -> None:
        d = json.loads((directory / "params.json").read_text())
        self.params_, self.bear_ = d["params"], {k: int(v) for k, v in d["bear_state"].items()}


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
