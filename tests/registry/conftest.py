"""Registry test helpers: a small real artifact, a version registered as a run would, logged predictions."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from treum.registry.schema import MLPrediction
from treum.registry.store import Registry

METRICS = {"accuracy": 0.53, "auc": 0.51, "n": 100.0, "ic": float("nan")}
PERFORMANCE = {"accuracy": 0.53, "auc_roc": 0.51, "total_predictions": 100}


@pytest.fixture
def artifact(tmp_path):
    """``artifact(payload)``: a saved logistic-regression model through the real save path (cached per payload)."""
    made: dict[str, Path] = {}

    def make(payload: str = "weights") -> Path:
        if payload not in made:
            import numpy as np
            import pandas as pd

            from treum.zoo.logit import LogitDirection, LogitDirectionConfig

            rng = np.random.default_rng(len(payload))
            idx = pd.MultiIndex.from_arrays([pd.bdate_range("2020-01-01", periods=200), ["X"] * 200],
                                            names=["timestamp", "entity"])
            data = pd.DataFrame({"f_a": rng.normal(size=200), "f_b": rng.normal(size=200)}, index=idx)
            data["target"] = (data["f_a"] + rng.normal(size=200) > 0).astype(float)
            model = LogitDirection(LogitDirectionConfig()).fit(data)
            made[payload] = model.save(tmp_path / f"artifact-{payload}")
        return made[payload]

    return make


@pytest.fixture
def register(registry: Registry, artifact):
    """``register(name=..., validated=..., payload=..., data=..., **overrides)``: a new version."""

    def add(name: str = "gbm_direction", validated: bool = True, payload: str = "w", data: str | None = "sp500",
            **overrides: Any):
        kwargs: dict[str, Any] = dict(
            name=name, task="direction", family="linear", config={"c": 0.05}, artifact_dir=artifact(payload),
            metrics=METRICS, performance=PERFORMANCE, baselines={"always_up": {"auc": 0.5}}, validated=validated,
            data_version="abc", metadata={"data": data} if data is not None else {},
        )
        kwargs.update(overrides)
        return registry.register(**kwargs)

    return add


def score_by_sign(row: MLPrediction, actual: float) -> tuple[bool | None, float | None]:
    """What a serving layer might pass: the probability of 'up' against the sign of the realised return."""
    if row.prediction_probability is None:
        return None, None
    up = 1.0 if actual > 0 else 0.0
    return (row.prediction_probability > 0.5) == (actual > 0), row.prediction_probability - up


@pytest.fixture
def sign_scorer():
    return score_by_sign


@pytest.fixture
def log_predictions(registry: Registry):
    """``log_predictions(*ids, model_id=None, **fields)``: prediction rows, as the serving log writer adds them."""

    def add(*prediction_ids: str, model_id: uuid.UUID | None = None, **fields: Any) -> None:
        with registry.transaction() as s:
            for pid in prediction_ids:
                s.add(MLPrediction(prediction_id=pid, model_id=model_id, input_features={"bars": 3},
                                   entity_type="instrument", entity_id="SPX", **fields))

    return add


def drop_append_only_triggers(engine) -> None:
    """What someone with DDL rights can do: take the append-only triggers off ``audit_log`` (revision 0004)."""
    from sqlalchemy import text

    statements = {
        "sqlite": ["DROP TRIGGER audit_log_no_update", "DROP TRIGGER audit_log_no_delete"],
        "postgresql": ["DROP TRIGGER audit_log_no_change ON audit_log", "DROP TRIGGER audit_log_no_truncate ON audit_log"],
    }[engine.dialect.name]
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


@pytest.fixture
def lifecycle(registry: Registry, register):
    """A version registered, deployed and retired: four audit rows."""
    register()
    registry.deploy("gbm_direction", "1", actor="alice")
    registry.retire("gbm_direction", "1", actor="bob")
    return registry
