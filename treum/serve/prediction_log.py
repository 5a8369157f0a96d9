"""The rows of ``ml_predictions`` an answer is logged as, each with what its task keeps (``Task.log_fields``).

Every row carries its task's name in ``input_features["task"]``; an ensemble's
own row (it has no model) carries the task's config too, so its outcome can be
scored by that task later (``treum.serve.outcomes``).
"""

from __future__ import annotations

import uuid
from typing import Any

from treum.core.task import Task
from treum.serve.bars import Source
from treum.serve.ensemble import MemberAnswer
from treum.serve.live import LiveModel
from treum.serve.outcomes import LOG_FIELDS


def log_fields(task: Task, values: dict[str, float]) -> dict[str, Any]:
    """The task's log fields, only the columns ``ml_predictions`` has for them."""
    fields = task.log_fields(values)
    return {k: fields.get(k) for k in LOG_FIELDS}


def single_row(prediction_id: str, live: LiveModel, source: Source, values: dict[str, float],
               arm: str | None) -> dict[str, Any]:
    """The row of one model's answer."""
    return dict(
        model_id=uuid.UUID(live.id), prediction_id=prediction_id,
        input_features={"instrument": source.instrument, "last_bar": source.last, "task": live.task_name},
        **log_fields(live.task, values), entity_type="instrument", entity_id=source.instrument,
        model_version=live.version, experiment_arm=arm,
    )


def ensemble_rows(answer: dict, answers: list[MemberAnswer], task: Task, values: dict[str, float], regime: dict,
                  inputs: dict, digest: str) -> list[dict[str, Any]]:
    """A row per member that answered (``<id>:<member>``) and the ensemble's own row (``<id>``)."""
    rid = answer["prediction_id"]
    rows = [
        dict(model_id=uuid.UUID(a.model_id), prediction_id=f"{rid}:{a.name}",
             input_features={**inputs, "task": a.task.name}, feature_hash=digest, **log_fields(a.task, a.values),
             entity_type="instrument", entity_id=answer["instrument"], inference_time_ms=int(round(a.latency_ms)),
             model_version=a.version, experiment_arm=a.arm)
        for a in answers if a.status == "ok"
    ]
    rows.append(dict(
        model_id=None, prediction_id=rid,
        input_features={**inputs, "task": task.name, "task_config": task.config_dict()}, feature_hash=digest,
        **log_fields(task, values),
        ensemble_predictions={a.name: {"version": a.version, "values": a.values, "status": a.status, "arm": a.arm}
                              for a in answers},
        ensemble_weights={"state_task": regime["task"], "state": regime["label"],
                          "state_model": f"{regime['model']} v{regime['version']}", "weights": answer["weights"]},
        entity_type="instrument", entity_id=answer["instrument"],
        inference_time_ms=int(round(answer["timing_ms"]["total"])), model_version="ensemble",
    ))
    return rows
