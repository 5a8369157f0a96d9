"""Training jobs run only through ``job_batch`` and ``JobHandle.running``; ``cancel_job`` stops one."""

from __future__ import annotations

import uuid

import pytest

from treum.core.errors import NotFoundError, RegistryError
from treum.registry.store import Registry


def _actions(registry: Registry, job_id: uuid.UUID) -> list[str]:
    return [r.action for r in reversed(registry.audit_rows()) if r.entity_id == str(job_id)]


def test_a_job_runs_queued_running_completed_with_its_metrics(registry):
    with registry.job_batch("alice") as batch:
        job = batch.create("train:x", "training", {"name": "x"}, {}, {"name": "sp500"})
        assert registry.job(job.id).status == "queued"
        with job.running():
            row = registry.job(job.id)
            assert row.status == "running" and row.started_at is not None and row.completed_at is None
            job.set_metrics({"auc": 0.55, "ic": float("nan")})
        row = registry.job(job.id)
    assert row.status == "completed" and row.completed_at >= row.started_at
    assert row.final_metrics == {"auc": 0.55, "ic": None}
    assert _actions(registry, job.id) == ["job.create", "job.start", "job.complete"]
    assert {r.actor for r in registry.audit_rows()} == {"alice"}
    assert registry.verify_audit().ok


def test_an_exception_fails_the_job_with_its_traceback_and_is_reraised(registry):
    with registry.job_batch("ci") as batch:
        job = batch.create("train:x", "training", {}, {}, {})
        with pytest.raises(ValueError, match="boom in fold 3"):
            with job.running():
                job.set_metrics({"auc": 0.9})
                raise ValueError("boom in fold 3")
    row = registry.job(job.id)
    # failed stays failed when the batch ends; the metrics of a failed run are not its final metrics
    assert row.status == "failed" and row.error_message == "ValueError: boom in fold 3"
    assert row.error_traceback.startswith("Traceback") and "boom in fold 3" in row.error_traceback
    assert "test_jobs.py" in row.error_traceback and row.final_metrics is None
    assert _actions(registry, job.id) == ["job.create", "job.start", "job.fail"]
    assert registry.list_models() == []


def test_a_keyboard_interrupt_cancels_the_running_job_and_is_reraised(registry):
    with pytest.raises(KeyboardInterrupt):
        with registry.job_batch("ci") as batch:
            job = batch.create("train:x", "training", {}, {}, {})
            with job.running():
                raise KeyboardInterrupt
    row = registry.job(job.id)
    assert row.status == "cancelled" and row.error_message == "KeyboardInterrupt"
    assert _actions(registry, job.id) == ["job.create", "job.start", "job.cancel"]


def test_jobs_never_started_are_cancelled_when_the_batch_ends(registry):
    with registry.job_batch("ci") as batch:
        ran = batch.create("train:a", "training", {}, {}, {})
        skipped = batch.create("train:b", "training", {}, {}, {})
        with ran.running():
            pass
    assert registry.job(ran.id).status == "completed"
    row = registry.job(skipped.id)
    assert row.status == "cancelled" and row.error_message == "never started" and row.started_at is None
    assert _actions(registry, skipped.id) == ["job.create", "job.cancel"]


def test_the_exception_that_ends_a_batch_fails_its_queued_jobs_with_the_reason(registry):
    with pytest.raises(FileNotFoundError, match="sp500.csv"):
        with registry.job_batch("ci") as batch:
            jobs = [batch.create(f"train:{n}", "training", {}, {}, {}) for n in "ab"]
            raise FileNotFoundError("sp500.csv is missing")
    for job in jobs:
        row = registry.job(job.id)
        assert row.status == "failed"  # the run failed: not a cancellation by anyone
        assert "never started" in row.error_message and "FileNotFoundError: sp500.csv is missing" in row.error_message
    with pytest.raises(RegistryError, match="batch has ended"):
        batch.create("late", "training", {}, {}, {})


