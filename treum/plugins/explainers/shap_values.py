"""SHAP values: each feature's share of a prediction, per row, and their mean size as a global ranking.

A model with the ``tree`` capability is read by SHAP's TreeExplainer (exact, fast, path-dependent:
no background needed). Its values are in the trees' raw score: for a LightGBM binary classifier
that is the log-odds of the output, not the probability; the result says which in ``values_in``
and checks that base value + values reproduces the model's answer (``additivity_error``). Any
other features model goes through SHAP's PermutationExplainer over a seeded background sample,
whose values are in the output's own units and add up to the prediction by construction.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from treum.core.errors import TreumError
from treum.core.explain import PERTURBATION_EXCLUDES, PERTURBATION_REQUIRES, ExplainTarget, row_id
from treum.core.hookspecs import hookimpl
from treum.core.specs import ExplainerSpec

ALGORITHMS = ("auto", "tree", "permutation")


def explain_shap(target: ExplainTarget, rows: pd.DataFrame, config: dict[str, Any]) -> dict[str, Any]:
    """SHAP values of ``rows``: per row a base value and one value per feature, plus mean |SHAP| per feature."""
    algorithm = config["algorithm"]
    if algorithm not in ALGORITHMS:
        raise TreumError(f"shap: algorithm must be one of {list(ALGORITHMS)}, got {algorithm!r}")
    has_tree = "tree" in target.capabilities
    if algorithm == "tree" and not has_tree:
        raise TreumError(f"shap: algorithm 'tree' needs a model with capability 'tree' (tree_model()); "
                         f"model '{target.name}' has none, use algorithm 'permutation' or 'auto'")
    x = target.feature_matrix(rows)
    predictions = target.predict_matrix(x, template=rows)
    if algorithm == "tree" or (algorithm == "auto" and has_tree):
        values, base, values_in, method, error = _tree_values(target, x, predictions)
    else:
        values, base, method = _permutation_values(target, x, rows, config)
        values_in, error = target.output, float(np.max(np.abs(base + values.sum(axis=1) - predictions)))
    mean_abs = np.abs(values).mean(axis=0)
    order = np.argsort(-mean_abs, kind="stable")
    return {
        "method": method,
        "values_in": values_in,
        "additivity_error": error,
        "rows": [
            {"row": row_id(rows, i), "prediction": predictions[i], "base_value": base[i],
             "values": dict(zip(target.features, values[i]))}
            for i in range(len(rows))
        ],
        "ranking": [{"feature": target.features[j], "mean_abs_shap": mean_abs[j]} for j in order],
    }


def _tree_values(target: ExplainTarget, x: np.ndarray, predictions: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, str, str, float]:
    """TreeExplainer's values; which units they are in is read off the model's own answers."""
    import shap

    with warnings.catch_warnings():  # shap warns that LightGBM binary output changed shape between versions
        warnings.simplefilter("ignore", UserWarning)
        explainer = shap.TreeExplainer(target.model.tree_model())
        raw = explainer.shap_values(x)
    values = np.asarray(raw[-1] if isinstance(raw, list) else raw, dtype=float)
    if values.ndim == 3:  # (rows, features, classes): the last class is the one a binary output is about
        values = values[:, :, -1]
    expected = np.ravel(np.asarray(explainer.expected_value, dtype=float))
    base = np.full(len(x), expected[-1])
    score = base + values.sum(axis=1)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        as_probability = 1.0 / (1.0 + np.exp(-score))
        log_odds = np.log(predictions / (1.0 - predictions))
    if np.allclose(score, predictions, rtol=1e-5, atol=1e-6):
        values_in, error = target.output, np.abs(score - predictions)
    elif np.allclose(as_probability, predictions, rtol=1e-5, atol=1e-6):
        values_in, error = f"log-odds of {target.output}", np.abs(score - log_odds)
    else:  # a transform we cannot name: say so rather than mislabel the units
        values_in, error = f"the tree model's raw score (not {target.output})", np.full(len(x), np.nan)
    method = "tree (shap.TreeExplainer, path-dependent)"
    return values, base, values_in, method, float(np.nanmax(error)) if np.isfinite(error).any() else float("nan")


def _permutation_values(target: ExplainTarget, x: np.ndarray, rows: pd.DataFrame, config: dict[str, Any]
                        ) -> tuple[np.ndarray, np.ndarray, str]:
    """PermutationExplainer's values over a seeded background sample, without touching numpy's global seed."""
    import shap

    background = target.sample_background(config["background_size"], config["seed"])
    bg = target.feature_matrix(background)
    masker = shap.maskers.Independent(bg, max_samples=len(bg))
    n = len(target.features)
    max_evals = config["max_evals"] or 10 * (2 * n + 1)  # ten forward-and-back permutations
    if max_evals < 2 * n + 1:
        raise TreumError(f"shap: max_evals must be at least 2 * features + 1 = {2 * n + 1}, got {max_evals}")
    values = np.empty_like(x)
    base = np.empty(len(x))
    state = np.random.get_state()  # shap seeds numpy's global generator: leave the caller's as it was
    try:
        for i in range(len(x)):  # each row from the same seed: its values do not depend on the other rows
            explainer = shap.PermutationExplainer(
                lambda m, i=i: target.predict_matrix(m, template=rows.iloc[[i]]), masker, seed=config["seed"])
            result = explainer(x[i:i + 1], max_evals=max_evals, silent=True)
            values[i] = np.asarray(result.values, dtype=float)[0]
            base[i] = float(np.ravel(result.base_values)[0])
    finally:
        np.random.set_state(state)
    method = f"permutation (shap.PermutationExplainer, {len(bg)} background rows, max_evals={max_evals})"
    return values, base, method


SHAP = ExplainerSpec(
    name="shap",
    description="SHAP values per row and feature (TreeExplainer for tree models, permutation otherwise), "
    "with mean |SHAP| as a global ranking",
    explain=explain_shap,
    requires=PERTURBATION_REQUIRES,
    excludes=PERTURBATION_EXCLUDES,
    scope="local",
    report_rows=50,
    defaults={"algorithm": "auto", "background_size": 50, "max_evals": None, "max_rows": 50, "seed": 0},
)


@hookimpl
def treum_explainers() -> list[ExplainerSpec]:
    return [SHAP]
