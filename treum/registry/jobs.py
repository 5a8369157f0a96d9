"""Training jobs as context managers: no caller starts, completes or fails a job by hand.

    with registry.job_batch(actor) as batch:
        job = batch.create(name, job_type, model_config, training_config, dataset_config)
        with job.running():
            ...
            job.set_metrics(metrics)

A job whose work runs elsewhere (a trial of a search, on a Ray worker) is moved by
whoever watches it, through the same transitions: ``start()``, ``progress(metrics)``
while it runs, then ``finish(status, ...)``.

``running()`` moves a job from ``queued`` to ``running`` and, when its block ends,
to ``completed`` (normal exit), ``failed`` (an ``Exception``, with its message and
traceback) or ``cancelled`` (``KeyboardInterrupt`` and other ``BaseException``);
the exception is always re-raised. When the batch ends, every job of it that never
started ends too, saying why: ``failed`` when an ``Exception`` ended the batch (the
data or a baseline failed, so the job's work could not run), ``cancelled`` when it
was interrupted or simply never got to the job. Every transition writes the audit log in
the same transaction, and only moves a job from the state it is expected to be in,
so a job cancelled meanwhile (``Registry.cancel_job``) stays cancelled.
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from treum.core.errors import NotFoundError, RegistryError
from treum.registry import audit
from treum.registry.schema import MLTrainingJob, utcnow
from treum.registry.values import clean_json

if TYPE_CHECKING:
    from treum.registry.store import Registry

FINISHED = ("completed", "failed", "cancelled")
TRACEBACK_CHARS = 20000


def job_dict(job: MLTrainingJob, brief: bool = False) -> dict[str, Any]:
    """A training job as the CLI and the API show it (``brief``: without its configs)."""
    training = job.training_config or {}
    out = {"id": str(job.id), "name": job.job_name, "type": job.job_type, "status": job.status,
           "created_at": job.created_at, "started_at": job.started_at, "completed_at": job.completed_at,
           "final_metrics": job.final_metrics, "model_id": str(job.model_id) if job.model_id else None,
           "error_message": job.error_message, "search": training.get("search"), "role": training.get("role")}
    if not brief:
        out.update({"model_config": job.model_config, "training_config": job.training_config,
                    "dataset_config": job.dataset_config, "compute_resources": job.compute_resources})
    return out


def describe(exc: BaseException) -> str:
    """``ValueError: boom``, or the type alone when the exception has no message."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load(s: Session, job_id: uuid.UUID) -> MLTrainingJob:
    # locked (PostgreSQL) so that a transition and a concurrent cancel_job cannot both apply
    job = s.get(MLTrainingJob, job_id, with_for_update=True)
    if job is None:
        raise NotFoundError(f"no training job with id {job_id} (treum registry jobs)")
    return job


def _start(s: Session, job_id: uuid.UUID, actor: str) -> None:
    job = _load(s, job_id)
    if job.status != "queued":
        raise RegistryError(
            f"training job {job_id} ('{job.job_name}') is '{job.status}', not 'queued'; "
            "a job runs once, inside the batch that created it"
        )
    job.status, job.started_at = "running", utcnow()
    audit.append(s, actor, "job.start", "ml_training_jobs", job_id, {"name": job.job_name})


def _finish(s: Session, job_id: uuid.UUID, actor: str, status: str, *, metrics: Mapping[str, Any] | None = None,
           exc: BaseException | None = None) -> bool:
    """Move a running job to ``status``; False (and nothing written) if it is no longer running."""
    job = _load(s, job_id)
    if job.status != "running":
        return False
    job.status, job.completed_at = status, utcnow()
    details: dict[str, Any] = {"name": job.job_name}
    if metrics is not None:
        job.final_metrics = clean_json(dict(metrics))
    if exc is not None:
        job.error_message = describe(exc)
        job.error_traceback = "".join(traceback.format_exception(exc))[-TRACEBACK_CHARS:]
        details["error"] = job.error_message
    action = {"completed": "job.complete", "failed": "job.fail", "cancelled": "job.cancel"}[status]
    audit.append(s, actor, action, "ml_training_jobs", job_id, details)
    return True


def _progress(s: Session, job_id: uuid.UUID, metrics: Mapping[str, Any]) -> bool:
    """The metrics of a running job so far (kept in ``final_metrics``); False if it is no longer running."""
    job = _load(s, job_id)
    if job.status != "running":
        return False
    job.final_metrics = clean_json(dict(metrics))
    return True


def cancel_children(s: Session, parent_id: uuid.UUID, actor: str, reason: str,
                    status: str = "cancelled") -> list[uuid.UUID]:
    """End the queued or running jobs whose ``training_config.search`` is ``parent_id``: a search's trials and
    the final training of its best values (``cancelled``, or ``failed`` when the search's process died)."""
    rows = list(s.execute(
        select(MLTrainingJob).where(MLTrainingJob.status.in_(("queued", "running"))).with_for_update()
    ).scalars())
    done = []
    for job in rows:
        if str((job.training_config or {}).get("search")) == str(parent_id):
            _end(s, job, actor, reason, status)
            done.append(job.id)
    return done


def _end(s: Session, job: MLTrainingJob, actor: str, reason: str, status: str) -> None:
    before = job.status
    job.status, job.completed_at = status, utcnow()
    verb = "cancelled" if status == "cancelled" else "failed"
    job.error_message = f"{verb} by {actor}: {reason}" if reason and status == "cancelled" else (
        reason or f"{verb} by {actor}")
    action = {"cancelled": "job.cancel", "failed": "job.fail"}[status]
    audit.append(s, actor, action, "ml_training_jobs", job.id, {"name": job.job_name, "was": before, "reason": reason})


