"""Scoring a logged prediction once its outcome is known, with the task of each of its rows.

A row of a single model is scored by the task that model version was registered
for; an ensemble's own row has no model and carries its task (and that task's
config) in ``input_features``. The registry records the outcome
(``Registry.record_outcome``: exact id match, no overwrite, audited); this
module only supplies the scorer and turns refusals into answers that say what
to fix.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from treum.core.errors import NotFoundError, RegistryError
from treum.core.task import Task
from treum.registry.outcomes import check_prediction_id
from treum.registry.schema import MLPrediction
from treum.serve.bars import RequestError
from treum.serve.live import task_of

LOG_FIELDS = ("prediction_value", "prediction_probability", "prediction_class")


class OutcomeRefused(ValueError):
    """A task refused an outcome (``Task.score_outcome`` raised ValueError)."""

    def __init__(self, task: str, message: str):
        super().__init__(message)
        self.task = task


class TaskScorer:
    """``scorer(row, actual) -> (is_correct, prediction_error)`` by the row's task; tasks are built once per call."""

    def __init__(self, plugins: Any, registry: Any, loaded_task: Callable[[str], Task | None]):
        self.plugins, self.registry, self.loaded_task = plugins, registry, loaded_task
        self._tasks: dict[str, Task | None] = {}

    def task_of_row(self, row: MLPrediction) -> Task | None:
        """The row's task; None for a row logged before predictions carried their task."""
        inputs = row.input_features or {}
        if row.model_id is not None:
            key = str(row.model_id)
        else:
            key = json.dumps([inputs.get("task"), inputs.get("task_config")], sort_keys=True)
        if key not in self._tasks:
            if row.model_id is not None:
                task = self.loaded_task(key)
                if task is None:
                    m = self.registry.get_by_id(row.model_id)
                    task = task_of(self.plugins, m.model_type, m.model_metadata)
                self._tasks[key] = task
            elif inputs.get("task"):
                self._tasks[key] = task_of(self.plugins, inputs["task"], {"task_config": inputs.get("task_config")})
            else:
                self._tasks[key] = None
        return self._tasks[key]

    def __call__(self, row: MLPrediction, actual: float) -> tuple[bool | None, float | None]:
        task = self.task_of_row(row)
        if task is None:  # the outcome is kept, unscored
            return None, None
        try:
            return task.score_outcome({k: getattr(row, k) for k in LOG_FIELDS}, actual)
        except ValueError as exc:
            raise OutcomeRefused(task.name, str(exc)) from None


def record_outcome(registry: Any, scorer: TaskScorer, prediction_id: str, actual_value: float, actor: str,
                   flush_seconds: float) -> int:
    """Record and score an outcome; the rows updated. Refusals are RequestErrors that say what to fix."""
    try:
        check_prediction_id(prediction_id)
    except RegistryError as exc:
        raise RequestError(422, str(exc)) from None
    try:
        return registry.record_outcome(prediction_id, actual_value, scorer, actor)
    except OutcomeRefused as exc:
        raise RequestError(422, f"prediction '{prediction_id}' is a '{exc.task}' prediction, and task "
                                f"'{exc.task}' refuses the outcome {actual_value:g}: {exc}") from None
    except NotFoundError:
        raise RequestError(404, f"no logged prediction '{prediction_id}' (logs are written within "
                                f"{flush_seconds:g} s of the answer; retry)") from None
