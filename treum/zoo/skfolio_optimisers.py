"""skfolio's portfolio optimisers as models of the ``portfolio`` task: ``mean_risk``, ``hrp``, ``risk_parity``.

Each is a rolling-window optimiser: on every rebalance date it estimates its inputs from the
last ``lookback`` daily returns it is given (``WeightsModel.decide``) and solves for long-only,
fully invested weights, with the task's ``max_weight`` passed to skfolio as ``max_weights`` (the
task's risk layer applies the caps and the turnover limit again). Nothing is learnt in ``fit``:
the state is empty, and every decision reads only the history up to its date.

A solver failure on one date must neither stop an 18-year backtest nor slip through as
weights that are not a portfolio: the model keeps the previous target (the holdings, drifted
with prices; equal weights before the first one), logs a warning, and counts it in
``fallbacks_`` (and the dates in ``fallback_dates_``) for the latest ``predict``. Weights that
come back non-finite, negative or not summing to one count as a failure too. A ``predict`` in
which every optimisation failed is an error: that is a broken setup, not a bad date.

How the defaults were chosen (before any test-period figure was seen, and never changed by one):
from the literature and from the baselines beside them, not from the 2005-2022 backtest.

- ``lookback`` 252 bars and ``min_history`` 126: the baselines' window (inverse_vol, min_variance),
  so each optimiser differs from them by its objective only.
- ``mean_risk``: minimum CVaR at 95% (Rockafellar and Uryasev, 2000), the tail-risk counterpart
  of the minimum-variance baseline; the covariance is Ledoit-Wolf (2004) as in that baseline,
  and the expected returns are James-Stein shrunk (Jorion, 1986), which matters only for
  ``objective=max_sharpe`` (sample means of a year of returns are mostly noise).
- ``hrp``: variance and the sample covariance, as in Lopez de Prado (2016), who designed HRP to be
  robust to estimation error without shrinkage; Ward linkage, skfolio's default, which its
  documentation prefers to the paper's single linkage for its stability.
- ``risk_parity``: equal risk contributions in variance with the sample covariance
  (Maillard, Roncalli and Teiletche, 2010).

The 20 skfolio stocks are today's survivors: every figure on them is biased upward.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from treum.core.errors import TreumError
from treum.core.estimators import JsonStateModel
from treum.core.hookspecs import hookimpl
from treum.core.specs import ModelSpec
from treum.core.weights import WeightsModel

log = logging.getLogger(__name__)

# skfolio's RiskMeasure members (lower-case) that its convex optimisers and HRP both accept
RiskName = Literal[
    "variance", "semi_variance", "standard_deviation", "semi_deviation", "mean_absolute_deviation",
    "first_lower_partial_moment", "cvar", "evar", "worst_realization", "cdar", "max_drawdown",
    "average_drawdown", "edar", "ulcer_index", "gini_mean_difference",
]
CovarianceName = Literal["empirical", "ledoit_wolf", "oas", "denoise", "ew"]
MuName = Literal["empirical", "shrunk", "ew"]
LinkageName = Literal["single", "complete", "average", "weighted", "centroid", "median", "ward"]


# configs -----------------------------------------------------------------------
@dataclass
class WindowConfig:
    lookback: int = 252  # bars of daily returns behind each decision
    min_history: int = 126  # the fewest return bars a stock needs to be held
    covariance: CovarianceName = "empirical"  # the prior's covariance estimator
    half_life: float = 63.0  # bars; the half-life of the exponentially weighted (ew) estimators

    def validate(self) -> str | None:
        if self.min_history < 2:
            return f"min_history must be at least 2 return bars, got {self.min_history}"
        if self.lookback < self.min_history:
            return f"lookback ({self.lookback}) must be at least min_history ({self.min_history})"
        if not self.half_life > 0:
            return f"half_life must be positive (bars), got {self.half_life}"
        return None


@dataclass
class TailConfig(WindowConfig):
    beta: float = 0.95  # confidence level of cvar, evar, cdar and edar

    def validate(self) -> str | None:
        if not 0.5 <= self.beta < 1:
            return f"beta must be in [0.5, 1) (a tail confidence level such as 0.95), got {self.beta}"
        return super().validate()


@dataclass
class MeanRiskConfig(TailConfig):
    objective: Literal["min_risk", "max_sharpe"] = "min_risk"  # max_sharpe: the best mean / risk ratio
    risk_measure: RiskName = "cvar"
    mu: MuName = "shrunk"  # expected returns (used by max_sharpe only)
    covariance: CovarianceName = "ledoit_wolf"


@dataclass
class HRPConfig(WindowConfig):
    risk_measure: RiskName = "variance"  # tail measures at skfolio's fixed 95% (HRP takes no beta)
    linkage: LinkageName = "ward"  # how clusters are merged in the tree


@dataclass
class RiskParityConfig(TailConfig):
    risk_measure: RiskName = "variance"


# the models ----------------------------------------------------------------------
def _covariance(config: WindowConfig) -> Any:
    from skfolio.moments import OAS, DenoiseCovariance, EmpiricalCovariance, EWCovariance, LedoitWolf

    return {"empirical": EmpiricalCovariance, "ledoit_wolf": LedoitWolf, "oas": OAS,
            "denoise": DenoiseCovariance, "ew": lambda: EWCovariance(half_life=config.half_life)}[config.covariance]()


def _mu(config: MeanRiskConfig) -> Any:
    from skfolio.moments import EmpiricalMu, EWMu, ShrunkMu, ShrunkMuMethods

    return {"empirical": EmpiricalMu, "ew": lambda: EWMu(half_life=config.half_life),
            "shrunk": lambda: ShrunkMu(method=ShrunkMuMethods.JAMES_STEIN)}[config.mu]()


def _risk(name: str) -> Any:
    from skfolio import RiskMeasure

    return RiskMeasure[name.upper()]


def _betas(config: TailConfig) -> dict[str, float]:
    return {f"{m}_beta": config.beta for m in ("cvar", "evar", "cdar", "edar")}


class SkfolioOptimiser(WeightsModel, JsonStateModel):
    """A skfolio optimiser refitted on each rebalance date's window; subclasses build the estimator."""

    def __init__(self, config: Any):
        super().__init__(config)
        self.fallbacks_ = 0  # dates of the latest predict on which the solve failed and the model fell back
        self.fallback_dates_: list[str] = []
        self._solved = 0
        self._first_failure: str | None = None

    def fit(self, data, valid=None):
        self.state_ = {}  # nothing to learn: each decision estimates from its own window

    def estimator(self, max_weight: float) -> Any:
        """An unfitted skfolio optimiser with weights in [0, ``max_weight``] summing to one."""
        raise NotImplementedError

    def predict_from(self, data, start):
        self.fallbacks_, self.fallback_dates_, self._solved, self._first_failure = 0, [], 0, None
        out = super().predict_from(data, start)
        if self.fallbacks_ and not self._solved:
            # not a bad date but a bad setup: a backtest of fallbacks would pass for this model's figures
            raise TreumError(f"model '{self.spec.name}': all {self.fallbacks_} optimisations failed, the first with "
                             f"{self._first_failure}; check the config (risk_measure, covariance, lookback)")
        return out

    def decide(self, history, date, holdings):
        from threadpoolctl import threadpool_limits

        x = history.fillna(0.0)  # a stock missing on a day (rare in this data) earned nothing that day
        n = x.shape[1]
        if n == 1:
            return pd.Series(1.0, index=x.columns)
        cap = self.require_task().config.max_weight
        # an infeasible cap (n x cap < 1) is left to the task's risk layer, whose error says what to change
        model = self.estimator(float(cap) if cap is not None and cap * n >= 1 else 1.0)
        try:
            with threadpool_limits(1):  # 20 assets: threads cost more than they give, and the cores are shared
                model.fit(x)
            w = np.asarray(model.weights_, dtype=float)
            if w.shape != (n,) or not np.isfinite(w).all() or w.min() < -1e-6 or abs(w.sum() - 1) > 1e-4:
                raise ValueError(f"weights are not a long-only, fully invested portfolio (sum {w.sum():.6f})")
        except Exception as exc:  # noqa: BLE001 - any failure of one date's solve falls back, counted and logged
            return self._fall_back(x.columns, date, holdings, exc)
        self._solved += 1
        return pd.Series(np.clip(w, 0.0, None), index=x.columns)

    def _fall_back(self, names: pd.Index, date: pd.Timestamp, holdings: pd.Series | None,
                   exc: BaseException) -> pd.Series:
        self.fallbacks_ += 1
        self._first_failure = self._first_failure or f"{type(exc).__name__}: {str(exc)[:200]}"
        self.fallback_dates_.append(str(pd.Timestamp(date).date()))
        held = None if holdings is None else holdings.reindex(names, fill_value=0.0)
        keep = held is not None and float(held.sum()) > 0
        log.warning("%s: the optimisation on %s failed (%s: %s); %s (%d fallbacks so far)", self.spec.name,
                    pd.Timestamp(date).date(), type(exc).__name__, str(exc)[:200],
                    "keeping the previous target" if keep else "holding equal weights", self.fallbacks_)
        return held if keep else pd.Series(1.0 / len(names), index=names)


