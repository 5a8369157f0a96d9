"""Gaussian hidden Markov regime detector (hmmlearn) on return and realised volatility.

Two observed series per bar, both from prices up to that bar: the mean log return over
``smoothing`` bars and the log of realised volatility over ``vol_window`` bars. A
``n_states``-state Gaussian HMM (full covariances) is fitted with hmmlearn's EM on the
training rows. Predictions are *forward-filtered* probabilities, computed here from the
fitted parameters with the forward recursion alone: hmmlearn's ``predict_proba`` is the
forward-backward (smoothed) posterior, which reads later bars and would look ahead.
The bear state is the one with the highest mean volatility (``bear_state: high_vol``) or
the lowest mean return (``low_return``).
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


@dataclass
class HMMRegimeConfig:
    n_states: int = 2
    smoothing: int = 5  # bars of mean return
    vol_window: int = 21  # bars of realised volatility
    bear_state: Literal["high_vol", "low_return"] = "high_vol"
    n_iter: int = 200
    n_init: int = 5  # EM restarts from different seeds; the best likelihood is kept
    seed: int = 0

    def validate(self) -> str | None:
        if self.n_states < 2:
            return f"n_states must be at least 2, got {self.n_states}"
        if self.smoothing < 1 or self.vol_window < 2:
            return f"smoothing must be >= 1 and vol_window >= 2, got {self.smoothing} and {self.vol_window}"
        if self.n_iter < 1 or self.n_init < 1:
            return f"n_iter and n_init must be at least 1, got {self.n_iter} and {self.n_init}"
        return None


def _observations(frame: pd.DataFrame, smoothing: int, vol_window: int) -> pd.DataFrame:
    """Per bar: mean percent log return over ``smoothing`` bars, log realised volatility over ``vol_window``."""
    r = log_returns(frame).droplevel("entity")
    obs = pd.DataFrame({
        "ret": r.rolling(smoothing, min_periods=smoothing).mean(),
        "logvol": np.log(r.rolling(vol_window, min_periods=vol_window).std() + 1e-8),
    })
    return obs.dropna()


def _log_emissions(x: np.ndarray, means: np.ndarray, covars: np.ndarray) -> np.ndarray:
    """log N(x_t | mean_k, cov_k) for every bar t and state k."""
    from scipy.stats import multivariate_normal

    return np.column_stack([multivariate_normal(means[k], covars[k], allow_singular=True).logpdf(x)
                            for k in range(len(means))]).reshape(len(x), len(means))


def forward_filter(x: np.ndarray, startprob: np.ndarray, transmat: np.ndarray, means: np.ndarray,
                   covars: np.ndarray) -> np.ndarray:
    """P(state_t | x_1..x_t) for every t: the forward recursion, normalised each step (no later bar used)."""
    from scipy.special import logsumexp

    logb = _log_emissions(x, means, covars)
    logA = np.log(np.clip(transmat, 1e-300, None))
    out = np.empty_like(logb)
    alpha = np.log(np.clip(startprob, 1e-300, None)) + logb[0]
    out[0] = alpha - logsumexp(alpha)
    for t in range(1, len(x)):
        alpha = logsumexp(out[t - 1][:, None] + logA, axis=0) + logb[t]
        out[t] = alpha - logsumexp(alpha)
    return np.exp(out)


def state_classes(mean_returns: np.ndarray, bear: int) -> list[int]:
    """Each state's class for three classes: the bear state, the other state with the highest mean
    return is bull, the rest sideways (with two classes only the bear state counts)."""
    from treum.plugins.tasks.regime import BEAR, BULL, SIDEWAYS

    others = [k for k in range(len(mean_returns)) if k != bear]
    bull = max(others, key=lambda k: mean_returns[k])
    return [BEAR if k == bear else BULL if k == bull else SIDEWAYS for k in range(len(mean_returns))]


def class_probabilities(probs: np.ndarray, params: dict, task, index: pd.Index) -> pd.DataFrame:
    """The task's class columns from filtered state probabilities: summed over the states of each class."""
    from treum.plugins.tasks.regime import CLASS_COLUMNS

    if len(task.prediction_columns()) == 1:
        return pd.DataFrame({"p_bear": probs[:, int(params["bear_state"])]}, index=index)
    mapping = np.asarray(params["state_class"])
    return pd.DataFrame({CLASS_COLUMNS[c]: probs[:, mapping == c].sum(axis=1) for c in task.classes}, index=index)


class HMMRegime(PerEntityModel):
    def fit_entity(self, frame: pd.DataFrame) -> dict:
        from hmmlearn.hmm import GaussianHMM

        cfg = self.config
        n_states = self.n_states()
        x = _observations(frame, cfg.smoothing, cfg.vol_window).to_numpy()
        if len(x) < 10 * n_states:
            raise ValueError(f"hmm_regime needs at least {10 * n_states} bars of observations to fit "
                             f"{n_states} states, got {len(x)}")
        best, best_ll = None, -np.inf
        for k in range(cfg.n_init):
            hmm = GaussianHMM(n_components=n_states, covariance_type="full", n_iter=cfg.n_iter,
                              random_state=cfg.seed + k)
            hmm.fit(x)
            ll = hmm.score(x)
            if np.isfinite(ll) and ll > best_ll:
                best, best_ll = hmm, ll
        if best is None:
            raise ValueError("hmm_regime: EM found no finite likelihood; try other n_states or windows")
        means = np.asarray(best.means_)
        bear = int(np.argmax(means[:, 1]) if cfg.bear_state == "high_vol" else np.argmin(means[:, 0]))
        return {"startprob": best.startprob_.tolist(), "transmat": best.transmat_.tolist(),
                "means": means.tolist(), "covars": np.asarray(best.covars_).tolist(), "bear_state": bear,
                "state_class": state_classes(means[:, 0], bear), "log_likelihood": float(best_ll)}

    def n_states(self) -> int:
        """The configured states, at least one per class of the task."""
        return max(self.config.n_states, len(self.require_task().prediction_columns()) if self.task else 2)

    def predict_entity(self, frame: pd.DataFrame, params: dict) -> pd.DataFrame:
        obs = _observations(frame, self.config.smoothing, self.config.vol_window)
        probs = forward_filter(obs.to_numpy(), np.asarray(params["startprob"]), np.asarray(params["transmat"]),
                               np.asarray(params["means"]), np.asarray(params["covars"]))
        entity = frame.index.get_level_values("entity")[0]
        idx = pd.MultiIndex.from_arrays([obs.index, np.full(len(obs), entity, dtype=object)],
                                        names=["timestamp", "entity"])
        return class_probabilities(probs, params, self.require_task(), idx)


HMMRegime.spec = ModelSpec(
    name="hmm_regime",
    family="hidden_markov",
    task="regime",
    capabilities=frozenset({"probabilistic", "multi_asset", "sequential"}),
    config_cls=HMMRegimeConfig,
    factory=HMMRegime,
    description="Gaussian HMM (hmmlearn) on smoothed return and realised volatility, forward-filtered bear probability",
)


@hookimpl
def treum_models() -> list[ModelSpec]:
    return [HMMRegime.spec]
