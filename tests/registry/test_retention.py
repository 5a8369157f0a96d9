"""Retention: old serving logs and predictions are pruned, those of a running experiment kept, the counts audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from treum.core.errors import RegistryError
from treum.registry.schema import MLPrediction, ModelServingLog, utcnow


def _serving(registry, *ages_days: float) -> None:
    with registry.transaction() as s:
        for i, age in enumerate(ages_days):
            s.add(ModelServingLog(request_id=f"r{i}-{age}", inference_time_ms=3,
                                  timestamp=utcnow() - timedelta(days=age)))


def _ids(registry) -> set[str]:
    with registry.sessions() as s:
        return set(s.execute(select(MLPrediction.prediction_id)).scalars())


def _count(registry, table) -> int:
    with registry.sessions() as s:
        return s.execute(select(func.count()).select_from(table)).scalar()


def test_prune_deletes_what_is_older_than_the_cutoff_and_audits_the_counts(registry, log_predictions):
    old, new = utcnow() - timedelta(days=120), utcnow() - timedelta(days=10)
    log_predictions("old1", "old1:gbm", created_at=old)
    log_predictions("new1", "new1:gbm", created_at=new)
    _serving(registry, 200, 91, 89, 1)
    counts = registry.prune(timedelta(days=90), actor="ops")
    assert (counts["ml_predictions"], counts["model_serving_logs"]) == (2, 2)
    assert counts["ml_predictions_kept_for_experiments"] == 0 and counts["older_than_days"] == 90
    assert _ids(registry) == {"new1", "new1:gbm"} and _count(registry, ModelServingLog) == 2
    row = registry.audit_rows()[0]
    assert (row.actor, row.action, row.entity_id) == ("ops", "registry.prune", "retention")
    assert row.details["ml_predictions"] == 2 and row.details["model_serving_logs"] == 2
    assert registry.verify_audit().ok
    assert registry.prune(timedelta(days=90), actor="ops")["ml_predictions"] == 0


def test_predictions_of_a_running_experiment_are_kept(registry, register, log_predictions):
    v1, v2, v3 = (register(payload=p) for p in ("a", "bb", "ccc"))
    old = utcnow() - timedelta(days=400)
    exp = registry.create_experiment("v2 vs v1", v1.id, v2.id, 50, None, 30, "ci")
    log_predictions("c1", model_id=v1.id, experiment_arm="control", created_at=old)
    log_predictions("t1", model_id=v2.id, experiment_arm="treatment", created_at=old)
    log_predictions("live1", model_id=v1.id, created_at=old)  # v1 outside the experiment: no arm
    log_predictions("v3", model_id=v3.id, experiment_arm="control", created_at=old)
    counts = registry.prune(timedelta(days=30), actor="ops")
    assert _ids(registry) == {"c1", "t1"} and counts["ml_predictions_kept_for_experiments"] == 2
    assert registry.experiment_results(exp.id)["arms"]["treatment"]["predictions"] == 1
    registry.stop_experiment(exp.id)
    registry.prune(timedelta(days=30), actor="ops")
    assert _ids(registry) == set()


@pytest.mark.parametrize("age", [timedelta(0), timedelta(days=-1), 90])
def test_prune_needs_a_positive_age(registry, age):
    with pytest.raises(RegistryError, match="positive age"):
        registry.prune(age, actor="ops")
    assert registry.audit_rows() == []


def test_latency_figures_are_aggregated_in_sql_over_a_window(registry, register):
    """Mean and p95 of the logged inference times come from SQL, over the asked window only."""
    import uuid as _uuid
    from datetime import timedelta

    from treum.registry.schema import MLPrediction, utcnow

    m = register()
    now = utcnow()
    with registry.transaction() as s:
        for i in range(100):  # 1..100 ms now, and one very slow one long ago
            s.add(MLPrediction(model_id=m.id, prediction_id=_uuid.uuid4().hex, input_features={}, entity_type="i",
                               entity_id="X", inference_time_ms=i + 1, created_at=now))
        s.add(MLPrediction(model_id=m.id, prediction_id=_uuid.uuid4().hex, input_features={}, entity_type="i",
                           entity_id="X", inference_time_ms=100_000, created_at=now - timedelta(days=30)))
    recent = registry.latency_summary(m.id, now - timedelta(hours=1))
    assert recent == {"n": 100, "mean_ms": 50.5, "p95_ms": 95.0}
    assert registry.latency_summary(m.id)["n"] == 101
