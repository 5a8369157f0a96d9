"""The explain API: what an explainer sees of a model, which explainers apply, and how one is run.

An explainer plugin registers an ``ExplainerSpec`` (``treum_explainers``). Its ``explain(target,
rows, config)`` receives an ``ExplainTarget``: the fitted model, its task, background rows of the
model's input, and optionally labelled held-out rows. ``explain(name, ...)`` here looks the
explainer up, checks the model's capabilities against the spec's ``requires`` and ``excludes``,
completes and checks the config, and returns a JSON-serialisable dict.

Most explainers perturb rows: they put new feature values into a copy of a row and predict it
alone. That needs a model that reads ``f_*`` features (``uses_features``) and answers each row
from that row alone: a ``sequential`` model needs the history before the row and a
``cross_sectional`` one the other entities of its day, so one perturbed row means nothing to
either. ``PERTURBATION_REQUIRES`` and ``PERTURBATION_EXCLUDES`` say so once, for every such
explainer's spec.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from treum.core.errors import TreumError, did_you_mean
from treum.core.evaluation import without_labels
from treum.core.model import feature_columns
from treum.core.specs import ExplainerSpec

PERTURBATION_REQUIRES = frozenset({"uses_features"})
PERTURBATION_EXCLUDES = frozenset({"sequential", "cross_sectional"})
LABEL_KINDS = ("probability", "value")
# a column of the held-out rows holding predictions made without them (a walk-forward's); conformal reads it
# instead of predicting the rows again with a model that may have been fitted on them
HELD_OUT_PREDICTION = "held_out_prediction"

# why a model without (or with) a capability cannot be explained that way: the errors say it
MISSING_REASONS = {
    "uses_features": "it reads no f_* feature columns, so there is nothing to attribute its answers to",
    "tree": "it exposes no native tree ensemble (tree_model())",
    "native_importance": "it has no feature_importance() of its own",
    "probabilistic": "it predicts no probabilities",
}
EXCLUDED_REASONS = {
    "sequential": "it needs the history before each row, so a row perturbed alone has no defined answer",
    "cross_sectional": "its answer for one entity depends on the other entities that day, so a row perturbed "
    "alone has no defined answer",
}

# perturbed rows get unique timestamps from here, one second apart, so no two share an index
_SYNTHETIC_ORIGIN = pd.Timestamp("2000-01-01")
_PREDICT_CHUNK = 50_000  # rows per model.predict call, to bound the memory of a big batch


def chronological(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame ordered by its ``timestamp`` index level (stable), or as it is without one."""
    if "timestamp" not in (frame.index.names or []):
        return frame
    order = np.argsort(frame.index.get_level_values("timestamp").values, kind="stable")
    return frame.iloc[order]


def row_id(frame: pd.DataFrame, position: int) -> dict[str, str]:
    """A row's index as JSON: ``{"timestamp": "2012-03-05T00:00:00", "entity": "SPX"}``."""
    value = frame.index[position]
    values = value if isinstance(value, tuple) else (value,)
    names = [n or f"level_{i}" for i, n in enumerate(frame.index.names)]
    return {name: v.isoformat() if isinstance(v, pd.Timestamp) else str(v) for name, v in zip(names, values)}


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON: numpy numbers to floats and ints, arrays to lists, NaN and inf to None."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, pd.Series)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else list(value)
        return [json_safe(v) for v in items]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is None or isinstance(value, str):
        return value
    return str(value)


