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


def test_a_watched_job_moves_through_start_progress_and_finish(registry):
    """A trial of a search runs elsewhere: the driver moves its row, with the same transitions and audit."""
    with registry.job_batch("tuner") as batch:
        search = batch.create("search:m:d", "tuning", {"name": "m"}, {"role": "search"}, {"name": "d"})
        trial = batch.create("trial:m:d:1", "tuning", {"name": "m"}, {"search": str(search.id), "params": {"model.c": 1}},
                             {"name": "d"}, {"cpu": 1.0, "gpu": 0.5})
        assert registry.job(trial.id).compute_resources == {"cpu": 1.0, "gpu": 0.5}
        assert trial.progress({"auc": 0.5}) is False  # not running yet: nothing written
        trial.start()
        assert trial.progress({"auc": 0.51, "blocks_run": 1}) is True
        assert registry.job(trial.id).final_metrics == {"auc": 0.51, "blocks_run": 1}
        assert trial.finish("completed", metrics={"auc": 0.52, "blocks_run": 4}) is True
        assert trial.finish("failed") is False  # finished once
        job = registry.job(trial.id)
        assert job.status == "completed" and job.final_metrics["auc"] == 0.52 and job.error_message is None
        assert [j.id for j in registry.jobs(search=search.id)] == [trial.id]
        assert registry.jobs(job_type="tuning", status="completed")[0].id == trial.id
    assert _actions(registry, trial.id) == ["job.create", "job.start", "job.complete"]


def test_cancelling_a_search_cancels_its_running_trials_and_no_other_job(registry):
    with registry.job_batch("tuner") as batch:
        search = batch.create("search:m:d", "tuning", {"name": "m"}, {"role": "search"}, {"name": "d"})
        other = batch.create("search:m:e", "tuning", {"name": "m"}, {"role": "search"}, {"name": "e"})
        mine = [batch.create(f"trial:m:d:{i}", "tuning", {"name": "m"}, {"search": str(search.id)}, {"name": "d"})
                for i in range(3)]
        theirs = batch.create("trial:m:e:1", "tuning", {"name": "m"}, {"search": str(other.id)}, {"name": "e"})
        search.start()
        other.start()
        mine[0].start()
        mine[1].start()
        mine[1].finish("completed", metrics={"auc": 0.5})
        theirs.start()
        registry.cancel_job(search.id, "alice", "enough")
        assert registry.job(search.id).status == "cancelled"
        states = [registry.job(j.id).status for j in mine]
        assert states == ["cancelled", "completed", "cancelled"]
        assert registry.job(mine[0].id).error_message == "cancelled by alice: its search was cancelled (enough)"
        assert registry.job(theirs.id).status == "running" and registry.job(other.id).status == "running"
        assert mine[0].progress({"auc": 0.6}) is False  # a trial reporting after the cancel changes nothing
        theirs.finish("completed")
        other.finish("completed")
    assert registry.end_unstarted(search.id, "failed", "x") is False
