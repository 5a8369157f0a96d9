"""Feature importance: a global ranking of the features by how much the model relies on them.

A model with ``native_importance`` answers itself (``feature_importance()``: gain shares for
LightGBM, |standardised coefficient| shares for the logit). Any other features model gets
permutation importance: each feature column is shuffled across a seeded background sample,
``n_repeats`` times, and its importance is the mean absolute change of the output. It needs no
labels, so it measures what the model reads, not whether reading it helps accuracy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from treum.core.errors import TreumError
from treum.core.explain import PERTURBATION_EXCLUDES, PERTURBATION_REQUIRES, ExplainTarget
from treum.core.hookspecs import hookimpl
from treum.core.specs import ExplainerSpec

METHODS = ("auto", "native", "permutation")


def explain_importance(target: ExplainTarget, rows: pd.DataFrame | None, config: dict[str, Any]) -> dict[str, Any]:
    """Features sorted by importance, with each one's share of the total, and the method used."""
    method = config["method"]
    if method not in METHODS:
        raise TreumError(f"importance: method must be one of {list(METHODS)}, got {method!r}")
    native = "native_importance" in target.capabilities
    if method == "native" and not native:
        raise TreumError(f"importance: model '{target.name}' has no native importance (capability "
                         "'native_importance'); use method 'permutation' or 'auto'")
    if method == "native" or (method == "auto" and native):
        series = target.model.feature_importance().reindex(target.features).fillna(0.0)
        values, how = series.to_numpy(dtype=float), "native (the model's feature_importance())"
    else:
        values = _permutation(target, config)
        how = (f"permutation (mean absolute change of {target.output} when one feature is shuffled over "
               f"{min(len(target.background), config['background_size'])} background rows, "
               f"{config['n_repeats']} repeats)")
    total = values.sum()
    order = np.argsort(-values, kind="stable")
    return {
        "method": how,
        "importances": [{"feature": target.features[j], "importance": values[j],
                         "share": values[j] / total if total > 0 else None} for j in order],
    }


def _permutation(target: ExplainTarget, config: dict[str, Any]) -> np.ndarray:
    """Mean |output change| per feature over ``n_repeats`` seeded shuffles of its column."""
    if config["n_repeats"] < 1:
        raise TreumError(f"importance: n_repeats must be at least 1, got {config['n_repeats']}")
    background = target.sample_background(config["background_size"], config["seed"])
    x = target.feature_matrix(background)
    base = target.predict_matrix(x, template=background)
    rng = np.random.default_rng(config["seed"])
    batches = []
    for j in range(x.shape[1]):  # every shuffle of every feature in one batch: one call to the model
        for _ in range(config["n_repeats"]):
            shuffled = x.copy()
            shuffled[:, j] = rng.permutation(shuffled[:, j])
            batches.append(shuffled)
    changed = target.predict_matrix(np.vstack(batches), template=background)
    change = np.abs(changed.reshape(x.shape[1], config["n_repeats"], len(x)) - base)
    return change.mean(axis=(1, 2))


IMPORTANCE = ExplainerSpec(
    name="importance",
    description="global feature ranking: the model's own importance, or permutation importance on its output",
    explain=explain_importance,
    requires=PERTURBATION_REQUIRES,
    excludes=PERTURBATION_EXCLUDES,
    scope="global",
    defaults={"method": "auto", "n_repeats": 5, "background_size": 1000, "seed": 0},
)


@hookimpl
def treum_explainers() -> list[ExplainerSpec]:
    return [IMPORTANCE]
