"""GARCH(1,1) and GJR-GARCH volatility forecasts with the ``arch`` package.

One model per entity, fitted on percent log returns. Forecasts at t use returns
up to t with the fitted parameters fixed (``arch_model(...).fix(params)``), so
predicting a test block never refits on it. The horizons come from the task
(``task.horizons``): the h-bar forecast is the sum of the next h daily variances.
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
class GarchConfig:
    vol: Literal["garch", "gjr"] = "gjr"
    dist: Literal["normal", "t", "skewt"] = "t"
    mean: Literal["constant", "zero"] = "constant"


def _arch_model(returns: pd.Series, cfg: GarchConfig):
    from arch import arch_model

    return arch_model(
        returns,
        mean="Constant" if cfg.mean == "constant" else "Zero",
        vol="GARCH",
        p=1,
        o=1 if cfg.vol == "gjr" else 0,
        q=1,
        dist=cfg.dist,
        rescale=False,
    )


def _parameter_names(am) -> list[str]:
    return list(am._all_parameter_names()) if hasattr(am, "_all_parameter_names") else list(am.parameter_names())


def _returns(frame: pd.DataFrame) -> pd.Series:
    return log_returns(frame).droplevel("entity").dropna()


def fit_garch(frame: pd.DataFrame, cfg: GarchConfig) -> dict[str, float]:
    """The model's parameters, fitted on one entity's percent log returns."""
    res = _arch_model(_returns(frame), cfg).fit(disp="off", show_warning=False)
    return {k: float(v) for k, v in res.params.items()}


def garch_variance(frame: pd.DataFrame, params: dict[str, float], cfg: GarchConfig,
                   horizons: tuple[int, ...]) -> pd.DataFrame:
    """``var_h{h}`` at every bar of one entity (timestamps as index), from returns up to that bar."""
    series = _returns(frame)
    am = _arch_model(series, cfg)
    # JSON does not keep order: put the parameters in the model's own order
    fixed = pd.Series(params)[_parameter_names(am)]
    fc = am.fix(fixed).forecast(horizon=max(horizons), start=series.index[0], reindex=False).variance
    cum = fc.to_numpy().cumsum(axis=1)
    return pd.DataFrame({f"var_h{h}": cum[:, h - 1] for h in horizons}, index=fc.index)


def on_entity(frame: pd.DataFrame, values: pd.DataFrame) -> pd.DataFrame:
    """``values`` (indexed by timestamp) on the (timestamp, entity) index of one entity's frame."""
    entity = frame.index.get_level_values("entity")[0]
    values = values.copy()
    values.index = pd.MultiIndex.from_arrays([values.index, np.full(len(values), entity, dtype=object)],
                                             names=["timestamp", "entity"])
    return values


class Garch(PerEntityModel):
    def fit_entity(self, frame: pd.DataFrame) -> dict[str, float]:
        return fit_garch(frame, self.config)

    def predict_entity(self, frame: pd.DataFrame, params: dict[str, float]) -> pd.DataFrame:
        return on_entity(frame, garch_variance(frame, params, self.config, self.require_task().horizons))


Garch.spec = ModelSpec(
    name="garch",
    family="garch",
    task="volatility",
    capabilities=frozenset({"multi_asset", "multi_horizon", "sequential"}),
    config_cls=GarchConfig,
    factory=Garch,
    description="GJR-GARCH(1,1,1) with Student-t errors by default (vol=garch for plain GARCH(1,1))",
)


@hookimpl
def treum_models() -> list[ModelSpec]:
    return [Garch.spec]
