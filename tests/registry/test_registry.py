"""The registry on SQLite and PostgreSQL: migrations, versions, lifecycle, audit chain, artifacts, jobs."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text, update

from treum.core.errors import ArtifactIntegrityError, NotFoundError, RegistryError
from treum.registry.schema import AuditLog, ModelPerformanceMetric
from treum.registry.store import Registry

from .conftest import drop_append_only_triggers

TABLES = {"users", "ml_models", "ml_features", "feature_values", "ml_predictions", "model_performance_metrics",
          "model_experiments", "model_serving_logs", "ml_training_jobs", "model_deployments", "audit_log", "api_keys"}


def test_migrations_create_every_table(registry):
    tables = set(inspect(registry.engine).get_table_names())
    assert TABLES <= tables
    with registry.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0006"


def test_json_columns_are_jsonb_on_postgres(registry):
    cols = {c["name"]: c["type"] for c in inspect(registry.engine).get_columns("ml_models")}
    expected = "JSONB" if registry.engine.dialect.name == "postgresql" else "JSON"
    assert type(cols["model_config"]).__name__ == expected


def test_register_numbers_versions_and_stores_metrics(registry, register):
    a = register(payload="a")
    b = register(payload="bb")
    assert (a.model_version, b.model_version) == ("1", "2")
    assert a.deployment_status == "validated"
    assert Path(a.model_file_path).name == a.artifact_sha256
    # NaN metrics are stored as null, never as invalid JSON
    assert registry.get("gbm_direction", "1").custom_metrics["walk_forward"]["ic"] is None
    perf = registry.performance(a.id)
    assert len(perf) == 1 and perf[0].evaluation_period == "walk_forward" and perf[0].auc_roc == pytest.approx(0.51)


def test_one_live_version_deploy_and_rollback(registry, register):
    register(payload="a")
    register(payload="bb")
    registry.deploy("gbm_direction", "1", actor="alice", reason="first")
    assert registry.live("gbm_direction").model_version == "1"
    registry.deploy("gbm_direction", "2", actor="bob", reason="better")
    live = [m for m in registry.list_models("gbm_direction") if m.deployment_status == "deployed"]
    assert [m.model_version for m in live] == ["2"]
    assert registry.get("gbm_direction", "1").deployment_status == "validated"
    back = registry.rollback("gbm_direction", actor="carol", reason="v2 misbehaves")
    assert back.model_version == "1" and registry.live("gbm_direction").model_version == "1"
    hist = registry.history("gbm_direction")
    assert [(h.action, h.model_version, h.previous_version, h.actor) for h in hist] == [
        ("deploy", "1", None, "alice"), ("deploy", "2", "1", "bob"), ("rollback", "1", "2", "carol")]


def test_unvalidated_versions_need_force(registry, register):
    register(validated=False)
    with pytest.raises(RegistryError, match="did not beat its baselines.*--force"):
        registry.deploy("gbm_direction", "1")
    assert registry.deploy("gbm_direction", "1", force=True, reason="manual").deployment_status == "deployed"
    assert registry.history("gbm_direction")[-1].forced is True


def test_retire_takes_the_live_version_down(registry, register):
    register()
    registry.deploy("gbm_direction", "1")
    registry.retire("gbm_direction", "1", reason="stale")
    assert registry.live("gbm_direction") is None
    with pytest.raises(RegistryError, match="is retired and cannot be deployed"):
        registry.deploy("gbm_direction", "1")
    with pytest.raises(RegistryError, match="nothing deployed to roll back"):
        registry.rollback("gbm_direction")


def test_rollback_skips_retired_versions(registry, register):
    for p in ("a", "bb", "ccc"):
        register(payload=p)
    for v in ("1", "2", "3"):
        registry.deploy("gbm_direction", v)
    registry.retire("gbm_direction", "2")
    assert registry.rollback("gbm_direction").model_version == "1"


def test_unknown_names_and_versions_are_clear(registry, register):
    register()
    with pytest.raises(RegistryError, match="no registered model named 'gbm_directoin'; did you mean 'gbm_direction'"):
        registry.get("gbm_directoin")
    with pytest.raises(RegistryError, match="has no version '9' \\(versions: 1\\)"):
        registry.deploy("gbm_direction", "9")


def test_every_change_is_audited_and_the_chain_verifies(registry, register):
    register()
    registry.deploy("gbm_direction", "1", actor="alice")
    registry.retire("gbm_direction", "1", actor="bob")
    rows = registry.audit_rows()
    assert [r.action for r in reversed(rows)] == ["model.register", "model.deploy", "model.undeploy", "model.retire"]
    report = registry.verify_audit()
    assert report.ok and report.rows == 4


def test_a_changed_audit_row_is_reported_first_broken(registry, register):
    register()
    registry.deploy("gbm_direction", "1", actor="alice")
    registry.retire("gbm_direction", "1", actor="bob")
    drop_append_only_triggers(registry.engine)
    with registry.transaction() as s:
        second = s.execute(select(AuditLog).order_by(AuditLog.id).offset(1).limit(1)).scalar_one()
        s.execute(update(AuditLog).where(AuditLog.id == second.id).values(actor="mallory"))
    report = registry.verify_audit()
    assert not report.ok and report.first_broken_id == second.id and "changed" in report.reason


def test_a_deleted_audit_row_is_reported(registry, register):
    register()
    registry.deploy("gbm_direction", "1")
    registry.retire("gbm_direction", "1")
    drop_append_only_triggers(registry.engine)
    with registry.transaction() as s:
        ids = list(s.execute(select(AuditLog.id).order_by(AuditLog.id)).scalars())
        s.execute(AuditLog.__table__.delete().where(AuditLog.id == ids[1]))
    report = registry.verify_audit()
    assert not report.ok and report.first_broken_id == ids[2] and "removed or reordered" in report.reason


def test_a_failed_lifecycle_change_writes_no_audit_row(registry, register):
    register(validated=False)
    before = len(registry.audit_rows())
    with pytest.raises(RegistryError):
        registry.deploy("gbm_direction", "1")
    assert len(registry.audit_rows()) == before
    assert registry.history("gbm_direction") == []


def test_artifacts_are_verified_on_load(registry, register, plugins):
    m = register()
    model = registry.load("gbm_direction", "1", plugins.specs("models"))
    assert model.fitted
    weights = Path(m.model_file_path) / "coefficients.json"
    data = json.loads(weights.read_text())
    data["intercept"] += 1.0
    weights.write_text(json.dumps(data))
    with pytest.raises(ArtifactIntegrityError, match="coefficients.json.*refusing to load"):
        registry.load("gbm_direction", "1", plugins.specs("models"))


def test_a_failing_registration_leaves_nothing_half_registered(registry, register):
    with registry.job_batch("ci") as batch:
        job = batch.create("train:gbm", "training", {}, {}, {})
        with pytest.raises(NotFoundError, match="no training job"):
            # no such job: the transaction fails after the model row was added
            register(job_id=uuid.uuid4())
        assert registry.list_models() == []
        with registry.sessions() as s:
            assert s.execute(select(ModelPerformanceMetric)).first() is None
        assert registry.job(job.id).status == "queued"
    assert registry.job(job.id).status == "cancelled"


def test_api_keys_are_stored_hashed(registry):
    token = registry.create_api_key("ci", scopes=["read"])
    assert token.startswith("trm_")
    with registry.engine.connect() as conn:
        stored = conn.execute(text("SELECT key_hash, key_prefix FROM api_keys")).one()
    assert token not in stored[0] and stored[1] == token[:12]
    assert registry.check_api_key(token).name == "ci"
    assert registry.check_api_key(token + "x") is None
    with pytest.raises(RegistryError, match="already exists"):
        registry.create_api_key("ci")


def test_sqlite_is_the_default_under_treum_home(treum_home):
    reg = Registry()
    assert reg.url == f"sqlite:///{treum_home / 'registry.db'}"
    assert (treum_home / "registry.db").exists()
    reg.close()
