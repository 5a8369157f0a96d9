"""What a registered version is explained on: its data set with its feature set, as the version was trained.

``treum report`` and the explanation routes (``treum.serve.explain_routes``) both explain a
deployed version on the newest rows of the data set its registration names
(``model_metadata["data"]``), with the feature set it was trained with
(``model_metadata["features"]``), computed with that set's defaults. The frame and the
``ExplainTarget`` are built here, once, for both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from treum.core.data import data_version
from treum.core.errors import UnavailableError
from treum.core.explain import HELD_OUT_PREDICTION, ExplainTarget

RECENT_ROWS = 20_000  # the background: the newest rows of the data set (the explainers sample from them)


def version_frame(plugins: Any, meta: Mapping[str, Any], expected_version: str | None = None) -> pd.DataFrame:
    """The version's data set, loaded with the config it was trained with, joined with its feature set computed
    with the feature config it was trained with.

    UnavailableError when the data set is not installed here, or when it now gives other data than the
    version was trained on (``expected_version``, the registry's ``training_data_version``): the rows would
    not be the ones its out-of-sample predictions and segments belong to.
    """
    data_name = meta.get("data")
    if data_name not in plugins.specs("datasets"):
        raise UnavailableError(f"the data set '{data_name}' this version was trained on is not installed here")
    # the config it was trained with (a simulator's size and seed), not the data set's defaults
    panel = plugins.dataset(data_name).load(dict(meta.get("data_config") or {}))
    if expected_version and data_version(panel) != expected_version:
        raise UnavailableError(f"the data set '{data_name}' now gives other data (version {data_version(panel)}) than "
                               f"this version was trained on ({expected_version}); retrain it, or load the data it saw")
    features = meta.get("features")
    if features and features != "none":
        panel = panel.join(plugins.feature_set(features).compute(panel, dict(meta.get("features_config") or {})))
    return panel


def immutable_features(plugins: Any, frame: pd.DataFrame) -> list[str]:
    """Features a counterfactual may not change: the profile's and the instrument's own (the feature sets say)."""
    names: list[str] = []
    for spec in plugins.specs("features").values():
        names += [c for c in getattr(spec, "immutable", ()) if c in frame.columns]
    return names


def explain_target(plugins: Any, model: Any, task: Any, frame: pd.DataFrame,
                   oos: pd.DataFrame | None = None) -> ExplainTarget:
    """The ExplainTarget of a fitted version over ``frame`` (``version_frame``): the newest ``RECENT_ROWS`` rows
    as background and, when the walk-forward's out-of-sample rows ``oos`` are given and the task has a calibrated
    label, those rows with their label as the held-out rows (conformal; the surrogate's fidelity).

    TreumError when the frame cannot serve as the model's input (a feature it reads is missing).
    """
    recent = frame.iloc[-min(len(frame), RECENT_ROWS):]
    calibration = task.calibration_target()
    labels = None
    if calibration is not None and oos is not None:
        # the walk-forward's predictions ride along: the deployed fit has seen these rows, its folds had not
        output = task.prediction_columns()[0]
        kept = oos[[calibration[0]]].join(oos[[output]].rename(columns={output: HELD_OUT_PREDICTION}))
        labels = frame.drop(columns=[c for c in frame.columns if str(c).startswith("target")]).join(kept, how="inner")
    return ExplainTarget(model, task, recent, labels=labels,
                         target_column=calibration[0] if calibration else None,
                         kind=calibration[1] if calibration else "value",
                         immutable=immutable_features(plugins, recent))
