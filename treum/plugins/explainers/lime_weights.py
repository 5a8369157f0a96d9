"""LIME: a weighted linear model fitted around one row, whose weights say what moved its prediction.

``lime.lime_tabular.LimeTabularExplainer`` in regression mode on the output column: it samples
rows around the explained one (from the background's feature distribution), predicts them, and
fits a ridge model weighted by closeness. With ``discretize`` (the default) each local feature is
a condition on one feature's quartile ("f_ret_5 > 1.47") and its weight is how much the output
changes when the condition holds; ``score`` is the local model's weighted R² and ``intercept``
its constant, so they say how far to trust the weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from treum.core.explain import PERTURBATION_EXCLUDES, PERTURBATION_REQUIRES, ExplainTarget, row_id
from treum.core.hookspecs import hookimpl
from treum.core.specs import ExplainerSpec


def explain_lime(target: ExplainTarget, rows: pd.DataFrame, config: dict[str, Any]) -> dict[str, Any]:
    """LIME weights, intercept and local score for each of ``rows``."""
    from lime.lime_tabular import LimeTabularExplainer

    background = target.feature_matrix(target.sample_background(config["background_size"], config["seed"]))
    x = target.feature_matrix(rows)
    predictions = target.predict_matrix(x, template=rows)
    out = []
    for i in range(len(rows)):
        # a fresh explainer per row, seeded alike: a row's weights do not depend on the rows before it
        explainer = LimeTabularExplainer(
            background, mode="regression", feature_names=list(target.features),
            discretize_continuous=config["discretize"], random_state=np.random.RandomState(config["seed"]),
        )
        exp = explainer.explain_instance(
            x[i], lambda m, i=i: target.predict_matrix(m, template=rows.iloc[[i]]),
            num_features=min(config["num_features"], len(target.features)), num_samples=config["num_samples"],
        )
        # as_map and as_list hold the same local features in the same order: index and condition text
        weights = [{"feature": target.features[j], "condition": condition, "weight": weight}
                   for (j, weight), (condition, _) in zip(exp.as_map()[1], exp.as_list(label=1))]
        out.append({
            "row": row_id(rows, i),
            "prediction": predictions[i],
            "local_prediction": float(np.ravel(exp.local_pred)[0]),
            "intercept": float(exp.intercept[1]),
            "score": float(exp.score),
            "weights": weights,
        })
    method = (f"lime (LimeTabularExplainer, regression on {target.output}, {config['num_samples']} samples, "
              f"{'quartile conditions' if config['discretize'] else 'standardised features'})")
    return {"method": method, "rows": out}


LIME = ExplainerSpec(
    name="lime",
    description="LIME: a local weighted linear model around each row, its weights, intercept and fit",
    explain=explain_lime,
    requires=PERTURBATION_REQUIRES,
    excludes=PERTURBATION_EXCLUDES,
    scope="local",
    report_rows=1,
    defaults={"num_features": 10, "num_samples": 2000, "discretize": True, "background_size": 1000,
              "max_rows": 20, "seed": 0},
)


@hookimpl
def treum_explainers() -> list[ExplainerSpec]:
    return [LIME]
