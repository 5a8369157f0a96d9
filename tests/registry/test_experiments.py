"""A/B experiments through the registry API: the checks, stopping, listing, per-arm results, the audit log."""

from __future__ import annotations

import uuid

import pytest

from treum.core.errors import NotFoundError, RegistryError


def _experiment_rows(registry) -> list:
    """The audit rows of experiments, newest first."""
    return [r for r in registry.audit_rows() if r.action.startswith("experiment.")]


@pytest.fixture
def versions(register):
    """gbm_direction v1, v2, v3 and garch v1."""
    gbm = [register(payload=p) for p in ("a", "bb", "ccc")]
    return gbm, register(name="garch", payload="dddd")


def test_an_experiment_splits_two_versions_of_a_name(registry, versions):
    (v1, v2, _), _ = versions
    exp = registry.create_experiment("v2 vs v1", v1.id, v2.id, 20, "does v2 do better", 14, "api:alice")
    assert exp.status == "running" and (exp.control_model_id, exp.treatment_model_id) == (v1.id, v2.id)
    assert exp.traffic_allocation == {"control": 80.0, "treatment": 20.0}
    assert (exp.end_date - exp.start_date).days == 14
    assert [e.id for e in registry.list_experiments()] == [exp.id]
    (row,) = _experiment_rows(registry)
    assert (row.actor, row.action, row.entity_id) == ("api:alice", "experiment.create", str(exp.id))
    assert row.details["model"] == "gbm_direction" and row.details["treatment_percent"] == 20.0


def test_ids_the_registry_does_not_know_are_not_found(registry, versions):
    (v1, _, _), _ = versions
    for control, treatment in ((v1.id, uuid.uuid4()), (uuid.uuid4(), v1.id), (v1.id, "not-a-uuid")):
        with pytest.raises(NotFoundError, match="no registered model with id"):
            registry.create_experiment("x", control, treatment, 50, None, 30, "ci")
    assert registry.list_experiments() == [] and _experiment_rows(registry) == []


def test_the_checks_of_a_new_experiment(registry, versions):
    (v1, v2, v3), garch = versions
    with pytest.raises(RegistryError, match="two versions of one model; got 'gbm_direction' and 'garch'"):
        registry.create_experiment("x", v1.id, garch.id, 50, None, 30, "ci")
    with pytest.raises(RegistryError, match="control and treatment are the same version"):
        registry.create_experiment("x", v1.id, v1.id, 50, None, 30, "ci")
    for pct in (0, 100, -5, 150):
        with pytest.raises(RegistryError, match="treatment_percent must be between 0 and 100"):
            registry.create_experiment("x", v1.id, v2.id, pct, None, 30, "ci")
    with pytest.raises(RegistryError, match="at least 1 day"):
        registry.create_experiment("x", v1.id, v2.id, 50, None, 0, "ci")
    registry.retire("gbm_direction", "3", actor="ci")
    with pytest.raises(RegistryError, match="gbm_direction v3 is retired"):
        registry.create_experiment("x", v1.id, v3.id, 50, None, 30, "ci")
    assert registry.list_experiments() == []
    assert _experiment_rows(registry) == [] and registry.audit_rows()[0].action == "model.retire"


def test_one_running_experiment_per_name(registry, versions, register):
    (v1, v2, v3), garch = versions
    first = registry.create_experiment("first", v1.id, v2.id, 50, None, 30, "ci")
    with pytest.raises(RegistryError, match="experiment 'first' .* already splits 'gbm_direction'; stop it first"):
        registry.create_experiment("second", v3.id, v1.id, 50, None, 30, "ci")
    # another name is free
    garch2 = register(name="garch", payload="eeeee")
    registry.create_experiment("garch", garch.id, garch2.id, 50, None, 30, "ci")
    registry.stop_experiment(first.id, "ci")
    second = registry.create_experiment("second", v3.id, v1.id, 50, None, 30, "ci")
    assert [e.experiment_name for e in registry.list_experiments("running")] == ["garch", "second"]
    assert [e.status for e in registry.list_experiments()] == ["stopped", "running", "running"]
    assert registry.experiment(second.id).experiment_name == "second"


def test_stopping(registry, versions):
    (v1, v2, _), _ = versions
    exp = registry.create_experiment("x", v1.id, v2.id, 50, None, 30, "ci")
    assert registry.stop_experiment(str(exp.id), "api:bob").status == "stopped"
    assert registry.experiment(exp.id).status == "stopped"
    row = registry.audit_rows()[0]
    assert (row.actor, row.action, row.entity_id) == ("api:bob", "experiment.stop", str(exp.id))
    with pytest.raises(RegistryError, match="is 'stopped', not running"):
        registry.stop_experiment(exp.id, "api:bob")
    with pytest.raises(NotFoundError, match="no experiment with id"):
        registry.stop_experiment(uuid.uuid4(), "api:bob")
    with pytest.raises(NotFoundError, match="no experiment with id"):
        registry.experiment_results("nope")
    assert [r.action for r in _experiment_rows(registry)] == ["experiment.stop", "experiment.create"]


def test_results_count_each_arm(registry, versions, log_predictions, sign_scorer):
    (v1, v2, _), _ = versions
    exp = registry.create_experiment("x", v1.id, v2.id, 50, None, 30, "ci")
    log_predictions("c1", "c2", "c3", model_id=v1.id, experiment_arm="control", prediction_probability=0.9)
    log_predictions("t1", "t2", model_id=v2.id, experiment_arm="treatment", prediction_probability=0.9)
    log_predictions("live1", model_id=v1.id, prediction_probability=0.9)  # served outside the experiment
    for pid, value in (("c1", 1.0), ("c2", -1.0), ("t1", 1.0), ("t2", 2.0), ("live1", 1.0)):
        registry.record_outcome(pid, value, sign_scorer, "ci")
    out = registry.experiment_results(exp.id)
    assert (out["id"], out["name"], out["status"]) == (str(exp.id), "x", "running")
    assert out["arms"] == {
        "control": {"model_id": str(v1.id), "predictions": 3, "outcomes": 2, "hits": 1, "hit_rate": 0.5},
        "treatment": {"model_id": str(v2.id), "predictions": 2, "outcomes": 2, "hits": 2, "hit_rate": 1.0},
    }


def test_results_without_outcomes_have_no_hit_rate(registry, versions):
    (v1, v2, _), _ = versions
    exp = registry.create_experiment("x", v1.id, v2.id, 50, None, 30, "ci")
    arms = registry.experiment_results(exp.id)["arms"]
    assert arms["control"]["hit_rate"] is None and arms["treatment"]["predictions"] == 0
