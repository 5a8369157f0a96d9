"""The specification's "GARCH + ML hybrid": GJR-GARCH's variance forecast corrected by LightGBM.

Per entity and per horizon h of the task: the GJR-GARCH-t forecast ``g_h`` (``treum.zoo.garch``,
parameters fitted on the training rows) is multiplied by ``exp(f_h(x))``, where ``f_h`` is a
LightGBM regression of ``log(realised variance / g_h)`` on the training rows only, from
realised-variance features that use bars up to t alone: lagged absolute returns (1, 5 and
21 bars), the Parkinson and Garman-Klass range estimators from OHLC (5 and 21 bars), and
``log g_h`` itself. A log-scale regression predicts the median ratio, not the mean, so the
correction is scaled by the training residuals' mean ``exp`` (Duan's smearing estimate);
QLIKE punishes a variance forecast that is too low far more than one too high.
Without OHLC columns the range features are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from treum.core.hookspecs import hookimpl
from treum.core.model import PerEntityModel
from treum.core.specs import ModelSpec
from treum.core.targets import log_returns
from treum.zoo.garch import GarchConfig, fit_garch, garch_variance, on_entity

LN2 = np.log(2.0)


@dataclass
class GarchHybridConfig:
    garch: GarchConfig = field(default_factory=GarchConfig)
    n_estimators: int = 200
    learning_rate: float = 0.03
    num_leaves: int = 8
    min_child_samples: int = 50
    seed: int = 0

    def validate(self) -> str | None:
        if self.n_estimators < 1 or not 0 < self.learning_rate <= 1:
            return f"n_estimators must be >= 1 and learning_rate in (0, 1], got {self.n_estimators}, {self.learning_rate}"
        if self.num_leaves < 2 or self.min_child_samples < 1:
            return f"num_leaves must be >= 2 and min_child_samples >= 1, got {self.num_leaves}, {self.min_child_samples}"
        return None


def features(frame: pd.DataFrame) -> pd.DataFrame:
    """Realised-variance features of one entity (timestamps as index), each from bars up to t."""
    r = log_returns(frame).droplevel("entity")
    out = {f"abs_r_{n}": r.abs().rolling(n, min_periods=n).mean() for n in (1, 5, 21)}
    cols = frame.columns
    if {"open", "high", "low", "close"} <= set(cols):
        f = frame.droplevel("entity")
        hl = 100 * np.log(f["high"] / f["low"])
        co = 100 * np.log(f["close"] / f["open"])
        parkinson = hl ** 2 / (4 * LN2)
        garman_klass = 0.5 * hl ** 2 - (2 * LN2 - 1) * co ** 2
        for n in (5, 21):
            out[f"parkinson_{n}"] = parkinson.rolling(n, min_periods=n).mean()
            out[f"garman_klass_{n}"] = garman_klass.rolling(n, min_periods=n).mean()
    return pd.DataFrame(out)


def _design(feats: pd.DataFrame, base: pd.DataFrame, h: int) -> pd.DataFrame:
    """The features (computed once per frame) beside the log GARCH forecast at horizon ``h``."""
    return feats.assign(**{f"log_garch_h{h}": np.log(base[f"var_h{h}"])})


class GarchHybrid(PerEntityModel):
    def fit_entity(self, frame: pd.DataFrame) -> dict:
        import lightgbm as lgb

        cfg = self.config
        horizons = self.require_task().horizons
        garch = fit_garch(frame, cfg.garch)
        base = garch_variance(frame, garch, cfg.garch, horizons)
        feats = features(frame).reindex(base.index)
        boosters = {}
        for h in horizons:
            target = f"target_var_h{h}"
            if target not in frame.columns:
                raise ValueError(f"garch_hybrid learns its correction from '{target}', which the training rows lack")
            x = _design(feats, base, h)
            rv = frame[target].droplevel("entity").reindex(base.index)
            with np.errstate(divide="ignore", invalid="ignore"):  # a zero realised variance: not a row
                y = np.log(rv / base[f"var_h{h}"])
            rows = np.isfinite(y) & (rv > 0) & x.notna().all(axis=1)
            if rows.sum() < 100:
                raise ValueError(f"garch_hybrid needs at least 100 labelled training rows at horizon {h}, "
                                 f"got {int(rows.sum())}")
            params = {"objective": "regression", "learning_rate": cfg.learning_rate, "num_leaves": cfg.num_leaves,
                      "min_child_samples": cfg.min_child_samples, "seed": cfg.seed, "deterministic": True,
                      "num_threads": 1, "verbose": -1}
            booster = lgb.train(params, lgb.Dataset(x[rows], y[rows]), num_boost_round=cfg.n_estimators)
            resid = y[rows] - booster.predict(x[rows])
            boosters[str(h)] = {"model": booster.model_to_string(), "smear": float(np.mean(np.exp(resid))),
                                "columns": list(x.columns)}
        return {"garch": garch, "boosters": boosters}

    def _booster(self, text: str):
        """A booster parsed from its saved text once, not on every prediction (serving asks per request)."""
        import lightgbm as lgb

        cache = self.__dict__.setdefault("_boosters", {})
        if text not in cache:
            cache[text] = lgb.Booster(model_str=text)
        return cache[text]

    def predict_entity(self, frame: pd.DataFrame, params: dict) -> pd.DataFrame:
        cfg = self.config
        horizons = self.require_task().horizons
        base = garch_variance(frame, params["garch"], cfg.garch, horizons)
        feats = features(frame).reindex(base.index)
        out = {}
        for h in horizons:
            b = params["boosters"][str(h)]
            booster = self._booster(b["model"])
            x = _design(feats, base, h)[b["columns"]]
            correction = np.full(len(x), np.nan)
            ok = x.notna().all(axis=1).to_numpy()
            if ok.any():
                correction[ok] = np.exp(booster.predict(x[ok])) * b["smear"]
            out[f"var_h{h}"] = base[f"var_h{h}"].to_numpy() * correction
        return on_entity(frame, pd.DataFrame(out, index=base.index))


GarchHybrid.spec = ModelSpec(
    name="garch_hybrid",
    family="garch_ml",
    task="volatility",
    capabilities=frozenset({"multi_asset", "multi_horizon", "sequential"}),
    config_cls=GarchHybridConfig,
    factory=GarchHybrid,
    description="GJR-GARCH-t variance corrected by LightGBM on realised-variance and range features (per horizon)",
)


@hookimpl
def treum_models() -> list[ModelSpec]:
    return [GarchHybrid.spec]