def cancel(s: Session, job_id: uuid.UUID, actor: str, reason: str, status: str = "cancelled") -> MLTrainingJob:
    """End a queued or running job as cancelled (or failed: its process died); a finished one is refused."""
    job = _load(s, job_id)
    if job.status in FINISHED:
        raise RegistryError(
            f"training job {job_id} ('{job.job_name}') is already '{job.status}'; only a queued or running job "
            "can be cancelled"
        )
    _end(s, job, actor, reason, status)
    return job


def _cancel_unstarted(s: Session, job_ids: Iterable[uuid.UUID], actor: str, why: str,
                      status: str = "cancelled") -> list[uuid.UUID]:
    """End those of ``job_ids`` that are still queued as ``status`` (cancelled or failed), saying ``why``."""
    ids = list(job_ids)
    if not ids:
        return []
    rows = list(s.execute(
        select(MLTrainingJob).where(MLTrainingJob.id.in_(ids), MLTrainingJob.status == "queued")
        .order_by(MLTrainingJob.created_at).with_for_update()
    ).scalars())
    now = utcnow()
    action = {"cancelled": "job.cancel", "failed": "job.fail"}[status]
    for job in rows:
        job.status, job.completed_at, job.error_message = status, now, why
        audit.append(s, actor, action, "ml_training_jobs", job.id,
                     {"name": job.job_name, "was": "queued", "reason": why})
    return [job.id for job in rows]


class JobHandle:
    """One job of a batch: ``with job.running(): ...`` is the only way to run it."""

    def __init__(self, registry: Registry, job_id: uuid.UUID, actor: str):
        self.registry = registry
        self.id = job_id
        self.actor = actor
        self._metrics: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"JobHandle({self.id})"

    def set_metrics(self, metrics: Mapping[str, Any]) -> None:
        """The metrics stored as ``final_metrics`` when the job completes."""
        self._metrics = dict(metrics)

    @property
    def status(self) -> str:
        """The job's status as stored now (another process may have cancelled it)."""
        return self.registry.job(self.id).status

    @contextmanager
    def running(self) -> Iterator[JobHandle]:
        """Run the job for the duration of the block; see the module docstring for the states."""
        self.start()
        try:
            yield self
        except Exception as exc:
            self.finish("failed", exc=exc)
            raise
        except BaseException as exc:  # KeyboardInterrupt, SystemExit, a closed generator: nobody failed
            self.finish("cancelled", exc=exc)
            raise
        self.finish("completed", metrics=self._metrics or {})

    # for a job whose work runs elsewhere and is watched from here (a trial of a search)
    def start(self) -> None:
        """queued -> running."""
        with self.registry.transaction() as s:
            _start(s, self.id, self.actor)

    def progress(self, metrics: Mapping[str, Any]) -> bool:
        """The metrics so far of a running job; False when it is no longer running (cancelled meanwhile)."""
        with self.registry.transaction() as s:
            return _progress(s, self.id, metrics)

    def finish(self, status: str, *, metrics: Mapping[str, Any] | None = None, exc: BaseException | None = None,
               reason: str | None = None) -> bool:
        """running -> completed, failed or cancelled; False (nothing written) when it was no longer running."""
        with self.registry.transaction() as s:
            done = _finish(s, self.id, self.actor, status, metrics=metrics, exc=exc)
            if done and reason and exc is None:
                _load(s, self.id).error_message = reason
            return done


class JobBatch:
    """The jobs of one run; those never started are cancelled when the batch ends."""

    def __init__(self, registry: Registry, actor: str):
        self.registry = registry
        self.actor = actor
        self.jobs: list[JobHandle] = []
        self._open = True

    def create(self, name: str, job_type: str, model_config: Mapping[str, Any], training_config: Mapping[str, Any],
               dataset_config: Mapping[str, Any], compute_resources: Mapping[str, Any] | None = None) -> JobHandle:
        """Add a ``queued`` job to the registry and to this batch."""
        if not self._open:
            raise RegistryError("this job batch has ended; open a new one with registry.job_batch(actor)")
        job_id = self.registry.create_job(name, job_type, dict(model_config), dict(training_config),
                                          dict(dataset_config), self.actor, compute_resources)
        handle = JobHandle(self.registry, job_id, self.actor)
        self.jobs.append(handle)
        return handle

    def adopt(self, job_id: uuid.UUID | str) -> JobHandle:
        """A ``queued`` job created before this run (``POST /training/jobs``) as a job of this batch."""
        if not self._open:
            raise RegistryError("this job batch has ended; open a new one with registry.job_batch(actor)")
        job = self.registry.job(job_id)
        if job.status != "queued":
            raise RegistryError(f"training job {job.id} ('{job.job_name}') is '{job.status}', not 'queued'; "
                                "a job runs once")
        handle = JobHandle(self.registry, job.id, self.actor)
        self.jobs.append(handle)
        return handle

    def close(self, exc: BaseException | None) -> list[uuid.UUID]:
        """End the jobs still queued; ``exc`` is what ended the batch, if anything did.

        An ``Exception`` (bad data, a failing baseline) fails them with its message; an
        interrupt, or a batch that simply ended first, cancels them.
        """
        self._open = False
        why = f"never started: the batch ended with {describe(exc)}" if exc is not None else "never started"
        status = "failed" if isinstance(exc, Exception) else "cancelled"
        with self.registry.transaction() as s:
            return _cancel_unstarted(s, [j.id for j in self.jobs], self.actor, why, status)
