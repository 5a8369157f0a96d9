"""The task contract: what a prediction means, how it is labelled, scored and served.

A task plugin registers a ``TaskSpec`` whose factory builds a ``Task`` from the
task's validated config. Everything that depends on the task lives on it, so no
module outside a task plugin names a task:

- labels: ``make_targets(panel)`` gives the label columns (their names start
  with ``target``); ``label_horizon()`` says how many bars a label looks ahead
  (the purge the walk-forward needs) or returns None when labels are decided
  after the fact, in which case ``labels_as_of(panel, end)`` recomputes them
  from data up to ``end`` for each fold;
- predictions: ``prediction_columns()`` and ``column_ranges()`` (range checks
  used by the contract tests and by serving);
- scoring: ``score(oos, n_boot, seed)`` (must include ``n``, the rows scored),
  ``compare(oos, reference)`` against the reference baseline, ``beats`` (the gate
  from registered to validated), ``performance_row`` (the row of
  ``model_performance_metrics``);
- serving: ``label(values)`` (the class a served answer shows, if any),
  ``describe(values)`` (extra fields of the answer), ``log_fields(values)`` (what
  is logged in ``ml_predictions``) and ``score_outcome`` (how a logged prediction
  is scored once its outcome is known).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from treum.core.config import build_spec_config, config_dict
from treum.core.specs import TaskSpec


class Task:
    """Base class of tasks; subclasses set ``spec`` and implement the abstract methods."""

    spec: ClassVar[TaskSpec]

    def __init__(self, config: Any):
        self.config = config

    @property
    def name(self) -> str:
        return self.spec.name

    def config_dict(self) -> dict[str, Any]:
        return {"name": self.spec.name, **config_dict(self.config)}

    # labels ------------------------------------------------------------------
    def make_targets(self, panel: pd.DataFrame) -> pd.DataFrame:
        """Label columns (``target*``) on the panel's index, from the whole panel."""
        raise NotImplementedError

    def label_horizon(self) -> int | None:
        """Bars the furthest label looks ahead, or None when labels are decided after the fact."""
        raise NotImplementedError

    def labels_as_of(self, panel: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
        """Labels as they were known at ``end``, from the panel up to ``end`` (after-the-fact tasks).

        A label not yet decided at ``end`` is NaN. Tasks with a label horizon need not
        override this: the walk-forward's purge keeps their labels inside the training data.
        """
        from treum.core.data import slice_time

        return self.make_targets(slice_time(panel, end=end))

    def row_folds(self, frame: pd.DataFrame, seed: int) -> list[Any] | None:
        """Folds of rows for a task whose rows have no time order (``treum.core.evaluation.RowFold``).

        None (the default) scores the task by the walk-forward over dates; a corpus task
        returns its cross-validation folds, and ``final_rows`` the split of the registered fit.
        """
        return None

    def final_rows(self, frame: pd.DataFrame, seed: int) -> Any:
        """The (train, valid) rows of the fit that gets registered, for a task with ``row_folds``."""
        raise NotImplementedError

    def evaluation_note(self) -> str:
        """What the run line says about the scheme, for a task scored by ``row_folds`` (why not walk-forward)."""
        return ""

    def fixed_rule(self, frame: pd.DataFrame) -> tuple[str, pd.DataFrame]:
        """(label, predictions) of a rule that needs no training, beside which a trained version applied
        to other data (``treum evaluate ... version=``) is shown; tasks that allow that define it."""
        raise NotImplementedError(f"task '{self.name}' defines no fixed rule to compare an applied version with")

    def scheme(self) -> str:
        """How the leaderboard's figures were made, for its title."""
        return "walk-forward, out of sample"

    # predictions -------------------------------------------------------------
    def prediction_columns(self) -> tuple[str, ...]:
        """The columns every model of the task predicts (derived from the config)."""
        raise NotImplementedError

    def column_ranges(self) -> dict[str, tuple[float, float]]:
        """Closed [low, high] ranges of prediction columns (inf for unbounded)."""
        return {}

    def check_predictions(self, pred: pd.DataFrame, rows: pd.Index | None = None) -> list[str]:
        """Problems with predictions: missing columns, non-finite or out-of-range values on ``rows``."""
        missing = [c for c in self.prediction_columns() if c not in pred.columns]
        if missing:
            return [f"missing prediction column(s) {missing} (task '{self.name}' predicts {list(self.prediction_columns())})"]
        sub = pred if rows is None else pred.loc[rows]
        problems = []
        for col in self.prediction_columns():
            values = sub[col].to_numpy(dtype=float)
            bad = ~np.isfinite(values)
            if bad.any():
                problems.append(f"{col}: {int(bad.sum())} of {len(values)} rows are not finite")
            lo, hi = self.column_ranges().get(col, (-np.inf, np.inf))
            out = np.isfinite(values) & ((values < lo) | (values > hi))
            if out.any():
                problems.append(f"{col}: {int(out.sum())} values outside [{lo}, {hi}], e.g. {values[out][0]!r}")
        return problems

    # scoring -----------------------------------------------------------------
    def score(self, oos: pd.DataFrame, n_boot: int, seed: int) -> dict[str, float]:
        """Metrics of out-of-sample predictions joined with their labels; includes ``n``."""
        raise NotImplementedError

    def headline(self) -> tuple[str, ...]:
        """The leaderboard's metric columns (the spec's, unless they depend on the config)."""
        return tuple(self.spec.headline)

    def compare(self, oos: pd.DataFrame, reference: pd.DataFrame) -> dict[str, float]:
        """Tests against the reference baseline's predictions on the same rows (none by default)."""
        return {}

    def beats(self, model_metrics: Mapping[str, float], baseline_metrics: list[Mapping[str, float]]) -> bool:
        """True when the model's primary metric is better than every baseline's, on as many rows.

        A model scored on fewer rows than a baseline (it left rows empty) is never validated:
        a figure on the easy rows only is not comparable.
        """
        key, higher = self.spec.primary_metric, self.spec.higher_is_better
        mine = model_metrics.get(key, float("nan"))
        if mine is None or not np.isfinite(mine):
            return False
        n = model_metrics.get("n")
        if n is not None and any((other.get("n") or 0) > n for other in baseline_metrics):
            return False
        for other in baseline_metrics:
            theirs = other.get(key, float("nan"))
            if theirs is None or not np.isfinite(theirs):
                continue
            if (higher and mine <= theirs) or (not higher and mine >= theirs):
                return False
        return True

    def performance_row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        """Columns of ``model_performance_metrics`` from the walk-forward metrics."""
        return {"total_predictions": int(metrics.get("n", 0) or 0)}

    def calibration_target(self) -> tuple[str, str] | None:
        """(label column, kind) that the first prediction column estimates, for conformal prediction:
        kind ``"probability"`` (the output is P(label = 1)) or ``"value"`` (it estimates the label);
        None when the output is not calibrated to any label (a ranking score)."""
        return None

    def decisions(self, oos: pd.DataFrame) -> pd.DataFrame | None:
        """What the model decided about people on out-of-sample rows, for the fairness checks; None: it decides nothing.

        A task whose predictions are recommendations to users returns, on ``oos``'s index, ``selected``
        (1: recommended), ``positive`` (1: the outcome the recommendation is for happened) and ``quality``
        (a per-query figure such as NDCG on one row of each query, NaN elsewhere).
        """
        return None

    # serving -----------------------------------------------------------------
    def label(self, values: Mapping[str, float]) -> str | None:
        """The class a served answer shows (``up``, ``bear``), or None for a number only."""
        return None

    def describe(self, values: Mapping[str, float]) -> dict[str, Any]:
        """Extra fields of a served answer, derived from the predicted values."""
        return {}

    def log_fields(self, values: Mapping[str, float]) -> dict[str, Any]:
        """What ``ml_predictions`` keeps of an answer: prediction_value, _probability, _class."""
        first = self.prediction_columns()[0]
        return {"prediction_value": float(values[first]), "prediction_probability": None,
                "prediction_class": self.label(values)}

    def score_outcome(self, logged: Mapping[str, Any], actual: float) -> tuple[bool | None, float | None]:
        """(is_correct, prediction_error) of a logged prediction once its outcome ``actual`` is known.

        ``logged`` holds the ``log_fields`` of the answer. Raise ValueError for an
        outcome that cannot be an outcome of this task (the API answers 422).
        """
        value = logged.get("prediction_value")
        return None, (None if value is None else float(value) - float(actual))


def build_task(spec: TaskSpec, values: Mapping[str, Any] | None = None) -> Task:
    """A task from its spec and config values (validated like a model's)."""
    return spec.factory(build_spec_config(spec, values or {}, "task"))
