"""Fairness over user segments: fairlearn's MetricFrame on what a model recommended and what happened.

For every segment (risk tolerance, account size, region, experience, age band) the check
computes, per group: rows, selection rate (the share of the group's offered items the model
recommended), true- and false-positive rates of the recommendation against the outcome
(followed), and the mean per-query quality (NDCG). Three checks per segment, each a pass or a
fail against its threshold in ``conf/fairness/segments.yaml`` (null: reported, not judged):

- ``demographic_parity_difference``: the largest gap in selection rate between two groups;
- ``equalized_odds_difference``: the larger of the largest gaps in true- and false-positive rate;
- ``quality_difference``: the largest gap in mean NDCG between two groups.

Groups smaller than ``min_group_rows`` are shown but left out of the differences (a gap
between 12 people and 3,000 is noise, not evidence), and the equalised-odds difference compares
only groups with at least ``min_group_outcomes`` positive and negative rows. ``passed`` is None
when nothing could be judged: not a pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from treum.core.hookspecs import hookimpl
from treum.core.specs import FairnessCheckSpec

SEGMENTS = ["risk_tolerance", "account_size", "region", "experience", "age_band"]


@dataclass
class SegmentFairnessConfig:
    segments: list[str] = field(default_factory=lambda: list(SEGMENTS))
    demographic_parity_difference: float | None = 0.10
    equalized_odds_difference: float | None = 0.10
    quality_difference: float | None = 0.05
    min_group_rows: int = 100
    min_group_outcomes: int = 20  # equalised odds: a group needs this many positive and negative rows to be compared

    def validate(self) -> str | None:
        if not self.segments:
            return "segments must name at least one column of user segments"
        for name in ("demographic_parity_difference", "equalized_odds_difference", "quality_difference"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                return f"{name} must be in [0, 1] or null, got {value}"
        if self.min_group_rows < 1 or self.min_group_outcomes < 1:
            return (f"min_group_rows and min_group_outcomes must be at least 1, got {self.min_group_rows} and "
                    f"{self.min_group_outcomes}")
        return None


def _round(x: Any) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def check(decisions: pd.DataFrame, segments: pd.DataFrame, config: SegmentFairnessConfig) -> dict[str, Any]:
    """Per segment, fairlearn's MetricFrame by group and the three differences judged against their thresholds."""
    from fairlearn.metrics import (
        MetricFrame,
        count,
        demographic_parity_difference,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    missing = [s for s in config.segments if s not in segments.columns]
    if missing:
        raise ValueError(f"fairness segments {missing} are not columns of the data (it has {sorted(segments.columns)}); "
                         "set fairness.segments to some of those")
    rows = decisions.join(segments[config.segments], how="inner")
    y_true = rows["positive"].to_numpy(int)
    y_pred = rows["selected"].to_numpy(int)
    checks: list[dict[str, Any]] = []
    by_group: dict[str, list[dict[str, Any]]] = {}
    for seg in config.segments:
        groups = rows[seg].astype(str)
        frame = MetricFrame(metrics={"selection_rate": selection_rate, "true_positive_rate": true_positive_rate,
                                     "false_positive_rate": false_positive_rate, "n": count},
                            y_true=y_true, y_pred=y_pred, sensitive_features=groups.to_numpy())
        table = frame.by_group
        quality = rows["quality"].groupby(groups).mean()
        table["quality"] = quality.reindex(table.index)
        big = table.index[table["n"] >= config.min_group_rows]
        keep = groups.isin(big).to_numpy()
        by_group[seg] = [{"group": str(g), "n": int(r["n"]), "selection_rate": _round(r["selection_rate"]),
                          "true_positive_rate": _round(r["true_positive_rate"]),
                          "false_positive_rate": _round(r["false_positive_rate"]), "quality": _round(r["quality"]),
                          "judged": bool(g in big)} for g, r in table.iterrows()]
        if len(big) < 2:
            values = dict.fromkeys(("demographic_parity_difference", "equalized_odds_difference", "quality_difference"))
        else:
            sf = groups.to_numpy()[keep]
            # a group without enough positives (or negatives) has no true- (false-) positive rate worth comparing:
            # fairlearn would count it as 0 and call the gap unfair
            counts = pd.crosstab(groups, rows["positive"].astype(int)).reindex(columns=[0, 1], fill_value=0)
            rated = counts.index[(counts.min(axis=1) >= config.min_group_outcomes) & counts.index.isin(big)]
            both = groups.isin(rated).to_numpy()
            values = {
                "demographic_parity_difference": demographic_parity_difference(
                    y_true[keep], y_pred[keep], sensitive_features=sf),
                "equalized_odds_difference": (equalized_odds_difference(
                    y_true[both], y_pred[both], sensitive_features=groups.to_numpy()[both]) if len(rated) >= 2 else None),
                "quality_difference": float(quality.reindex(big).max() - quality.reindex(big).min()),
            }
        for name, value in values.items():
            threshold = getattr(config, name)
            judged = value is not None and np.isfinite(value) and threshold is not None
            checks.append({"check": name, "segment": seg, "value": _round(value), "threshold": threshold,
                           "passed": (bool(value <= threshold) if judged else None),
                           "groups": int(len(big))})
    verdicts = [c["passed"] for c in checks if c["passed"] is not None]
    # three ways: every judged check passed, one failed, or nothing could be judged (None, not a pass)
    return {"checks": checks, "by_group": by_group, "rows": int(len(rows)),
            "passed": all(verdicts) if verdicts else None}


@hookimpl
def treum_fairness_checks() -> list[FairnessCheckSpec]:
    return [FairnessCheckSpec("segments", "fairlearn MetricFrame over user segments: selection rate, TPR/FPR and "
                              "NDCG by group; demographic-parity, equalised-odds and quality differences",
                              check, SegmentFairnessConfig)]
