"""Realised outcomes of logged predictions, and the hit counts read from them.

A served answer is logged under its prediction id, and each ensemble member's
answer under ``<id>:<member>``. Recording an outcome for an id sets it on all of
those rows. The id is matched exactly: it is checked against a strict format and
compared as a prefix with ``substr``, never with ``LIKE``, so ``%`` and ``_`` mean
themselves and an id cannot reach rows of another prediction. How a row is
scored (``is_correct``, ``prediction_error``) depends on its task, which the
registry does not know; the caller passes the scorer.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Integer, cast, func, or_, select, update
from sqlalchemy.orm import Session

from treum.core.errors import NotFoundError, RegistryError
from treum.registry import audit
from treum.registry.schema import MLPrediction
from treum.registry.values import as_uuid, clean_number

Scorer = Callable[[MLPrediction, float], tuple[bool | None, float | None]]

PREDICTION_ID = re.compile(r"[A-Za-z0-9_:-]{1,100}")
MEMBER_SEPARATOR = ":"
# actual_value is NUMERIC(18, 8): a value read back may differ from the one sent by half a unit in the 8th place
SAME_VALUE_TOLERANCE = 1e-8


def check_prediction_id(prediction_id: str) -> str:
    """The id itself, or a RegistryError saying what an id may contain."""
    if not isinstance(prediction_id, str) or not PREDICTION_ID.fullmatch(prediction_id):
        raise RegistryError(
            f"prediction id {prediction_id!r} is not valid: use the 'prediction_id' of an answer (letters, "
            "digits, '-', '_' and ':' only, at most 100 characters)"
        )
    return prediction_id


def matching(prediction_id: str) -> Any:
    """The rows of a prediction: the id itself and its members ``<id>:<member>``, compared exactly."""
    prefix = prediction_id + MEMBER_SEPARATOR
    return or_(
        MLPrediction.prediction_id == prediction_id,
        func.substr(MLPrediction.prediction_id, 1, len(prefix)) == prefix,
    )


def _same(stored: float, value: float) -> bool:
    return abs(float(stored) - value) <= SAME_VALUE_TOLERANCE


def record(s: Session, prediction_id: str, actual_value: float, score: Scorer, actor: str) -> int:
    """Set the outcome of a prediction's rows; the number of rows updated (0 when already recorded)."""
    check_prediction_id(prediction_id)
    try:
        value = float(actual_value)
    except (TypeError, ValueError):
        raise RegistryError(f"actual_value must be a number, got {actual_value!r}") from None
    if not math.isfinite(value):
        raise RegistryError(f"actual_value must be a finite number, got {actual_value!r}")
    # FOR UPDATE (PostgreSQL): a concurrent recording of the same id waits and then sees this one's value
    rows = list(s.execute(
        select(MLPrediction).where(matching(prediction_id)).order_by(MLPrediction.prediction_id).with_for_update()
    ).scalars())
    if not rows:
        raise NotFoundError(f"no logged prediction '{prediction_id}'")
    conflicting = [r for r in rows if r.actual_value is not None and not _same(r.actual_value, value)]
    if conflicting:
        first = conflicting[0]
        raise RegistryError(
            f"prediction '{first.prediction_id}' already has the outcome {first.actual_value:g}, not {value:g}; "
            "an outcome is recorded once and never overwritten"
        )
    pending = [r for r in rows if r.actual_value is None]
    for row in pending:
        is_correct, error = score(row, value)
        # only a row still without an outcome: on SQLite, a concurrent recording makes this update 0 rows
        done = s.execute(
            update(MLPrediction)
            .where(MLPrediction.id == row.id, MLPrediction.actual_value.is_(None))
            .values(actual_value=value, is_correct=is_correct, prediction_error=clean_number(error))
            .execution_options(synchronize_session=False)
        ).rowcount
        if done != 1:
            raise RegistryError(
                f"the outcome of prediction '{row.prediction_id}' was recorded by someone else meanwhile; "
                "retry to see it"
            )
    if pending:
        audit.append(s, actor, "prediction.outcome", "ml_predictions", prediction_id,
                     {"actual_value": value, "rows": len(pending)})
    return len(pending)


def hit_counts(s: Session, model_id: uuid.UUID | str, arm: str | None = None) -> tuple[int, int, int]:
    """(predictions, those with an outcome, correct ones) logged for a model, in one arm if given."""
    where = [MLPrediction.model_id == as_uuid(model_id, "registered model")]
    if arm is not None:
        where.append(MLPrediction.experiment_arm == arm)
    n, with_outcome, hits = s.execute(
        select(func.count(), func.count(MLPrediction.is_correct), func.sum(cast(MLPrediction.is_correct, Integer)))
        .where(*where)
    ).one()
    return int(n), int(with_outcome), int(hits or 0)
