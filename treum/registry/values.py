"""Values made fit for SQL: finite numbers, JSON without NaN, and the performance row checked against its table.

``model_performance_metrics`` has one column per metric the specification names;
the caller (which knows its task's metrics) says which value goes in which
column, and a key that is not a column is refused with the closest one.
"""

from __future__ import annotations

import difflib
import math
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import JSON, Integer, Numeric

from treum.core.errors import NotFoundError, RegistryError, did_you_mean
from treum.registry.schema import ModelPerformanceMetric


def clean_number(value: Any) -> float | None:
    """Numbers for SQL: NaN and infinities become NULL."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def as_uuid(value: uuid.UUID | str, what: str) -> uuid.UUID:
    """An id given as a UUID or its text; a NotFoundError naming ``what`` for anything else."""
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise NotFoundError(f"no {what} with id {value!r} (ids are UUIDs)") from None


def clean_json(value: Any) -> Any:
    """JSON for SQL: NaN and infinities become null (PostgreSQL's JSONB refuses them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


# the performance row's columns a caller fills; the registry sets the rest
PERFORMANCE_COLUMNS = tuple(
    c.name for c in ModelPerformanceMetric.__table__.columns if c.name not in ("id", "model_id", "created_at")
)


def performance_row(performance: Mapping[str, Any]) -> dict[str, Any]:
    """``performance`` checked against the columns of ``model_performance_metrics`` and cleaned for SQL."""
    columns = ModelPerformanceMetric.__table__.columns
    row: dict[str, Any] = {}
    for key, value in performance.items():
        if key not in PERFORMANCE_COLUMNS:
            hint = did_you_mean(key, PERFORMANCE_COLUMNS)
            if not hint:
                closest = difflib.get_close_matches(key, PERFORMANCE_COLUMNS, n=1, cutoff=0.0)
                hint = f"; the closest column is '{closest[0]}'" if closest else ""
            raise RegistryError(
                f"'{key}' is not a column of model_performance_metrics{hint} (columns: "
                f"{', '.join(PERFORMANCE_COLUMNS)}); map the metric to a column, or leave it out"
            )
        kind = columns[key].type
        try:
            if isinstance(kind, Numeric):
                row[key] = clean_number(value)
            elif isinstance(kind, Integer):
                number = clean_number(value)
                row[key] = int(number) if number is not None else None
            elif isinstance(kind, JSON):
                row[key] = clean_json(value)
            else:
                row[key] = value
        except (TypeError, ValueError):
            raise RegistryError(f"performance '{key}' must be a number, got {value!r}") from None
    return row
