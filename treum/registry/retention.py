"""Retention: serving logs and logged predictions older than a cutoff are deleted, audited.

Predictions that a running A/B experiment counts (a row of one of its two versions,
logged under an arm) are kept whatever their age, so pruning never changes the
results of an experiment in progress. Nothing else references these tables.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, func, not_, select, true
from sqlalchemy.orm import Session

from treum.core.errors import RegistryError
from treum.registry import audit
from treum.registry.schema import MLPrediction, ModelExperiment, ModelServingLog, utcnow


def prune(s: Session, older_than: timedelta, actor: str) -> dict[str, Any]:
    """Delete what is older than ``older_than``; the counts, also written to the audit log."""
    if not isinstance(older_than, timedelta) or older_than <= timedelta(0):
        raise RegistryError(f"prune needs a positive age (e.g. 90 days), got {older_than!r}")
    audit.lock(s)
    cutoff = utcnow() - older_than
    running = s.execute(
        select(ModelExperiment.control_model_id, ModelExperiment.treatment_model_id)
        .where(ModelExperiment.status == "running")
    ).all()
    in_experiments = sorted({m for pair in running for m in pair if m is not None})
    old = MLPrediction.created_at < cutoff
    kept_for_experiments = and_(MLPrediction.model_id.in_(in_experiments), MLPrediction.experiment_arm.is_not(None))
    kept = 0
    if in_experiments:
        kept = s.execute(select(func.count()).select_from(MLPrediction).where(old, kept_for_experiments)).scalar()
    predictions = s.execute(
        delete(MLPrediction).where(old, not_(kept_for_experiments) if in_experiments else true())
        .execution_options(synchronize_session=False)
    ).rowcount
    serving = s.execute(
        delete(ModelServingLog).where(ModelServingLog.timestamp < cutoff).execution_options(synchronize_session=False)
    ).rowcount
    counts = {
        "cutoff": cutoff.isoformat(timespec="seconds"),
        "older_than_days": round(older_than.total_seconds() / 86400, 4),
        "model_serving_logs": int(serving),
        "ml_predictions": int(predictions),
        "ml_predictions_kept_for_experiments": int(kept),
    }
    audit.append(s, actor, "registry.prune", "registry", "retention", counts)
    return counts
