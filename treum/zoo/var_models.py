"""VaR and ES models of the ``risk`` task on GJR-GARCH(1,1,1), one per entity, with ``arch``.

Both fit GJR-GARCH on the training rows' percent log returns with ``treum.zoo.garch``'s helpers
(``fit_garch``), then run forward over the context from the saved parameters, never refitting
inside ``predict`` (``garch_variance``: the next bar's variance at every bar, from returns up
to that bar). With mean mu and next-bar volatility sigma, the next log return is mu + sigma z;
the task's simple return is exp(that / 100) - 1, a monotone map, so

    VaR = -100 (exp((mu + sigma q) / 100) - 1),   ES = -100 E[exp((mu + sigma z) / 100) - 1 | z <= q]

exactly, for q the ``1 - level`` quantile of z:

- ``fhs_garch``: filtered historical simulation: z is the training rows' standardised residuals
  (Gaussian quasi-maximum likelihood), q their empirical quantile and the ES the mean over the
  residuals at or below it; the residuals' tails are saved beside the parameters;
- ``garch_skewt``: parametric: z is Hansen's skewed Student-t fitted with the GARCH; q its
  quantile and the ES the tail mean on a fine grid of the tail probability.

Parameters and residual tails are saved as JSON (``params.json``), never pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from treum.core.hookspecs import hookimpl
from treum.core.model import PerEntityModel
from treum.core.risk import level_key
from treum.core.specs import ModelSpec
from treum.core.targets import log_returns
from treum.zoo.garch import GarchConfig, fit_garch, garch_variance, on_entity

ES_GRID = 2000  # tail probabilities at which garch_skewt's ES averages the quantile


@dataclass
class FhsGarchConfig:
    vol: Literal["gjr", "garch"] = "gjr"
    mean: Literal["constant", "zero"] = "constant"
    dist: Literal["normal", "t", "skewt"] = "normal"  # the likelihood of the fit only; the tails are the residuals'


@dataclass
class GarchSkewtConfig:
    vol: Literal["gjr", "garch"] = "gjr"
    mean: Literal["constant", "zero"] = "constant"


def _next_bar(frame: pd.DataFrame, params: dict[str, float], cfg: GarchConfig) -> tuple[float, np.ndarray, pd.Index]:
    """(mu, sigma of the next bar's log return at every bar with a return, their timestamps), in percent."""
    var = garch_variance(frame, params, cfg, (1,))["var_h1"]
    return float(params.get("mu", 0.0)), np.sqrt(var.to_numpy(dtype=float)), var.index


def _tail_losses(mu: float, sigma: np.ndarray, q: float, tail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(VaR, ES) in percent of simple return, from log-return quantile q and tail points of z."""
    var = -100 * np.expm1((mu + sigma * q) / 100)
    es = -100 * np.expm1((mu + sigma[:, None] * tail[None, :]) / 100).mean(axis=1)
    return var, es


def standardised_residuals(frame: pd.DataFrame, params: dict[str, float], cfg: GarchConfig) -> np.ndarray:
    """(r[t] - mu) / sigma[t] on one entity's rows, sigma[t] forecast at t-1 (the first return has none)."""
    mu, sigma, index = _next_bar(frame, params, cfg)
    r = log_returns(frame).droplevel("entity").reindex(index).to_numpy(dtype=float)
    z = (r[1:] - mu) / sigma[:-1]
    return z[np.isfinite(z)]


class FhsGarch(PerEntityModel):
    def _garch(self) -> GarchConfig:
        return GarchConfig(vol=self.config.vol, dist=self.config.dist, mean=self.config.mean)

    def fit_entity(self, frame: pd.DataFrame) -> dict[str, Any]:
        cfg = self._garch()
        params = fit_garch(frame, cfg)
        z = standardised_residuals(frame, params, cfg)
        if len(z) < 250:
            raise ValueError(f"fhs_garch needs at least 250 training returns per entity, got {len(z)}")
        tails = {}
        for level in self.require_task().levels:
            q = float(np.quantile(z, 1 - level))
            tails[level_key(level)] = {"q": q, "tail": sorted(float(v) for v in z[z <= q])}
        return {"garch": params, "residuals": len(z), "tails": tails}

    def predict_entity(self, frame: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
        mu, sigma, index = _next_bar(frame, params["garch"], self._garch())
        cols = {}
        for level in self.require_task().levels:
            k = level_key(level)
            if k not in params["tails"]:
                raise ValueError(f"fhs_garch was fitted for levels {sorted(params['tails'])}, not {level}; refit it")
            t = params["tails"][k]
            cols[f"var_{k}"], cols[f"es_{k}"] = _tail_losses(mu, sigma, t["q"], np.asarray(t["tail"]))
        return on_entity(frame, pd.DataFrame(cols, index=index)[list(self.require_task().prediction_columns())])


class GarchSkewt(PerEntityModel):
    def _garch(self) -> GarchConfig:
        return GarchConfig(vol=self.config.vol, dist="skewt", mean=self.config.mean)

    def fit_entity(self, frame: pd.DataFrame) -> dict[str, Any]:
        return {"garch": fit_garch(frame, self._garch())}

    def predict_entity(self, frame: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
        from arch.univariate import SkewStudent

        garch = params["garch"]
        mu, sigma, index = _next_bar(frame, garch, self._garch())
        shape = [garch["eta"], garch["lambda"]]
        cols = {}
        for level in self.require_task().levels:
            a, k = 1 - level, level_key(level)
            q = float(SkewStudent().ppf(a, shape))
            # midpoints of ES_GRID equal slices of (0, a): the ES is the mean quantile over the tail
            tail = np.asarray(SkewStudent().ppf(a * (np.arange(ES_GRID) + 0.5) / ES_GRID, shape), dtype=float)
            cols[f"var_{k}"], cols[f"es_{k}"] = _tail_losses(mu, sigma, q, tail)
        return on_entity(frame, pd.DataFrame(cols, index=index)[list(self.require_task().prediction_columns())])


FhsGarch.spec = ModelSpec(
    name="fhs_garch", family="garch", task="risk", capabilities=frozenset({"multi_asset", "sequential"}),
    config_cls=FhsGarchConfig, factory=FhsGarch,
    description="filtered historical simulation: GJR-GARCH(1,1,1) with the training residuals' empirical tails")
GarchSkewt.spec = ModelSpec(
    name="garch_skewt", family="garch", task="risk", capabilities=frozenset({"multi_asset", "sequential"}),
    config_cls=GarchSkewtConfig, factory=GarchSkewt,
    description="GJR-GARCH(1,1,1) with Hansen's skewed Student-t innovations, parametric VaR and ES")


@hookimpl
def treum_models() -> list[ModelSpec]:
    return [FhsGarch.spec, GarchSkewt.spec]
