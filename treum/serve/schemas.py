"""Request and response bodies of the HTTP API (they make the OpenAPI document)."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Bar(Strict):
    timestamp: datetime = Field(description="between 1678 and 2261 (what a nanosecond timestamp can hold)")
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float
    volume: float | None = None

    @field_validator("timestamp")
    @classmethod
    def representable(cls, v: datetime) -> datetime:
        if not 1678 <= v.year <= 2261:
            raise ValueError(f"year {v.year} is outside 1678..2261, the range a bar's timestamp can have")
        return v

    @field_validator("open", "high", "low", "close", "volume")
    @classmethod
    def finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number (NaN and infinity are not prices)")
        return v


class PredictRequest(Strict):
    instrument: str = Field(min_length=1, max_length=50, examples=["SPX"])
    bars: list[Bar] | None = Field(
        default=None, max_length=10_000,
        description="your own bars, oldest first (serve.max_bars at most); omit to use the latest stored bars",
    )
    user_id: str | None = Field(default=None, max_length=100, description="sticky A/B assignment key")


class BatchItem(PredictRequest):
    task: str = Field(min_length=1, max_length=100,
                      description="a registered task, an alias of one (serve.aliases), or 'price' for the ensemble")


class BatchRequest(Strict):
    requests: list[BatchItem] = Field(min_length=1, max_length=100)


class Open(BaseModel):
    """An answer whose fields depend on the task: its prediction columns and extra fields sit at the top level."""

    model_config = ConfigDict(extra="allow")


class MemberOut(Open):
    name: str
    version: str | None
    status: Literal["ok", "failed", "timeout", "not deployed"]
    latency_ms: float
    cached: bool
    arm: str | None
    error: str | None


class TaskOut(Open):
    """``/predict/<task>``: the task's prediction columns, ``label`` and the task's extra fields at the top level."""

    prediction_id: str
    task: str
    instrument: str
    market: str | None = Field(default=None, description="the instrument read, for an alias that reads the market")
    as_of: str
    model: str
    version: str
    model_id: str
    label: str | None = Field(description="the class the task gives the answer (e.g. up/down), or null")
    cached: bool


class RegimeOut(Open):
    task: str
    label: str | None = Field(description="the regime label that picked the weights")
    model: str
    version: str
    model_id: str
    market: str = Field(description="the instrument the regime model reads (its training market)")
    as_of: str


class EnsembleOut(Open):
    """``/predict/price``: the weighted mean of each of the members' prediction columns, at the top level."""

    prediction_id: str
    task: str
    instrument: str
    as_of: str
    label: str | None
    regime: RegimeOut
    weights: dict[str, float] = Field(description="weights used, re-normalised over the members that answered")
    configured_weights: dict[str, float]
    members: list[MemberOut]
    dropped: list[str]
    timing_ms: dict[str, float]


class BatchResultOut(BaseModel):
    task: str
    instrument: str
    status: int
    result: dict[str, Any] | None = None
    error: str | None = None


class BatchOut(BaseModel):
    results: list[BatchResultOut]


class ModelOut(BaseModel):
    id: uuid.UUID
    name: str
    version: str
    task: str
    family: str | None
    status: str
    artifact_sha256: str | None
    served_predictions: int
    created_at: datetime
    deployment_date: datetime | None
    walk_forward: dict[str, Any] | None = None
    baselines: dict[str, Any] | None = None
    config: dict[str, Any] | None = None


class RegisterRequest(Strict):
    name: str = Field(max_length=200, description="a registered model plugin's name")
    artifact_path: str = Field(max_length=1000, description="a directory written by Model.save, below the server's "
                                                              "serve.upload_root (relative to it, or absolute inside it)")
    reason: str | None = Field(default=None, max_length=2000)


class DeployRequest(Strict):
    reason: str | None = Field(default=None, max_length=2000)
    force: bool = Field(default=False, description="deploy a version that did not beat its baselines")


class RetireRequest(Strict):
    reason: str | None = Field(default=None, max_length=2000)


class ExperimentRequest(Strict):
    name: str = Field(min_length=1, max_length=200)
    control_model_id: uuid.UUID
    treatment_model_id: uuid.UUID
    treatment_percent: float = Field(default=50.0, gt=0, lt=100)
    description: str | None = None
    days: int = Field(default=30, ge=1, le=365)


class OutcomeRequest(Strict):
    actual_value: float = Field(description="the realised outcome, as the prediction's task defines it (e.g. the "
                                            "forward return, the realised variance, the dated regime)")

    @field_validator("actual_value")
    @classmethod
    def finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        if abs(v) >= 1e10:  # ml_predictions.actual_value is NUMERIC(18, 8)
            raise ValueError("must be smaller than 1e10 in absolute value")
        return v


class ErrorOut(BaseModel):
    error: str
    details: list[dict[str, Any]] | None = None
