"""A third-party treum plugin in one file: the momentum-sign direction model.

P(up) is the training hit rate of "the next bar follows the sign of the last
``lookback`` bars' return". Its YAML lives in this package's ``conf/model/``,
which the plugin adds to Hydra's search path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from treum.core.hookspecs import hookimpl
from treum.core.model import Model
from treum.core.specs import ModelSpec


@dataclass
class MomentumSignConfig:
    lookback: int = 21


class MomentumSign(Model):
    def _signal(self, data: pd.DataFrame) -> pd.Series:
        logp = np.log(data["close"].astype(float))
        return (logp - logp.groupby(level="entity").shift(self.config.lookback)).apply(np.sign)

    def fit(self, data, valid=None):
        s = self._signal(data)
        ok = s.notna() & data["target"].notna() & (s != 0)
        follows = ((s[ok] > 0) == (data["target"][ok] > 0.5)).mean()
        self.hit_rate_ = float(follows)
        self.fitted = True
        return self

    def predict(self, data):
        s = self._signal(data)
        p = np.where(s > 0, self.hit_rate_, np.where(s < 0, 1 - self.hit_rate_, 0.5))
        p = np.where(s.isna(), np.nan, p)
        return pd.DataFrame({"p_up": p}, index=data.index)

    def save_weights(self, directory: Path) -> None:
        (directory / "state.json").write_text(json.dumps({"hit_rate": self.hit_rate_}))

    def load_weights(self, directory: Path) -> None:
        self.hit_rate_ = json.loads((directory / "state.json").read_text())["hit_rate"]


MomentumSign.spec = ModelSpec(
    name="momentum_sign",
    family="rule",
    task="direction",
    capabilities=frozenset({"probabilistic", "multi_asset", "sequential"}),
    config_cls=MomentumSignConfig,
    factory=MomentumSign,
    description="P(up) from the sign of the last lookback bars' return and its training hit rate",
)


@hookimpl
def treum_models():
    return [MomentumSign.spec]


@hookimpl
def treum_config_searchpath():
    return ["pkg://treum_example_plugin.conf"]