def test_a_job_runs_once(registry):
    with registry.job_batch("ci") as batch:
        job = batch.create("train:x", "training", {}, {}, {})
        with job.running():
            pass
        with pytest.raises(RegistryError, match="is 'completed', not 'queued'"):
            with job.running():
                pass
    assert registry.job(job.id).status == "completed"


def test_register_links_the_running_job_and_the_context_manager_completes_it(registry, register):
    with registry.job_batch("ci") as batch:
        job = batch.create("train:gbm", "training", {"name": "gbm_direction"}, {}, {})
        with job.running():
            m = register(job_id=job.id)
            row = registry.job(job.id)
            # register links; it does not finish the job
            assert row.status == "running" and row.completed_at is None
            assert row.model_id == m.id and row.model_artifacts == {"sha256": m.artifact_sha256}
            assert row.best_model_path == m.model_file_path
            job.set_metrics({"auc": 0.51})
    row = registry.job(job.id)
    assert row.status == "completed" and row.model_id == m.id and row.final_metrics == {"auc": 0.51}


def test_register_refuses_a_job_that_is_not_running(registry, register):
    with registry.job_batch("ci") as batch:
        job = batch.create("train:gbm", "training", {}, {}, {})
        with pytest.raises(RegistryError, match="is 'queued'; register inside `with job.running"):
            register(job_id=job.id)
    assert registry.list_models() == []


def test_cancel_job_cancels_a_queued_job_and_audits_it(registry):
    with registry.job_batch("ci") as batch:
        job = batch.create("train:x", "training", {}, {}, {})
        registry.cancel_job(job.id, "bob", "wrong data set")
        row = registry.job(job.id)
        assert row.status == "cancelled" and row.error_message == "cancelled by bob: wrong data set"
        with pytest.raises(RegistryError, match="is 'cancelled', not 'queued'"):
            with job.running():
                pass
    cancel = registry.audit_rows()[0]
    assert (cancel.action, cancel.actor, cancel.details["reason"], cancel.details["was"]) == (
        "job.cancel", "bob", "wrong data set", "queued")
    # the batch found nothing left to cancel
    assert _actions(registry, job.id) == ["job.create", "job.cancel"]


def test_a_job_cancelled_while_running_stays_cancelled(registry):
    with registry.job_batch("ci") as batch:
        job = batch.create("train:x", "training", {}, {}, {})
        with job.running():
            registry.cancel_job(str(job.id), "bob", "taking too long")
            assert job.status == "cancelled"
    row = registry.job(job.id)
    assert row.status == "cancelled" and row.error_message == "cancelled by bob: taking too long"
    assert _actions(registry, job.id) == ["job.create", "job.start", "job.cancel"]


def test_cancel_job_refuses_finished_and_unknown_jobs(registry):
    with registry.job_batch("ci") as batch:
        done = batch.create("train:a", "training", {}, {}, {})
        failed = batch.create("train:b", "training", {}, {}, {})
        with done.running():
            pass
        with pytest.raises(RuntimeError):
            with failed.running():
                raise RuntimeError("x")
    before = len(registry.audit_rows())
    for job, status in ((done, "completed"), (failed, "failed")):
        with pytest.raises(RegistryError, match=f"already '{status}'; only a queued or running job"):
            registry.cancel_job(job.id, "bob", "late")
        assert registry.job(job.id).status == status
    with pytest.raises(NotFoundError, match="no training job"):
        registry.cancel_job(uuid.uuid4(), "bob", "x")
    with pytest.raises(NotFoundError, match="no training job"):
        registry.cancel_job("not-a-uuid", "bob", "x")
    assert len(registry.audit_rows()) == before


def test_jobs_cannot_be_started_or_finished_by_hand(registry):
    for name in ("start_job", "fail_job", "complete_job"):
        assert not hasattr(Registry, name), name