class MeanRiskOptimiser(SkfolioOptimiser):
    """skfolio's ``MeanRisk``: the minimum-risk or maximum mean/risk portfolio of the window.

    Defaults (minimum CVaR at 95%, Ledoit-Wolf covariance, James-Stein mean) are chosen from the
    literature, not from any backtest: see the module's docstring.
    """

    def estimator(self, max_weight):
        from skfolio.optimization import MeanRisk, ObjectiveFunction
        from skfolio.prior import EmpiricalPrior

        c = self.config
        objective = {"min_risk": ObjectiveFunction.MINIMIZE_RISK, "max_sharpe": ObjectiveFunction.MAXIMIZE_RATIO}
        return MeanRisk(objective_function=objective[c.objective], risk_measure=_risk(c.risk_measure),
                        prior_estimator=EmpiricalPrior(mu_estimator=_mu(c), covariance_estimator=_covariance(c)),
                        min_weights=0.0, max_weights=max_weight, budget=1.0, **_betas(c))


class HierarchicalRiskParityOptimiser(SkfolioOptimiser):
    """skfolio's ``HierarchicalRiskParity`` (Lopez de Prado, 2016): recursive bisection of a correlation tree."""

    def estimator(self, max_weight):
        from skfolio.cluster import HierarchicalClustering, LinkageMethod
        from skfolio.optimization import HierarchicalRiskParity
        from skfolio.prior import EmpiricalPrior
        from skfolio.seriation import HierarchicalSeriation

        c = self.config
        tree = HierarchicalClustering(linkage_method=LinkageMethod[c.linkage.upper()])
        return HierarchicalRiskParity(
            risk_measure=_risk(c.risk_measure), prior_estimator=EmpiricalPrior(covariance_estimator=_covariance(c)),
            seriation_estimator=HierarchicalSeriation(hierarchical_clustering_estimator=tree),
            min_weights=0.0, max_weights=max_weight)


