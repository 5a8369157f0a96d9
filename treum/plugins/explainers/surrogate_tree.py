"""A decision-tree surrogate: a small tree that imitates the model, its rules, and how well it imitates.

A ``DecisionTreeRegressor`` (depth ``max_depth``) is fitted on the model's own predictions over the
earlier background rows. Its fidelity is measured on rows it never saw: the given held-out rows
(``ExplainTarget.labels``, their labels unused) or else the later ``held_out_fraction`` of the
background, in time order. Fidelity is R² and mean absolute error against the model's predictions
and, for a task whose predictions mean a class, the share of held-out rows where the surrogate's
answer means the same class as the model's. A surrogate with low fidelity explains nothing: read
its rules only when the figures are high.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from treum.core.errors import TreumError
from treum.core.explain import PERTURBATION_EXCLUDES, PERTURBATION_REQUIRES, ExplainTarget, row_id
from treum.core.hookspecs import hookimpl
from treum.core.specs import ExplainerSpec


def explain_surrogate(target: ExplainTarget, rows: pd.DataFrame | None, config: dict[str, Any]) -> dict[str, Any]:
    """Fit the surrogate on earlier rows, measure it on held-out rows, return rules, tree and fidelity."""
    from sklearn.tree import DecisionTreeRegressor, export_text

    fit_rows, held_out, where = _split(target, config)
    fit_pred = target.predict_rows(fit_rows)
    held_pred = target.predict_rows(held_out)
    keep_fit = fit_pred[target.output].notna().to_numpy()
    keep_held = held_pred[target.output].notna().to_numpy()
    fit_rows, fit_pred = fit_rows[keep_fit], fit_pred[keep_fit]
    held_out, held_pred = held_out[keep_held], held_pred[keep_held]
    if len(fit_rows) < 2 * config["min_samples_leaf"] or len(held_out) == 0:
        raise TreumError(f"decision_tree: {len(fit_rows)} rows to fit and {len(held_out)} to measure on are too few; "
                         "give more background rows")
    tree = DecisionTreeRegressor(max_depth=config["max_depth"], min_samples_leaf=config["min_samples_leaf"],
                                 random_state=config["seed"])
    tree.fit(target.feature_matrix(fit_rows), fit_pred[target.output].to_numpy(dtype=float))
    model_held = held_pred[target.output].to_numpy(dtype=float)
    surrogate_held = tree.predict(target.feature_matrix(held_out))
    result: dict[str, Any] = {
        "method": f"decision_tree (sklearn DecisionTreeRegressor, max_depth={config['max_depth']}, fitted on the "
                  f"model's predictions)",
        "fidelity": {"held_out": where, "n_fit": len(fit_rows), "n_held_out": len(held_out),
                     **_fidelity(target, held_pred, model_held, surrogate_held)},
        "rules": export_text(tree, feature_names=list(target.features), decimals=4),
        "tree": _node(tree.tree_, 0, target.features),
    }
    if rows is not None and len(rows):
        x = target.feature_matrix(rows)
        model_rows = target.predict_rows(rows)[target.output].to_numpy(dtype=float)
        result["rows"] = [{"row": row_id(rows, i), "prediction": model_rows[i],
                           "surrogate_prediction": float(s)} for i, s in enumerate(tree.predict(x))]
    return result


def _split(target: ExplainTarget, config: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(rows to fit on, rows to measure on, where the latter come from)."""
    background = target.sample_background(config["background_size"], config["seed"])  # in time order
    if target.labels is not None and len(target.labels):
        held = target.labels[np.isfinite(target.labels.reindex(columns=target.features)
                                         .to_numpy(dtype=float)).all(axis=1)]
        overlap = background.index.intersection(held.index)
        if len(overlap):  # a surrogate measured on rows it was fitted on would flatter itself
            background = background.drop(overlap)
        if len(background) >= max(2 * config["min_samples_leaf"], 100):
            return background, held, "given held-out rows"
        # the background lies inside the held-out rows (the newest rows are the test period's): split those
        # rows in time instead, fitting on the earlier part and measuring on the later part
        background, where = _sample(held, config), "the given held-out rows, split in time"
    else:
        where = None
    fraction = config["held_out_fraction"]
    if not 0 < fraction < 1:
        raise TreumError(f"decision_tree: held_out_fraction must be in (0, 1), got {fraction}")
    cut = round(len(background) * (1 - fraction))
    if where is not None:
        return background.iloc[:cut], background.iloc[cut:], f"{where} (the later {fraction:.0%} measured)"
    return background.iloc[:cut], background.iloc[cut:], f"the later {fraction:.0%} of the background rows"


def _sample(rows: pd.DataFrame, config: dict[str, Any]) -> pd.DataFrame:
    """At most ``background_size`` of ``rows``, drawn with the seed, kept in time order."""
    if len(rows) <= config["background_size"]:
        return rows
    picks = np.sort(np.random.default_rng(config["seed"]).choice(len(rows), config["background_size"], replace=False))
    return rows.iloc[picks]


def _fidelity(target: ExplainTarget, held_pred: pd.DataFrame, model: np.ndarray, surrogate: np.ndarray
              ) -> dict[str, Any]:
    """R², mean absolute error and (for a task with classes) label agreement, on held-out rows."""
    residual = ((model - surrogate) ** 2).sum()
    spread = ((model - model.mean()) ** 2).sum()
    r2 = 1.0 - residual / spread if spread > 0 else (1.0 if residual == 0 else float("nan"))
    model_labels = target.decisions(held_pred)
    agreement = None
    if any(label is not None for label in model_labels):
        surrogate_labels = target.decisions(held_pred, values=surrogate)
        agreement = float(np.mean([a == b for a, b in zip(model_labels, surrogate_labels)]))
    return {"r2": float(r2), "mae": float(np.abs(model - surrogate).mean()), "label_agreement": agreement}


def _node(tree: Any, node: int, features: list[str]) -> dict[str, Any]:
    """The sklearn tree from ``node`` down as nested JSON: splits send ``<= threshold`` left."""
    out = {"samples": int(tree.n_node_samples[node]), "value": float(tree.value[node].ravel()[0])}
    left, right = tree.children_left[node], tree.children_right[node]
    if left == right:  # a leaf: sklearn marks both children -1
        return out
    return {"feature": features[tree.feature[node]], "threshold": float(tree.threshold[node]), **out,
            "left": _node(tree, left, features), "right": _node(tree, right, features)}


DECISION_TREE = ExplainerSpec(
    name="decision_tree",
    description="a shallow decision-tree surrogate of the model: its rules, and its fidelity on held-out rows",
    explain=explain_surrogate,
    requires=PERTURBATION_REQUIRES,
    excludes=PERTURBATION_EXCLUDES,
    scope="global",
    defaults={"max_depth": 3, "min_samples_leaf": 20, "held_out_fraction": 0.3, "background_size": 5000,
              "max_rows": 1000, "seed": 0},
)


@hookimpl
def treum_explainers() -> list[ExplainerSpec]:
    return [DECISION_TREE]
