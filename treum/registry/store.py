"""The registry API: jobs, versions, lifecycle (deploy, rollback, retire), history, outcomes, experiments, audit.

Lifecycle: a finished training run registers a new version of a model name as
``registered``, or ``validated`` when it beat every baseline of its task on the
same walk-forward split. ``deploy`` makes one version the live one of its name
(the previous live version goes back to its earlier status), ``rollback``
re-deploys the version that was live before, ``retire`` takes a version out for
good. Every change writes ``model_deployments`` and the audit log in the same
transaction as the change itself.

Training jobs run through ``job_batch`` and ``JobHandle.running`` (``jobs.py``),
outcomes of served predictions through ``record_outcome`` (``outcomes.py``), A/B
experiments through ``create_experiment`` and friends (``experiments.py``), API keys
through ``create_api_key`` and friends (``keys.py``), the audit log's signed
checkpoints through ``checkpoint_audit`` and ``verify_audit`` (``checkpoints.py``),
retention through ``prune`` (``retention.py``); callers never open a transaction to
change registry state themselves.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from treum.core.errors import NotFoundError, RegistryError, did_you_mean
from treum.registry import audit, checkpoints, experiments, jobs, keys, outcomes, releases, retention
from treum.registry.artifacts import ArtifactStore
from treum.registry.jobs import JobBatch, JobHandle
from treum.registry.keys import SCOPES, ApiKeyInfo, ApiKeyRecord, key_allows
from treum.registry.schema import (
    AuditLog,
    MLModel,
    MLPrediction,
    MLTrainingJob,
    ModelDeployment,
    ModelExperiment,
    ModelPerformanceMetric,
    ReleaseReport,
    utcnow,
)
from treum.registry.values import PERFORMANCE_COLUMNS, as_uuid, clean_json, clean_number, performance_row

__all__ = ["PERFORMANCE_COLUMNS", "SCOPES", "ApiKeyInfo", "ApiKeyRecord", "JobBatch", "JobHandle", "Registry",
           "clean_json", "clean_number", "key_allows", "migrate"]

MIGRATIONS = Path(__file__).parent / "migrations"


def treum_home() -> Path:
    """``$TREUM_HOME``, default ``~/.treum``: the SQLite registry, artifacts and run outputs."""
    return Path(os.environ.get("TREUM_HOME", Path.home() / ".treum")).expanduser()


def default_url(home: Path | None = None) -> str:
    env = os.environ.get("TREUM_REGISTRY_URL")
    if env:
        return env
    home = home or treum_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'registry.db'}"


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """One migrating process at a time: a sweep's parallel jobs may all open a fresh registry at once."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    import fcntl

    with open(f"{database}.migrate.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (serialised between processes)."""
    import logging

    # before the import: alembic logs "setup plugin ..." as it loads, and "Context impl SQLiteImpl" per command
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from alembic import command
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with _migration_lock(engine), engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(7215101)"))  # the same, across machines
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


IMMEDIATE = "treum_sqlite_begin_immediate"


def _begin_immediate(conn: Connection) -> None:
    """SQLite: a connection marked for writing starts its transaction holding the write lock.

    Python's sqlite3 issues a deferred BEGIN only before the first INSERT, UPDATE or
    DELETE, so the SELECTs before it (the audit log's head, the live version) run
    outside any transaction, and two writers can both read the same head. ``BEGIN
    IMMEDIATE`` takes the write lock first (waiting up to the busy timeout), so a
    registry transaction reads and writes as the only writer.
    """
    if conn.get_execution_options().get(IMMEDIATE) and not conn.connection.dbapi_connection.in_transaction:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Registry:
    """The model registry over SQLAlchemy; SQLite under ``TREUM_HOME`` unless a URL is given."""

    def __init__(self, url: str | None = None, home: Path | None = None, echo: bool = False):
        self.home = Path(home) if home else treum_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.url = url or default_url(self.home)
        # SQLite: a writer waits for the file lock (the service's log writer and the CLI share it)
        sqlite = make_url(self.url).get_backend_name() == "sqlite"
        connect_args = {"timeout": 30} if sqlite else {}
        self.engine = create_engine(self.url, echo=echo, future=True, connect_args=connect_args)
        if sqlite:
            event.listen(self.engine, "begin", _begin_immediate)
        migrate(self.engine)
        # reads (and the service's log writer, whose first statement is an INSERT) use plain sessions
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writes = sessionmaker(self.engine.execution_options(**{IMMEDIATE: True}), expire_on_commit=False)
        self.artifacts = ArtifactStore(self.home / "artifacts")

    @property
    def display_url(self) -> str:
        """The registry URL with its password masked: the only form of it that is printed or exported."""
        return make_url(self.url).render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"Registry({self.display_url!r})"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction (on SQLite it holds the write lock from its start: ``BEGIN IMMEDIATE``)."""
        with self._writes.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # jobs -----------------------------------------------------------------
    @contextmanager
    def job_batch(self, actor: str = "cli") -> Iterator[JobBatch]:
        """The jobs of one run; every job of it still ``queued`` at the end ends too.

        ``batch.create(...)`` adds a queued job and returns its ``JobHandle``; ``with
        job.running():`` runs it (``treum.registry.jobs``). Jobs never started become
        ``failed`` when an exception ended the batch (its message says which) and
        ``cancelled`` on an interrupt or when the batch ended without reaching them.
        """
        batch = JobBatch(self, actor)
        try:
            yield batch
        except BaseException as exc:
            batch.close(exc)
            raise
        batch.close(None)

    def create_job(self, name: str, job_type: str, model_config: dict, training_config: dict,
                   dataset_config: dict, actor: str = "cli", compute_resources: dict | None = None) -> uuid.UUID:
        """Add a ``queued`` job; run jobs through ``job_batch``, which calls this."""
        with self.transaction() as s:
            job = MLTrainingJob(
                job_name=name,
                job_type=job_type,
                model_config=clean_json(model_config),
                training_config=clean_json(training_config),
                dataset_config=clean_json(dataset_config),
                compute_resources=clean_json(compute_resources or {"cpu": os.cpu_count(), "gpu": 0}),
                status="queued",
            )
            s.add(job)
            s.flush()
            audit.append(s, actor, "job.create", "ml_training_jobs", job.id, {"name": name, "type": job_type})
            return job.id

    def cancel_job(self, job_id: uuid.UUID | str, actor: str, reason: str) -> MLTrainingJob:
        """Cancel a queued or running job (and a search's running trials); a finished one is refused."""
        with self.transaction() as s:
            job = jobs.cancel(s, as_uuid(job_id, "training job"), actor, reason)
            jobs.cancel_children(s, job.id, actor, f"its search was cancelled ({reason})" if reason else "its search was cancelled")
            return job

    def abandon_job(self, job_id: uuid.UUID | str, actor: str, why: str) -> MLTrainingJob:
        """A queued or running job whose work is gone (its process died) ends failed, saying why; its trials too."""
        with self.transaction() as s:
            job = jobs.cancel(s, as_uuid(job_id, "training job"), actor, why, status="failed")
            jobs.cancel_children(s, job.id, actor, f"its search failed: {why}", status="failed")
            return job

    def end_unstarted(self, job_id: uuid.UUID | str, status: str, why: str) -> bool:
        """End a job still ``queued`` (failed or cancelled, saying why); False when it had started or ended."""
        with self.transaction() as s:
            return bool(jobs._cancel_unstarted(s, [as_uuid(job_id, "training job")], "treum", why, status))

    def cancel_trials(self, search_id: uuid.UUID | str, actor: str, reason: str) -> list[uuid.UUID]:
        """Cancel the queued or running trials of a search (its rows say ``training_config.search``)."""
        with self.transaction() as s:
            return jobs.cancel_children(s, as_uuid(search_id, "training job"), actor, reason)

    def job(self, job_id: uuid.UUID | str) -> MLTrainingJob:
        with self.sessions() as s:
            job = s.get(MLTrainingJob, as_uuid(job_id, "training job"))
            if job is None:
                raise NotFoundError(f"no training job with id {job_id}")
            return job

    def jobs(self, limit: int = 50, job_type: str | None = None, status: str | None = None,
             search: uuid.UUID | str | None = None) -> list[MLTrainingJob]:
        """The newest jobs first; ``search``: the trials of that search (newest first among them too)."""
        query = select(MLTrainingJob).order_by(MLTrainingJob.created_at.desc())
        if job_type is not None:
            query = query.where(MLTrainingJob.job_type == job_type)
        if status is not None:
            query = query.where(MLTrainingJob.status == status)
        with self.sessions() as s:
            if search is None:
                return list(s.execute(query.limit(limit)).scalars())
            wanted = str(as_uuid(search, "training job"))
            rows = s.execute(query.where(MLTrainingJob.job_type == "tuning")).scalars()
            return [r for r in rows if str((r.training_config or {}).get("search")) == wanted][:limit]

    # registration ---------------------------------------------------------
    def register(
        self,
        *,
        name: str,
        task: str,
        family: str,
        config: dict,
        artifact_dir: Path,
        metrics: Mapping[str, Any],
        performance: Mapping[str, Any],
        baselines: Mapping[str, Mapping[str, Any]],
        validated: bool,
        data_version: str,
        metadata: dict,
        job_id: uuid.UUID | None = None,
        started_at: datetime | None = None,
        evaluation_end: date | None = None,
        evaluation_period: str = "walk_forward",
        actor: str = "cli",
    ) -> MLModel:
        """Store the artifact and add a new version, its metrics and its audit row in one transaction.

        ``metrics`` and ``baselines`` are kept whole in ``custom_metrics``; ``performance`` is the
        ``model_performance_metrics`` row of the evaluation, keyed by its column names (the task
        knows which of its metrics goes where; an unknown key is refused). With ``job_id``, the
        job (running, inside ``with job.running()``) is linked to the new version in the same
        transaction; the job's context manager completes it.
        """
        perf = performance_row(performance)
        digest, path = self.artifacts.put(Path(artifact_dir))
        now = utcnow()
        for attempt in range(3):
            try:
                with self.transaction() as s:
                    versions = s.execute(select(MLModel.model_version).where(MLModel.model_name == name)).scalars()
                    version = str(max((int(v) for v in versions if v.isdigit()), default=0) + 1)
                    model = MLModel(
                        model_name=name,
                        model_version=version,
                        model_type=task,
                        model_architecture=family,
                        model_file_path=str(path),
                        artifact_sha256=digest,
                        model_config=clean_json(config),
                        model_metadata=clean_json(metadata),
                        model_size_bytes=ArtifactStore.size(path),
                        training_data_version=data_version,
                        training_start_time=started_at,
                        training_end_time=now,
                        training_duration_seconds=int((now - started_at).total_seconds()) if started_at else None,
                        validation_accuracy=perf.get("accuracy"),
                        custom_metrics=clean_json({"walk_forward": dict(metrics), "baselines": dict(baselines)}),
                        deployment_status="validated" if validated else "registered",
                    )
                    s.add(model)
                    s.flush()
                    if perf:
                        s.add(ModelPerformanceMetric(**{
                            "metric_date": evaluation_end or now.date(),
                            "evaluation_period": evaluation_period,
                            **perf,
                            "model_id": model.id,
                        }))
                    if job_id is not None:
                        job = s.get(MLTrainingJob, job_id)
                        if job is None:
                            raise NotFoundError(f"no training job with id {job_id}")
                        if job.status != "running":
                            raise RegistryError(
                                f"training job {job_id} is '{job.status}'; register inside `with job.running():`"
                            )
                        job.best_model_path = str(path)
                        job.model_artifacts = {"sha256": digest}
                        job.model_id = model.id
                    audit.append(
                        s,
                        actor,
                        "model.register",
                        "ml_models",
                        model.id,
                        {"name": name, "version": version, "sha256": digest, "status": model.deployment_status,
                         "job": str(job_id) if job_id else None},
                    )
                    return model
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    # queries --------------------------------------------------------------
    def list_models(self, name: str | None = None, data: str | None = None) -> list[MLModel]:
        """Every version, of one name and trained on one data set (``model_metadata["data"]``) if given."""
        with self.sessions() as s:
            q = select(MLModel).order_by(MLModel.model_name, MLModel.created_at)
            if name:
                q = q.where(MLModel.model_name == name)
            if data is not None:
                q = q.where(MLModel.model_metadata["data"].as_string() == data)
            return list(s.execute(q).scalars())

    def _names(self, s: Session) -> list[str]:
        return list(s.execute(select(MLModel.model_name).distinct()).scalars())

    def _get(self, s: Session, name: str, version: str | None, data: str | None = None) -> MLModel:
        q = select(MLModel).where(MLModel.model_name == name)
        rows = list(s.execute(q).scalars())
        if not rows:
            raise NotFoundError(
                f"no registered model named '{name}'{did_you_mean(name, self._names(s))} (treum registry list)"
            )
        if data is not None:
            known = sorted({str(d) for m in rows if (d := (m.model_metadata or {}).get("data")) is not None})
            on_data = [m for m in rows if (m.model_metadata or {}).get("data") == data]
            if not on_data:
                raise NotFoundError(
                    f"model '{name}' has no version trained on data '{data}'{did_you_mean(data, known)} "
                    f"(data sets: {', '.join(known) or 'none recorded'})"
                )
            if version is not None and all(m.model_version != str(version) for m in on_data):
                raise RegistryError(
                    f"model '{name}' version {version} was not trained on data '{data}' (versions on it: "
                    f"{', '.join(m.model_version for m in on_data)})"
                )
            rows = on_data
        if version is None:
            return max(rows, key=lambda m: int(m.model_version) if m.model_version.isdigit() else 0)
        for m in rows:
            if m.model_version == str(version):
                return m
        raise NotFoundError(
            f"model '{name}' has no version '{version}' (versions: {', '.join(sorted(m.model_version for m in rows))})"
        )

    def get(self, name: str, version: str | None = None) -> MLModel:
        """A version of a model, the newest when ``version`` is None."""
        with self.sessions() as s:
            return self._get(s, name, version)

    def get_by_id(self, model_id: uuid.UUID | str) -> MLModel:
        with self.sessions() as s:
            model = s.get(MLModel, as_uuid(model_id, "registered model"))
            if model is None:
                raise NotFoundError(f"no registered model with id {model_id}")
            return model

    def live(self, name: str) -> MLModel | None:
        """The deployed version of a name, or None."""
        with self.sessions() as s:
            return s.execute(
                select(MLModel).where(MLModel.model_name == name, MLModel.deployment_status == "deployed")
            ).scalar_one_or_none()

    def performance(self, model_id: uuid.UUID) -> list[ModelPerformanceMetric]:
        with self.sessions() as s:
            return list(
                s.execute(
                    select(ModelPerformanceMetric)
                    .where(ModelPerformanceMetric.model_id == model_id)
                    .order_by(ModelPerformanceMetric.metric_date)
                ).scalars()
            )

    def history(self, name: str) -> list[ModelDeployment]:
        with self.sessions() as s:
            self._get(s, name, None)  # a clear error for an unknown name
            return list(
                s.execute(
                    select(ModelDeployment).where(ModelDeployment.model_name == name).order_by(ModelDeployment.id)
                ).scalars()
            )

    def load(self, name: str, version: str | None, models: Mapping[str, Any],
             tasks: Mapping[str, Any] | None = None) -> Any:
        """Load a registered version after verifying its artifact's hashes (with its task, given the task specs)."""
        from treum.core.model import load_model

        row = self.get(name, version)
        return load_model(self.artifacts.get(row.artifact_sha256), dict(models), tasks)

    # lifecycle ------------------------------------------------------------
    def _set_live(self, s: Session, target: MLModel | None, name: str, action: str, actor: str,
                  reason: str | None, forced: bool = False) -> ModelDeployment:
        current = s.execute(
            select(MLModel).where(MLModel.model_name == name, MLModel.deployment_status == "deployed")
        ).scalar_one_or_none()
        if current is not None and target is not None and current.id == target.id:
            raise RegistryError(f"model '{name}' version {target.model_version} is already deployed")
        now = utcnow()
        if current is not None:
            current.deployment_status = (current.model_metadata or {}).get("status_before_deploy", "validated")
            current.is_active = False
        if target is not None:
            target.model_metadata = {**(target.model_metadata or {}), "status_before_deploy": target.deployment_status}
            target.deployment_status = "deployed"
            target.deployment_date = now
            target.is_active = True
        s.flush()
        row = ModelDeployment(
            model_name=name,
            model_id=target.id if target else None,
            model_version=target.model_version if target else None,
            previous_model_id=current.id if current else None,
            previous_version=current.model_version if current else None,
            action=action,
            actor=actor,
            reason=reason,
            created_at=now,
            forced=forced,
        )
        s.add(row)
        s.flush()
        audit.append(
            s,
            actor,
            f"model.{action}",
            "ml_models",
            (target or current).id if (target or current) else name,
            {
                "name": name,
                "version": target.model_version if target else None,
                "previous_version": current.model_version if current else None,
                "reason": reason,
                "forced": forced,
            },
        )
        return row

    def deploy(self, name: str, version: str | None = None, actor: str = "cli", reason: str | None = None,
               force: bool = False, data: str | None = None) -> MLModel:
        """Make a version the live one of its name; it must be validated unless ``force``.

        ``force`` needs a reason, and the deployment row and audit row say it was forced.
        ``data``: without a version, the newest version trained on that data set
        (``model_metadata["data"]``); with one, a check that it was.
        """
        if force and not (reason and reason.strip()):
            raise RegistryError(
                f"a forced deploy of '{name}' needs a reason for the audit log; pass --reason '...'"
            )
        with self.transaction() as s:
            target = self._get(s, name, version, data)
            if target.deployment_status == "retired":
                raise RegistryError(
                    f"model '{name}' version {target.model_version} is retired and cannot be deployed; "
                    "register a new version instead"
                )
            if target.deployment_status == "registered" and not force:
                raise RegistryError(
                    f"model '{name}' version {target.model_version} did not beat its baselines (status "
                    "'registered'); deploy it anyway with --force and a --reason"
                )
            self._set_live(s, target, name, "deploy", actor, reason, forced=bool(force))
            return target

    def rollback(self, name: str, actor: str = "cli", reason: str | None = None) -> MLModel:
        """Re-deploy the version that was live before the current one."""
        with self.transaction() as s:
            self._get(s, name, None)
            rows = list(
                s.execute(
                    select(ModelDeployment).where(ModelDeployment.model_name == name).order_by(ModelDeployment.id.desc())
                ).scalars()
            )
            if not rows or rows[0].model_id is None:
                raise RegistryError(f"model '{name}' has nothing deployed to roll back from")
            live_id = rows[0].model_id
            for row in rows:
                if row.model_id is not None and row.model_id != live_id:
                    candidate = s.get(MLModel, row.model_id)
                    if candidate.deployment_status != "retired":
                        self._set_live(s, candidate, name, "rollback", actor, reason)
                        return candidate
            raise RegistryError(
                f"model '{name}' has no earlier deployed version that is not retired; nothing to roll back to"
            )

    def retire(self, name: str, version: str, actor: str = "cli", reason: str | None = None) -> MLModel:
        """Retire a version for good; if it is live, nothing of that name is live afterwards."""
        with self.transaction() as s:
            target = self._get(s, name, version)
            if target.deployment_status == "retired":
                raise RegistryError(f"model '{name}' version {target.model_version} is already retired")
            if target.deployment_status == "deployed":
                self._set_live(s, None, name, "undeploy", actor, reason or "retired")
            target.deployment_status = "retired"
            target.is_active = False
            target.retirement_date = utcnow()
            target.retirement_reason = reason
            audit.append(s, actor, "model.retire", "ml_models", target.id,
                         {"name": name, "version": target.model_version, "reason": reason})
            return target

    # outcomes ---------------------------------------------------------------
    def record_outcome(self, prediction_id: str, actual_value: float,
                       score: Callable[[MLPrediction, float], tuple[bool | None, float | None]], actor: str) -> int:
        """Record the realised value of a served prediction and its members; the rows updated.

        ``prediction_id`` must be an answer's id (letters, digits, '-', '_', ':'; at most 100
        characters) and matches that row and its members ``<id>:<member>`` exactly.
        ``score(row, actual_value)`` returns ``(is_correct, prediction_error)`` for a row; the
        serving layer passes it because scoring depends on the task. NotFoundError when no row
        matches; RegistryError when a row already has a different outcome; recording the same
        value again updates nothing, writes nothing and returns 0.
        """
        with self.transaction() as s:
            return outcomes.record(s, prediction_id, actual_value, score, actor)

    def hit_rate(self, model_id: uuid.UUID | str, arm: str | None = None) -> tuple[int, int, int]:
        """(predictions, those with an outcome, correct ones) logged for a model, in one experiment arm if given."""
        with self.sessions() as s:
            return outcomes.hit_counts(s, model_id, arm)

    def predictions(self, model_id: uuid.UUID | str, limit: int = 50) -> list[MLPrediction]:
        """A model's most recent logged predictions, newest first."""
        with self.sessions() as s:
            return list(s.execute(
                select(MLPrediction).where(MLPrediction.model_id == as_uuid(model_id, "registered model"))
                .order_by(MLPrediction.created_at.desc()).limit(limit)
            ).scalars())

    def inference_times(self, model_id: uuid.UUID | str) -> list[int]:
        """Every logged inference time of a model, in milliseconds, sorted."""
        with self.sessions() as s:
            return sorted(s.execute(
                select(MLPrediction.inference_time_ms).where(
                    MLPrediction.model_id == as_uuid(model_id, "registered model"), MLPrediction.inference_time_ms.is_not(None))
            ).scalars())

    def latency_summary(self, model_id: uuid.UUID | str, since: datetime | None = None) -> dict[str, Any]:
        """Count, mean and p95 of a model's logged inference times since ``since``, computed in SQL.

        Nothing but three numbers leaves the database, however many predictions were logged.
        """
        mid = as_uuid(model_id, "registered model")
        where = [MLPrediction.model_id == mid, MLPrediction.inference_time_ms.is_not(None)]
        if since is not None:
            where.append(MLPrediction.created_at >= since)
        with self.sessions() as s:
            n, mean = s.execute(select(func.count(), func.avg(MLPrediction.inference_time_ms)).where(*where)).one()
            p95 = None
            if n:
                p95 = s.execute(select(MLPrediction.inference_time_ms).where(*where)
                                .order_by(MLPrediction.inference_time_ms)
                                .offset(int(0.95 * (n - 1))).limit(1)).scalar()
        return {"n": int(n or 0), "mean_ms": float(mean) if mean is not None else None,
                "p95_ms": float(p95) if p95 is not None else None}

    # experiments --------------------------------------------------------------
    def create_experiment(self, name: str, control_id: uuid.UUID | str, treatment_id: uuid.UUID | str,
                          treatment_percent: float = 50.0, description: str | None = None, days: int = 30,
                          actor: str = "cli") -> ModelExperiment:
        """Split a name's traffic between two of its versions for ``days``.

        Both must be versions of one name, different and not retired, and no other experiment
        may be running on that name (RegistryError); an unknown id is a NotFoundError.
        """
        with self.transaction() as s:
            return experiments.create(s, name, control_id, treatment_id, treatment_percent, description, days, actor)

    def stop_experiment(self, experiment_id: uuid.UUID | str, actor: str = "cli") -> ModelExperiment:
        """Stop a running experiment (RegistryError if it is not running)."""
        with self.transaction() as s:
            return experiments.stop(s, experiment_id, actor)

    def experiment(self, experiment_id: uuid.UUID | str) -> ModelExperiment:
        with self.sessions() as s:
            return experiments.get(s, experiment_id)

    def list_experiments(self, status: str | None = None) -> list[ModelExperiment]:
        """Every experiment, oldest first; only those with ``status`` (e.g. 'running') if given."""
        with self.sessions() as s:
            return experiments.listing(s, status)

    def experiment_results(self, experiment_id: uuid.UUID | str) -> dict[str, Any]:
        """``{"id", "name", "status", "arms": {arm: {model_id, predictions, outcomes, hits, hit_rate}}}``."""
        with self.sessions() as s:
            return experiments.results(s, experiment_id)

    # release reports --------------------------------------------------------
    def record_release(self, tag: str, document: dict[str, Any], models: list[dict[str, Any]], html_sha256: str,
                       actor: str = "cli") -> ReleaseReport:
        """Keep a release's report (``treum report``) with an audit row; a tag is reported once (RegistryError)."""
        with self.transaction() as s:
            return releases.record(s, tag, document, models, html_sha256, actor)

    def release(self, tag: str) -> ReleaseReport:
        """The report of release ``tag`` (NotFoundError naming recent tags)."""
        with self.sessions() as s:
            return releases.get(s, tag)

    def releases(self) -> list[ReleaseReport]:
        """Every release report, newest first."""
        with self.sessions() as s:
            return releases.listing(s)

    def deployment_history(self, names: list[str], limit: int = 50) -> list[ModelDeployment]:
        """Newest first: the deploys, rollbacks and undeploys of ``names``."""
        with self.sessions() as s:
            return releases.deployment_history(s, names, limit)

    # audit ----------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        """Where the signed audit checkpoints are appended: ``<home>/audit-checkpoints.jsonl``."""
        return self.home / checkpoints.CHECKPOINT_FILE

    def _sign(self, actor: str, rows: int, head: str) -> checkpoints.Checkpoint:
        key = checkpoints.audit_key(self.home)
        cp = checkpoints.sign(key, actor, checkpoints.database_identity(self.url), rows, head)
        checkpoints.append(self.checkpoint_path, cp)
        return cp

    def checkpoint_audit(self, actor: str = "cli") -> checkpoints.Checkpoint:
        """Sign the audit log's row count and head hash now and append it to ``checkpoint_path``.

        The key is ``$TREUM_AUDIT_KEY`` or ``<home>/audit.key`` (made on first use, mode
        0600), never stored in the database. Run it after every change that matters
        (the CLI's lifecycle commands do) and keep a copy of the file elsewhere.
        """
        with self.sessions() as s:
            rows = s.execute(select(func.count()).select_from(AuditLog)).scalar_one()
            head = s.execute(select(AuditLog.row_hash).order_by(AuditLog.id.desc()).limit(1)).scalar()
        return self._sign(actor, rows, head or audit.GENESIS)

    def verify_audit(self, actor: str = "cli", checkpoint: bool = True,
                     extra_checkpoints: Iterable[Path] = ()) -> audit.ChainReport:
        """Recompute the chain, then compare it with every signed checkpoint; the first problem.

        A forged checkpoint, fewer rows than a checkpoint covered (a truncated tail) and
        another hash at a checkpoint's row (a recomputed or edited chain) are problems
        besides a broken chain. ``extra_checkpoints``: exported copies to compare too.
        After a successful verification a fresh checkpoint of what was verified is
        written, unless ``checkpoint`` is False.
        """
        # the checkpoint files first: each was taken of rows committed before the chain is read
        lines = checkpoints.snapshot([self.checkpoint_path, *map(Path, extra_checkpoints)])
        with self.sessions() as s:
            report = audit.verify_chain(s, keep=checkpoints.covered(lines))
        if not report.ok:
            return report
        if lines or checkpoint:
            key = checkpoints.audit_key(self.home)
            report.checkpoints, problem = checkpoints.compare(key, checkpoints.database_identity(self.url),
                                                              report.rows, report.hashes, lines)
            if problem:
                report.ok, report.reason = False, problem
                return report
        if checkpoint:
            report.checkpoint = self._sign(actor, report.rows, report.head)
        return report

    def audit_rows(self, limit: int = 100) -> list:
        with self.sessions() as s:
            return list(s.execute(select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)).scalars())

    # API keys ---------------------------------------------------------------
    def create_api_key(self, name: str, scopes: Iterable[str] | None = None, expires_at: datetime | None = None,
                       actor: str = "cli") -> str:
        """Create a key and return its token, once; only its SHA-256 is stored.

        ``scopes`` from ``SCOPES`` (predict, read, experiments, train, deploy, admin; admin
        implies all), ``["predict"]`` when None; an unknown scope is a RegistryError naming
        the closest. ``expires_at`` (UTC; None: never) must be in the future. Audited.
        """
        with self.transaction() as s:
            token, _ = keys.create(s, name, scopes, expires_at, actor)
        return token

    def list_api_keys(self) -> list[ApiKeyInfo]:
        """Every key, oldest first: name, prefix, scopes, created, expires, last used, revoked (never a hash)."""
        with self.sessions() as s:
            return keys.listing(s)

    def revoke_api_key(self, name: str, actor: str = "cli") -> ApiKeyInfo:
        """Revoke a key for good (its token stops working at once); audited."""
        with self.transaction() as s:
            keys.revoke(s, name, actor)
        return next(k for k in self.list_api_keys() if k.name == name)

    def rotate_api_key(self, name: str, actor: str = "cli") -> str:
        """A new token for a key, returned once; same name, scopes and expiry; the old token stops working."""
        with self.transaction() as s:
            return keys.rotate(s, name, actor)

    def check_api_key(self, token: str) -> ApiKeyRecord | None:
        """The key of a token if it is valid, unrevoked and unexpired, else None. Writes nothing.

        ``record.scopes`` says what it may do (``key_allows(record, scope)``); record when it
        was used with ``touch_api_keys``, batched, off the request path.
        """
        with self.sessions() as s:
            return keys.check(s, token)

    def touch_api_keys(self, last_used: Mapping[uuid.UUID | str, datetime]) -> int:
        """Set ``last_used_at`` per key id (one UPDATE each, never backwards, not audited); the keys updated."""
        if not last_used:
            return 0
        with self.transaction() as s:
            return keys.touch(s, last_used)

    # retention --------------------------------------------------------------
    def prune(self, older_than: timedelta, actor: str = "cli") -> dict[str, Any]:
        """Delete serving logs and logged predictions older than ``older_than``; the counts, audited.

        Predictions a running experiment counts are kept (``retention.py``).
        """
        with self.transaction() as s:
            return retention.prune(s, older_than, actor)
