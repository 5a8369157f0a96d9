"""GARCH(1,1) and GJR-GARCH volatility forecasts with the ``arch`` package.

One model per entity, fitted on percent log returns. Forecasts at t use returns
up to t with the fitted parameters fixed (``arch_model(...).fix(params)``), so
predicting a test block never refits on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from treum.core.hookspecs import hookimpl
from treum.core.model import Model
from treum.core.specs import ModelSpec
from treum.core.targets import log_returns


@dataclass
class GarchConfig:
    vol: Literal["garch", "gjr"] = "gjr"
    dist: Literal["normal", "t", "skewt"] = "t"
    mean: Literal["constant", "zero"] = "constant"
    horizons: list[int] = field(default_factory=lambda: [1, 21])

    def validate(self) -> str | None:
        if not self.horizons or min(self.horizons) < 1:
            return f"horizons must be positive integers, got {self.horizons}"
        return None


def _arch_model(returns: pd.Series, cfg: GarchConfig):
    from arch import arch_model

    return arch_model(
        returns,
        mean="Constant" if cfg.mean == "constant" else "Zero",
        vol="GARCH",
        p=1,
        o=1 if cfg.vol == "gjr" else 0,
        q=1,
        dist={"normal": "normal", "t": "t", "skewt": "skewt"}[cfg.dist],
        rescale=False,
    )


def _parameter_names(am) -> list[str]:
    return list(am._all_parameter_names()) if hasattr(am, "_all_parameter_names") else list(am.parameter_names())


class Garch(Model):
    def fit(self, data: pd.DataFrame, valid: pd.DataFrame | None = None) -> "Garch":
        full = data if valid is None else pd.concat([data, valid]).sort_index()
        r = log_returns(full)
        self.params_: dict[str, dict[str, float]] = {}
        for entity, s in r.groupby(level="entity", sort=False):
            res = _arch_model(s.droplevel("entity").dropna(), self.config).fit(disp="off", show_warning=False)
            self.params_[str(entity)] = {k: float(v) for k, v in res.params.items()}
        self.fitted = True
        return self

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        r = log_returns(data)
        hmax = max(self.config.horizons)
        parts = []
        for entity, s in r.groupby(level="entity", sort=False):
            if str(entity) not in self.params_:
                raise ValueError(
                    f"garch was fitted per instrument on {', '.join(self.params_)}; it has no parameters for '{entity}'"
                )
            series = s.droplevel("entity").dropna()
            am = _arch_model(series, self.config)
            # JSON does not keep order: put the parameters in the model's own order
            params = pd.Series(self.params_[str(entity)])[_parameter_names(am)]
            fc = am.fix(params).forecast(horizon=hmax, start=series.index[0], reindex=False).variance
            out = pd.DataFrame(index=fc.index)
            cum = fc.to_numpy().cumsum(axis=1)
            for h in self.config.horizons:
                out[f"var_h{h}"] = cum[:, h - 1]
            out.index = pd.MultiIndex.from_arrays(
                [out.index, np.full(len(out), entity, dtype=object)], names=["timestamp", "entity"]
            )
            parts.append(out)
        pred = pd.concat(parts)
        return pred.reindex(data.index)

    def save_weights(self, directory: Path) -> None:
        (directory / "params.json").write_text(json.dumps(self.params_, indent=2, sort_keys=True))

    def load_weights(self, directory: Path) -> None:
        self.params_ = json.loads((directory / "params.json").read_text())


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