class RiskParityOptimiser(SkfolioOptimiser):
    """skfolio's ``RiskBudgeting`` with equal budgets: every stock contributes the same share of the risk."""

    def estimator(self, max_weight):
        from skfolio.optimization import RiskBudgeting
        from skfolio.prior import EmpiricalPrior

        c = self.config
        args = dict(risk_measure=_risk(c.risk_measure), risk_budget=None, min_weights=0.0, max_weights=max_weight,
                    **_betas(c))
        # Clarabel fails on the unscaled risk-budgeting problem in cdar and edar (skfolio 1.12, seen on
        # random and real returns) and solves the same problem rescaled: skfolio's own fallback retries it
        # so (the answer is the risk-parity portfolio all the same, not one of this model's fallbacks)
        rescaled = RiskBudgeting(**args, prior_estimator=EmpiricalPrior(covariance_estimator=_covariance(c)),
                                 scale_objective=100.0)
        return RiskBudgeting(**args, prior_estimator=EmpiricalPrior(covariance_estimator=_covariance(c)),
                             fallback=rescaled)


def _spec(name: str, cls: type, desc: str, config_cls: type) -> ModelSpec:
    cls.spec = ModelSpec(name=name, family="portfolio_optimisation", task="portfolio",
                         capabilities=frozenset({"multi_asset", "sequential", "cross_sectional"}), config_cls=config_cls,
                         factory=cls, description=desc, baseline=False)
    return cls.spec


MODELS = [
    _spec("mean_risk", MeanRiskOptimiser, "skfolio MeanRisk on the last year: minimum CVaR 95% by default",
          MeanRiskConfig),
    _spec("hrp", HierarchicalRiskParityOptimiser, "skfolio hierarchical risk parity on the last year",
          HRPConfig),
    _spec("risk_parity", RiskParityOptimiser, "skfolio risk budgeting with equal risk contributions",
          RiskParityConfig),
]


@hookimpl
def treum_models() -> list[ModelSpec]:
    return list(MODELS)
