"""Registered versions as the service holds them: the loaded model and the task it answers.

A version's task is rebuilt from what its registration recorded
(``model_metadata["task_config"]``, the task's name in ``model_type``), so its
prediction columns, label, extra answer fields, log fields and outcome scoring
are those it was trained for (horizons, thresholds), not the task's defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from treum.core.model import load_model
from treum.core.task import Task, build_task
from treum.serve.bars import RequestError


@dataclass
class LiveModel:
    """A registered version the service can answer with."""

    id: str
    name: str
    version: str
    task: Task | None  # None when its task cannot be built (see ``error``)
    task_name: str
    sha256: str
    status: str
    features: str
    entities: tuple[str, ...] = ()
    model: Any = None  # loaded in this process (local placement), or None (remote)
    error: str | None = None  # why it could not be loaded

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


@dataclass
class Experiment:
    id: str
    name: str
    model_name: str
    control: LiveModel
    treatment: LiveModel
    treatment_percent: float


def task_of(plugins: Any, task_name: str, metadata: Mapping[str, Any] | None) -> Task:
    """The task a version was registered for: its recorded config, or the task's defaults if none was recorded."""
    values = dict((metadata or {}).get("task_config") or {})
    values.pop("name", None)
    return build_task(plugins.task(task_name), values)


def load_version(registry: Any, plugins: Any, sha256: str, task: Task | None) -> Any:
    """Load a registered artifact (its hashes verified) with its task; a model saved without one gets ``task``."""
    model = load_model(registry.artifacts.get(sha256), plugins.specs("models"), plugins.specs("tasks"))
    if model.task is None:
        model.task = task
    return model


def predict_last(model: Any, frame: pd.DataFrame, columns: tuple[str, ...]) -> dict[str, float]:
    """A model's answer for the frame's last bar; a sequential model reads the whole frame as context."""
    data = frame if "sequential" in model.spec.capabilities else frame.iloc[[-1]]
    last = getattr(model, "predict_last", None)
    row = last(data) if last is not None else model.predict(data).iloc[-1]
    missing = [c for c in columns if c not in row.index]
    if missing:
        raise RequestError(422, f"{model.spec.name} predicts {list(row.index)}, not {missing}")
    values = {c: float(row[c]) for c in columns}
    if not all(np.isfinite(v) for v in values.values()):
        last_row = frame.iloc[-1]
        undefined = [str(c) for c, v in last_row.items() if str(c).startswith("f_") and not np.isfinite(v)]
        why = (f"its features {undefined[:6]}{' ...' if len(undefined) > 6 else ''} are undefined on the last bar "
               "(too few bars for their window, or a column that never varies, such as a constant volume)"
               if undefined else "too few bars for its window?")
        raise RequestError(422, f"{model.spec.name} has no prediction for the last bar: {why}")
    task = getattr(model, "task", None)
    if task is not None:  # the task's range checks, as in the contract tests: never serve a probability of 1.3
        ranges = task.column_ranges()
        bad = [f"{c}={v!r} outside [{ranges[c][0]}, {ranges[c][1]}]" for c, v in values.items()
               if c in ranges and not ranges[c][0] <= v <= ranges[c][1]]
        if bad:
            raise RequestError(503, f"{model.spec.name} answered out of its task's range ({'; '.join(bad)}); "
                                    "the answer is withheld")
    return values
