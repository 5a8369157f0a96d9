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
    timestamp: datetime
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float
    volume: float | None = None

    @field_validator("open", "high", "low", "close", "volume")
    @classmethod
    def finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number (NaN and infinity are not prices)")
        return v


class PredictRequest(Strict):
    instrument: str = Field(min_length=1, max_length=50, examples=["SPX"])
    bars: list[Bar] | None = Field(
        default=None, description="your own bars, oldest first; omit to use the latest stored bars of the instrument"
    )
    user_id: str | None = Field(default=None, max_length=100, description="sticky A/B assignment key")


class BatchItem(PredictRequest):
    kind: Literal["price", "volatility", "market-regime"]


class BatchRequest(Strict):
    requests: list[BatchItem] = Field(min_length=1, max_length=100)


class MemberOut(BaseModel):
    name: str
    version: str | None
    status: Literal["ok", "failed", "timeout", "not deployed"]
    p_up: float | None
    latency_ms: float
    cached: bool
    arm: str | None
    error: str | None


class RegimeOut(BaseModel):
    regime: str
    p_bear: float
    model: str
    version: str
    market: str = Field(description="the instrument the regime model reads (its training index)")
    as_of: str


class PriceOut(BaseModel):
    prediction_id: str
    instrument: str
    as_of: str
    horizon: str
    p_up: float = Field(description="the combined probability that the next bar closes up")
    signal: Literal["up", "down"]
    regime: RegimeOut
    weights: dict[str, float] = Field(description="weights used, re-normalised over the members that answered")
    configured_weights: dict[str, float]
    members: list[MemberOut]
    dropped: list[str]
    timing_ms: dict[str, float]


class VolatilityOut(BaseModel):
    prediction_id: str
    instrument: str
    as_of: str
    model: str
    version: str
    var_h1: float = Field(description="variance of the next bar's percent log return")
    var_h21: float = Field(description="variance of the next 21 bars' summed percent log returns")
    vol_daily_pct: float
    vol_21d_pct: float
    vol_annualised_pct: float


class MarketRegimeOut(BaseModel):
    prediction_id: str
    instrument: str
    market: str
    as_of: str
    regime: Literal["bull", "bear"]
    p_bear: float
    p_bull: float
    model: str
    version: str
    model_id: str
    cached: bool


class BatchResultOut(BaseModel):
    kind: str
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
    name: str = Field(description="a registered model plugin's name")
    artifact_path: str = Field(description="a directory written by Model.save on the server's file system")
    reason: str | None = None


class DeployRequest(Strict):
    reason: str | None = None
    force: bool = Field(default=False, description="deploy a version that did not beat its baselines")


class RetireRequest(Strict):
    reason: str | None = None


class ExperimentRequest(Strict):
    name: str = Field(min_length=1, max_length=200)
    control_model_id: uuid.UUID
    treatment_model_id: uuid.UUID
    treatment_percent: float = Field(default=50.0, gt=0, lt=100)
    description: str | None = None
    days: int = Field(default=30, ge=1, le=365)


class OutcomeRequest(Strict):
    actual_value: float = Field(description="the realised return (direction: its sign decides is_correct)")

    @field_validator("actual_value")
    @classmethod
    def finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


class ErrorOut(BaseModel):
    error: str
    details: list[dict[str, Any]] | None = None
