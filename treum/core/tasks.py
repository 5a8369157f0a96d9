"""Tasks fix what a prediction means, how it is scored and which baselines stand beside it.

Each task builds its target columns from a Panel, names the prediction columns
a model of the task must return, scores out-of-sample predictions, and says
when a model has beaten its baselines (the gate from "registered" to "validated").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from treum.core import metrics, targets
from treum.core.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class Task:
    name: str
    prediction_columns: tuple[str, ...]
    # (label, model name, config overrides): a baseline is a registered model with a fixed config
    baselines: tuple[tuple[str, str, dict], ...]
    primary_metric: str
    higher_is_better: bool

    def horizons(self, cfg: Mapping[str, Any]) -> list[int]:
        return [int(h) for h in cfg.get("horizons", [cfg.get("horizon", 1)])]

    def max_horizon(self, cfg: Mapping[str, Any]) -> int:
        """How far a label looks ahead: the purge the walk-forward loop needs."""
        if self.name == "regime":
            return 0
        return max(self.horizons(cfg))

    def make_targets(self, panel: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.DataFrame:
        out = pd.DataFrame(index=panel.index)
        if self.name == "direction":
            main = int(cfg.get("horizon", 1))
            ties = str(cfg.get("ties", "drop"))
            out["target"] = targets.direction_target(panel, main, ties)
            out["fwd_return"] = targets.forward_return(panel, main)
            for h in self.horizons(cfg):
                if h != main:
                    out[f"target_h{h}"] = targets.direction_target(panel, h, ties)
        elif self.name == "volatility":
            for h in self.horizons(cfg):
                out[f"target_var_h{h}"] = targets.forward_variance(panel, h)
        elif self.name == "regime":
            out["target"] = targets.regime_target(
                panel, float(cfg.get("bull_threshold", 0.2)), float(cfg.get("bear_threshold", 0.2))
            )
        else:  # pragma: no cover - guarded by get_task
            raise ConfigError(f"task '{self.name}' has no targets yet")
        return out

    def score(self, oos: pd.DataFrame, cfg: Mapping[str, Any], n_boot: int, seed: int) -> dict[str, float]:
        """Metrics of out-of-sample predictions joined with their targets."""
        if self.name == "direction":
            ok = oos["target"].notna() & oos["p_up"].notna()
            sub = oos[ok]
            return metrics.direction_metrics(
                sub["target"].to_numpy(), sub["p_up"].to_numpy(), sub["fwd_return"].to_numpy(), n_boot, seed
            )
        if self.name == "volatility":
            return metrics.volatility_metrics(oos, self.horizons(cfg))
        if self.name == "regime":
            ok = oos["target"].notna() & oos["p_bear"].notna()
            sub = oos[ok]
            if sub.index.get_level_values("entity").nunique() > 1:
                # dating and lags are per instrument; score the first and say so
                first = sub.index.get_level_values("entity")[0]
                sub = sub.xs(first, level="entity", drop_level=False)
            return metrics.regime_metrics(
                sub["target"].to_numpy(), sub["p_bear"].to_numpy(), sub.index.get_level_values("timestamp")
            )
        raise ConfigError(f"task '{self.name}' cannot be scored yet")

    def compare(self, oos: pd.DataFrame, reference: pd.DataFrame, cfg: Mapping[str, Any]) -> dict[str, float]:
        """Tests against the task's reference baseline on the same rows (Diebold-Mariano for volatility)."""
        if self.name != "volatility":
            return {}
        out: dict[str, float] = {}
        joined = oos.join(reference, rsuffix="_ref", how="inner")
        for h in self.horizons(cfg):
            rv = joined[f"target_var_h{h}"].to_numpy()
            ok = np.isfinite(rv) & np.isfinite(joined[f"var_h{h}"]) & np.isfinite(joined[f"var_h{h}_ref"])
            la = metrics.qlike(rv[ok], joined[f"var_h{h}"].to_numpy()[ok])
            lb = metrics.qlike(rv[ok], joined[f"var_h{h}_ref"].to_numpy()[ok])
            # overlapping h-day windows: NW lag h-1; daily origins so bars overlap
            stat, p = metrics.diebold_mariano(la, lb, horizon=h)
            out[f"dm_stat_h{h}"], out[f"dm_pvalue_h{h}"] = stat, p
        return out

    def beats(self, model_metrics: Mapping[str, float], baseline_metrics: list[Mapping[str, float]]) -> bool:
        """True when the model's primary metric is better than every baseline's."""
        mine = model_metrics.get(self.primary_metric, float("nan"))
        if not np.isfinite(mine):
            return False
        for other in baseline_metrics:
            theirs = other.get(self.primary_metric, float("nan"))
            if not np.isfinite(theirs):
                continue
            if (self.higher_is_better and mine <= theirs) or (not self.higher_is_better and mine >= theirs):
                return False
        return True


TASK_TABLE: dict[str, Task] = {
    "direction": Task(
        "direction",
        ("p_up",),
        (("majority_class", "majority_class", {}), ("always_up", "always_up", {}), ("lagged_logit", "lagged_logit", {})),
        "auc",
        True,
    ),
    "volatility": Task(
        "volatility",
        ("var_h1", "var_h21"),
        (("garch11", "garch", {"vol": "garch", "dist": "normal"}), ("ewma_0.94", "ewma_baseline", {})),
        "qlike_h1",
        False,
    ),
    "regime": Task(
        "regime",
        ("p_bear",),
        (("ma200_rule", "ma200_rule", {}), ("majority_regime", "majority_regime", {})),
        "balanced_accuracy",
        True,
    ),
}

# the baseline a volatility model is tested against with Diebold-Mariano
REFERENCE_BASELINE = {"volatility": "garch11"}


def get_task(name: str) -> Task:
    if name not in TASK_TABLE:
        raise ConfigError(
            f"task '{name}' has no evaluation yet{did_you_mean(name, TASK_TABLE)} "
            f"(evaluated tasks: {', '.join(TASK_TABLE)})"
        )
    return TASK_TABLE[name]