class ExplainTarget:
    """What an explainer explains: a fitted model, its task, and the data around it.

    ``background`` holds rows of the model's input (label columns are dropped: predict never sees
    them); for a model that explainers may perturb, rows with a missing feature are left out.
    ``labels`` are labelled held-out rows (the model's input columns and ``target_column``),
    which conformal prediction calibrates on; ``kind`` says whether that label is a class (0/1,
    the output is the probability of class 1: ``"probability"``) or a number the output
    estimates (``"value"``). ``output`` is the prediction column explained (the task's first
    unless named); ``immutable`` names features a counterfactual may never change.
    """

    def __init__(
        self,
        model: Any,
        task: Any,
        background: pd.DataFrame,
        *,
        output: str | None = None,
        labels: pd.DataFrame | None = None,
        target_column: str | None = None,
        kind: str = "value",
        immutable: Iterable[str] = (),
    ):
        self.model = model
        self.task = task
        self.name: str = model.spec.name
        self.capabilities = frozenset(model.spec.capabilities)
        columns = tuple(task.prediction_columns())
        self.output = output if output is not None else columns[0]
        if self.output not in columns:
            raise TreumError(f"model '{self.name}' predicts {list(columns)}; there is no output '{self.output}' "
                             f"to explain{did_you_mean(self.output, columns)}")
        if kind not in LABEL_KINDS:
            raise TreumError(f"kind must be one of {list(LABEL_KINDS)}, got {kind!r}")
        self.kind = kind
        frame = without_labels(background)
        found = getattr(model, "features_", None)
        self.features: list[str] = list(found) if found else feature_columns(frame)
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise TreumError(f"model '{self.name}' reads features {missing[:5]} that the background rows lack; "
                             "build the background with the feature set the model was fitted on")
        if self.perturbable:  # a row with a missing feature cannot be perturbed into a defined answer
            frame = frame[np.isfinite(frame[self.features].to_numpy(dtype=float)).all(axis=1)]
        if len(frame) == 0:
            raise TreumError(f"model '{self.name}': no background row has every feature {self.features[:5]}...")
        self.background = chronological(frame)
        if target_column is not None and labels is not None and target_column not in labels.columns:
            raise TreumError(f"the held-out rows have no label column '{target_column}'"
                             f"{did_you_mean(target_column, map(str, labels.columns))}")
        self.labels = labels
        self.target_column = target_column
        self.columns = frozenset(map(str, frame.columns))
        self.immutable = self.known_features(immutable, "immutable")

    # what the model is ----------------------------------------------------------------
    @property
    def perturbable(self) -> bool:
        """True when a row's features may be changed and the row predicted alone."""
        return PERTURBATION_REQUIRES <= self.capabilities and not PERTURBATION_EXCLUDES & self.capabilities

    def require_perturbable(self) -> None:
        """Raise ``TreumError`` saying why this model's rows cannot be perturbed, if they cannot."""
        problems = capability_problems(PERTURBATION_REQUIRES, PERTURBATION_EXCLUDES, self.capabilities)
        if problems:
            raise TreumError(f"model '{self.name}' cannot be explained by perturbing its rows ({'; '.join(problems)})")

    def known_features(self, names: Iterable[str], what: str) -> tuple[str, ...]:
        """The names in ``names`` that the model reads, in order.

        A column of the input that the model does not read is dropped (a feature set may declare
        columns immutable that this model never uses); a name that is no column at all is a typo,
        and a ``TreumError`` that names the closest feature.
        """
        names = list(names)
        for name in names:
            if name not in self.features and name not in self.columns:
                raise TreumError(f"{what} feature '{name}' is not a feature of model '{self.name}'"
                                 f"{did_you_mean(name, self.features)} (features: {', '.join(self.features)})")
        return tuple(n for n in names if n in self.features)

    # predictions ----------------------------------------------------------------------
    def predict_frame(self, x: np.ndarray, template: pd.DataFrame | None = None) -> pd.DataFrame:
        """The model's predictions for feature matrix ``x`` (one row per row of ``x``, in its order).

        Each row of ``x`` goes into a copy of a template row (the rows of ``template`` in turn,
        by default the latest background row), whose other columns it keeps, under a unique
        synthetic timestamp and the template's entity, so a model that answers per row answers
        each perturbed row on its own.
        """
        self.require_perturbable()
        x = np.atleast_2d(np.asarray(x, dtype=float))
        if x.shape[1] != len(self.features):
            raise ValueError(f"x has {x.shape[1]} columns; model '{self.name}' reads {len(self.features)} features")
        template = self.background.iloc[[-1]] if template is None else without_labels(template)
        parts = []
        for start in range(0, len(x), _PREDICT_CHUNK):
            chunk = x[start:start + _PREDICT_CHUNK]
            picks = np.arange(start, start + len(chunk)) % len(template)  # row i of x always goes into template row i mod n
            frame = template.iloc[picks].copy()
            frame[self.features] = chunk
            stamps = _SYNTHETIC_ORIGIN + pd.to_timedelta(np.arange(start, start + len(chunk)), unit="s")
            names = list(template.index.names)
            entities = (template.index.get_level_values("entity")[picks] if "entity" in names
                        else pd.Index(["synthetic"] * len(chunk)))
            frame.index = pd.MultiIndex.from_arrays([stamps, entities], names=["timestamp", "entity"])
            pred = self.model.predict(frame)
            parts.append(pred.reindex(frame.index).reset_index(drop=True))
        return pd.concat(parts, ignore_index=True)

    def predict_matrix(self, x: np.ndarray, template: pd.DataFrame | None = None) -> np.ndarray:
        """The explained output column for feature matrix ``x``, as floats (see ``predict_frame``)."""
        return self.predict_frame(x, template)[self.output].to_numpy(dtype=float)

    def predict_rows(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The model's predictions for real rows of its input (labels dropped), on their own index."""
        return self.model.predict(without_labels(rows)).reindex(rows.index)

    def feature_matrix(self, rows: pd.DataFrame) -> np.ndarray:
        """The model's features of ``rows`` as a float matrix; a row with a missing feature is an error."""
        missing = [f for f in self.features if f not in rows.columns]
        if missing:
            raise TreumError(f"the rows to explain lack features {missing[:5]} of model '{self.name}'")
        x = rows[self.features].to_numpy(dtype=float)
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise TreumError(f"row {row_id(rows, first)} has missing features "
                             f"{[f for f, v in zip(self.features, x[first]) if not np.isfinite(v)][:5]}; "
                             "explain rows with every feature present")
        return x

    def sample_background(self, size: int, seed: int) -> pd.DataFrame:
        """At most ``size`` background rows, drawn without replacement with ``seed``, in time order."""
        if len(self.background) <= size:
            return self.background
        picks = np.sort(np.random.default_rng(seed).choice(len(self.background), size=size, replace=False))
        return self.background.iloc[picks]

    # decisions ------------------------------------------------------------------------
    def decisions(self, predictions: pd.DataFrame, values: Sequence[float] | None = None,
                  threshold: float | None = None) -> list[str | None]:
        """The class each prediction row means (``task.label``), or its side of ``threshold`` when given.

        ``values``, when given, replace the output column first (a surrogate's answers read as
        the model's). A task without classes gives None for every row unless a threshold is set.
        """
        out: list[str | None] = []
        for i, (_, row) in enumerate(predictions.iterrows()):
            record = {k: float(v) for k, v in row.items()}
            if values is not None:
                record[self.output] = float(values[i])
            if threshold is not None:
                out.append("above" if record[self.output] > threshold else "at_or_below")
            else:
                label = self.task.label(record)
                out.append(None if label is None else str(label))
        return out


def capability_problems(requires: Iterable[str], excludes: Iterable[str], capabilities: Iterable[str]) -> list[str]:
    """Why a model with ``capabilities`` fails ``requires``/``excludes``, one phrase each (empty: it passes)."""
    caps = frozenset(capabilities)
    problems = [f"it needs capability '{c}', which the model lacks: {MISSING_REASONS.get(c, 'not declared')}"
                for c in sorted(set(requires) - caps)]
    problems += [f"the model is '{c}': {EXCLUDED_REASONS.get(c, 'this explainer refuses such models')}"
                 for c in sorted(set(excludes) & caps)]
    return problems


def applicable(spec_capabilities: Iterable[str], explainers: Mapping[str, ExplainerSpec]) -> list[str]:
    """Names of the explainers that apply to a model with these capabilities, sorted."""
    caps = frozenset(spec_capabilities)
    return sorted(name for name, spec in explainers.items()
                  if not capability_problems(spec.requires, spec.excludes, caps))


def explainer_config(spec: ExplainerSpec, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """``spec.defaults`` completed with ``config``; an unknown key or a value of the wrong kind is an error."""
    values = dict(spec.defaults)
    for key, value in (config or {}).items():
        if key not in spec.defaults:
            raise TreumError(f"explainer '{spec.name}' has no config key '{key}'{did_you_mean(key, spec.defaults)} "
                             f"(keys: {', '.join(spec.defaults) or 'none'})")
        default = spec.defaults[key]
        if default is not None and value is not None and not _same_kind(default, value):
            raise TreumError(f"explainer '{spec.name}': config '{key}' must be like {default!r}, got {value!r}")
        if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
            value = int(value)  # 21.0 from YAML or JSON means the count 21
        values[key] = value
    return values


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and (isinstance(default, float) or float(value).is_integer())
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def explain(
    name: str,
    target: ExplainTarget,
    rows: pd.DataFrame | None,
    config: Mapping[str, Any] | None,
    explainers: Mapping[str, ExplainerSpec],
) -> dict[str, Any]:
    """Run explainer ``name`` on ``target`` for ``rows``; the result is plain JSON.

    ``explainers`` maps names to specs (the plugin registry's explainers). An unknown name, an
    explainer that does not apply to the model's capabilities, a local explainer given no rows
    and an unknown config key are each a ``TreumError`` that says what to do instead. The result
    carries ``explainer``, ``model``, ``output`` and the explainer's ``method``.
    """
    if name not in explainers:
        raise TreumError(f"explainer '{name}' is not registered{did_you_mean(name, explainers)} "
                         f"(registered: {', '.join(explainers) or 'none'}; see `treum plugins list`)")
    spec = explainers[name]
    problems = capability_problems(spec.requires, spec.excludes, target.capabilities)
    if problems:
        others = applicable(target.capabilities, explainers)
        raise TreumError(f"explainer '{name}' does not apply to model '{target.name}' ({'; '.join(problems)}); "
                         f"explainers that do: {', '.join(others) or 'none'}")
    values = explainer_config(spec, config)
    if rows is not None:
        rows = without_labels(rows)
    if spec.scope == "local" and (rows is None or len(rows) == 0):
        raise TreumError(f"explainer '{name}' explains given rows (scope 'local'); pass the rows to explain")
    limit = values.get("max_rows")
    if rows is not None and isinstance(limit, int) and len(rows) > limit:
        raise TreumError(f"explainer '{name}' was given {len(rows)} rows; its cost grows with each, so it takes at "
                         f"most max_rows={limit} (raise it in the config, or pass fewer rows)")
    result = spec.explain(target, rows, values)
    if "method" not in result:
        raise TreumError(f"explainer '{name}' returned no 'method'; its plugin must say how it explained")
    return json_safe({"explainer": name, "model": target.name, "output": target.output, **result})
