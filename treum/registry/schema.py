"""SQLAlchemy 2 typed models of the registry tables.

The specification's eight ML tables, ``users`` which they reference, and three
added ones: ``model_deployments`` (who deployed which version when and why),
``audit_log`` (append-only, hash-chained) and ``api_keys`` (hashed). JSON
columns become JSONB on PostgreSQL. The schema is created by Alembic
(``treum/registry/migrations``), never by ``create_all`` outside tests of the
migrations themselves.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def num(precision: int, scale: int) -> Numeric:
    return Numeric(precision, scale, asdecimal=False)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONType, list[Any]: JSONType}


class User(Base):
    __tablename__ = "users"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    email: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), default="user")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class MLModel(Base):
    __tablename__ = "ml_models"
    __table_args__ = (UniqueConstraint("model_name", "model_version"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(50))
    model_type: Mapped[str] = mapped_column(String(50))  # the task
    model_architecture: Mapped[str | None] = mapped_column(String(100))  # the family
    model_file_path: Mapped[str] = mapped_column(Text)
    model_config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    model_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    model_size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    artifact_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    training_data_version: Mapped[str | None] = mapped_column(String(50))
    training_start_time: Mapped[datetime | None] = mapped_column(DateTime)
    training_end_time: Mapped[datetime | None] = mapped_column(DateTime)
    training_duration_seconds: Mapped[int | None] = mapped_column(Integer)
    validation_accuracy: Mapped[float | None] = mapped_column(num(8, 6))
    validation_loss: Mapped[float | None] = mapped_column(num(12, 8))
    test_sharpe_ratio: Mapped[float | None] = mapped_column(num(8, 4))
    test_max_drawdown: Mapped[float | None] = mapped_column(num(8, 4))
    custom_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # registered -> validated (beat its baselines) -> deployed -> retired
    deployment_status: Mapped[str] = mapped_column(String(20), default="registered")
    deployment_date: Mapped[datetime | None] = mapped_column(DateTime)
    served_predictions: Mapped[int] = mapped_column(BigInteger, default=0)
    avg_inference_time_ms: Mapped[float | None] = mapped_column(num(8, 2))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    approved_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    approval_date: Mapped[datetime | None] = mapped_column(DateTime)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    retirement_date: Mapped[datetime | None] = mapped_column(DateTime)
    retirement_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class MLFeature(Base):
    __tablename__ = "ml_features"
    __table_args__ = (UniqueConstraint("feature_name", "feature_group"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    feature_name: Mapped[str] = mapped_column(String(200))
    feature_group: Mapped[str] = mapped_column(String(100))
    feature_type: Mapped[str] = mapped_column(String(20))
    description: Mapped[str | None] = mapped_column(Text)
    data_type: Mapped[str] = mapped_column(String(20))
    feature_importance_score: Mapped[float | None] = mapped_column(num(8, 6))
    source_table: Mapped[str | None] = mapped_column(String(100))
    source_column: Mapped[str | None] = mapped_column(String(100))
    transformation_logic: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    min_value: Mapped[float | None] = mapped_column(num(18, 8))
    max_value: Mapped[float | None] = mapped_column(num(18, 8))
    mean_value: Mapped[float | None] = mapped_column(num(18, 8))
    std_deviation: Mapped[float | None] = mapped_column(num(18, 8))
    null_percentage: Mapped[float | None] = mapped_column(num(5, 2))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class FeatureValue(Base):
    __tablename__ = "feature_values"
    __table_args__ = (
        Index("idx_feature_values_entity_time", "entity_type", "entity_id", "timestamp"),
        Index("idx_feature_values_feature_time", "feature_id", "timestamp"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    feature_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ml_features.id"))
    entity_type: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[str] = mapped_column(String(100))
    feature_value: Mapped[float | None] = mapped_column(num(18, 8))
    feature_value_text: Mapped[str | None] = mapped_column(String(500))
    feature_vector: Mapped[list[Any] | None] = mapped_column(JSONType)
    timestamp: Mapped[datetime] = mapped_column(DateTime)
    confidence_score: Mapped[float | None] = mapped_column(num(5, 4))
    data_quality_score: Mapped[float | None] = mapped_column(num(5, 4))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class MLPrediction(Base):
    __tablename__ = "ml_predictions"
    __table_args__ = (
        Index("idx_predictions_model_time", "model_id", "created_at"),
        Index("idx_predictions_entity", "entity_type", "entity_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    model_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ml_models.id"))
    prediction_id: Mapped[str] = mapped_column(String(100), unique=True)
    input_features: Mapped[dict[str, Any]] = mapped_column(JSONType)
    feature_hash: Mapped[str | None] = mapped_column(String(64))
    prediction_value: Mapped[float | None] = mapped_column(num(18, 8))
    prediction_class: Mapped[str | None] = mapped_column(String(50))
    prediction_probability: Mapped[float | None] = mapped_column(num(8, 6))
    confidence_interval: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    ensemble_predictions: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    ensemble_weights: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    entity_type: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[str] = mapped_column(String(100))
    prediction_horizon: Mapped[str | None] = mapped_column(String(20))
    actual_value: Mapped[float | None] = mapped_column(num(18, 8))
    prediction_error: Mapped[float | None] = mapped_column(num(18, 8))
    is_correct: Mapped[bool | None] = mapped_column(Boolean)
    inference_time_ms: Mapped[int | None] = mapped_column(Integer)
    model_version: Mapped[str | None] = mapped_column(String(50))
    experiment_arm: Mapped[str | None] = mapped_column(String(20))
    feature_importance: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    shap_values: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    explanation_text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class ModelPerformanceMetric(Base):
    __tablename__ = "model_performance_metrics"
    __table_args__ = (UniqueConstraint("model_id", "metric_date", "evaluation_period"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ml_models.id"))
    metric_date: Mapped[date] = mapped_column(Date)
    # 'daily', 'weekly', 'monthly', or 'walk_forward' for the out-of-sample evaluation of a release
    evaluation_period: Mapped[str] = mapped_column(String(20))
    accuracy: Mapped[float | None] = mapped_column(num(8, 6))
    precision: Mapped[float | None] = mapped_column(num(8, 6))
    recall: Mapped[float | None] = mapped_column(num(8, 6))
    f1_score: Mapped[float | None] = mapped_column(num(8, 6))
    auc_roc: Mapped[float | None] = mapped_column(num(8, 6))
    sharpe_ratio: Mapped[float | None] = mapped_column(num(8, 4))
    max_drawdown: Mapped[float | None] = mapped_column(num(8, 4))
    win_rate: Mapped[float | None] = mapped_column(num(5, 2))
    average_return: Mapped[float | None] = mapped_column(num(8, 4))
    # the specification's column: the standard deviation of a strategy's returns, beside sharpe_ratio and
    # max_drawdown; a metric, not a task (each task's performance_row says which columns its metrics fill)
    return_volatility: Mapped[float | None] = mapped_column(num(8, 4))
    mean_absolute_error: Mapped[float | None] = mapped_column(num(12, 8))
    root_mean_squared_error: Mapped[float | None] = mapped_column(num(12, 8))
    mean_absolute_percentage_error: Mapped[float | None] = mapped_column(num(8, 4))
    prediction_distribution: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error_distribution: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    feature_drift_score: Mapped[float | None] = mapped_column(num(8, 6))
    prediction_drift_score: Mapped[float | None] = mapped_column(num(8, 6))
    data_quality_score: Mapped[float | None] = mapped_column(num(8, 6))
    total_predictions: Mapped[int | None] = mapped_column(Integer)
    successful_predictions: Mapped[int | None] = mapped_column(Integer)
    failed_predictions: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ModelExperiment(Base):
    __tablename__ = "model_experiments"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    experiment_name: Mapped[str] = mapped_column(String(200))
    experiment_description: Mapped[str | None] = mapped_column(Text)
    control_model_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ml_models.id"))
    treatment_model_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ml_models.id"))
    traffic_allocation: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    success_metrics: Mapped[list[Any] | None] = mapped_column(JSONType)
    start_date: Mapped[datetime] = mapped_column(DateTime)
    end_date: Mapped[datetime] = mapped_column(DateTime)
    control_performance: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    treatment_performance: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    statistical_significance: Mapped[float | None] = mapped_column(num(8, 6))
    winner: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="running")
    analysis_notes: Mapped[str | None] = mapped_column(Text)
    decision: Mapped[str | None] = mapped_column(String(20))
    decision_date: Mapped[datetime | None] = mapped_column(DateTime)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class ModelServingLog(Base):
    __tablename__ = "model_serving_logs"
    __table_args__ = (
        Index("idx_serving_logs_model_time", "model_id", "timestamp"),
        Index("idx_serving_logs_performance", "inference_time_ms", "timestamp"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    model_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ml_models.id"))
    request_id: Mapped[str] = mapped_column(String(100))
    input_size_bytes: Mapped[int | None] = mapped_column(Integer)
    output_size_bytes: Mapped[int | None] = mapped_column(Integer)
    feature_count: Mapped[int | None] = mapped_column(Integer)
    inference_time_ms: Mapped[int] = mapped_column(Integer)
    queue_time_ms: Mapped[int | None] = mapped_column(Integer)
    total_response_time_ms: Mapped[int | None] = mapped_column(Integer)
    cpu_usage_percent: Mapped[float | None] = mapped_column(num(5, 2))
    memory_usage_mb: Mapped[int | None] = mapped_column(Integer)
    gpu_usage_percent: Mapped[float | None] = mapped_column(num(5, 2))
    error_occurred: Mapped[bool] = mapped_column(Boolean, default=False)
    error_type: Mapped[str | None] = mapped_column(String(50))
    error_message: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    api_endpoint: Mapped[str | None] = mapped_column(String(200))
    client_ip: Mapped[str | None] = mapped_column(String(45))
    timestamp: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class MLTrainingJob(Base):
    __tablename__ = "ml_training_jobs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    job_name: Mapped[str] = mapped_column(String(200))
    job_type: Mapped[str] = mapped_column(String(50))  # training, tuning, evaluation, inference
    model_config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    training_config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    dataset_config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    compute_resources: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    estimated_duration_minutes: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime)
    final_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    best_model_path: Mapped[str | None] = mapped_column(Text)
    model_artifacts: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    model_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ml_models.id"))
    actual_cpu_hours: Mapped[float | None] = mapped_column(num(10, 2))
    actual_memory_gb_hours: Mapped[float | None] = mapped_column(num(10, 2))
    actual_gpu_hours: Mapped[float | None] = mapped_column(num(10, 2))
    cost_usd: Mapped[float | None] = mapped_column(num(10, 2))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_traceback: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class ModelDeployment(Base):
    """One row per change of what is live: deploy, rollback, undeploy on retire."""

    __tablename__ = "model_deployments"
    __table_args__ = (Index("idx_deployments_name_time", "model_name", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(200))
    route: Mapped[str] = mapped_column(String(100), default="default")
    model_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ml_models.id"))
    model_version: Mapped[str | None] = mapped_column(String(50))  # None: nothing live after this row
    previous_model_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ml_models.id"))
    previous_version: Mapped[str | None] = mapped_column(String(50))
    action: Mapped[str] = mapped_column(String(20))  # deploy, rollback, undeploy
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # deployed with --force (and a reason); the server default fills the rows before revision 0002
    forced: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class AuditLog(Base):
    """Append-only (triggers refuse UPDATE and DELETE, revision 0004); ``row_hash`` = SHA-256 over the
    previous row's hash and this row's content."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(50))
    entity_type: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[str] = mapped_column(String(100))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64), unique=True)


class ReleaseReport(Base):
    """A release's report (``treum report release=<tag>``): the JSON document of every deployed model's card,
    explanations, fairness and audit excerpt, and the SHA-256 of the HTML page rendered from it."""

    __tablename__ = "release_reports"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    release: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))
    models: Mapped[list[Any]] = mapped_column(JSONType)  # [{"name", "version", "id"}] of the deployed versions
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
    html_sha256: Mapped[str] = mapped_column(String(64))


class ApiKey(Base):
    """Hashed API keys with scopes (``treum.registry.keys``); a key past ``expires_at`` is refused."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(12))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[Any] | None] = mapped_column(JSONType)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)  # revision 0003; None: never expires
