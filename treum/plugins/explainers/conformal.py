"""Split conformal prediction: intervals or class sets that hold the truth in 1 - alpha of cases, measured.

The labelled held-out rows (``ExplainTarget.labels``, label column ``target_column``) are put in
time order and split: the earlier ``calibration_fraction`` calibrates, the rest measures. With n
calibration scores, ``qhat`` is their empirical quantile at level ceil((n + 1)(1 - alpha)) / n
(the higher order statistic), which gives coverage of at least 1 - alpha when rows are
exchangeable. Market rows are not quite (regimes change), so the coverage measured on the later
rows is reported beside the target: the gap is the honest figure.

- ``kind="probability"`` (a 0/1 label, the output the probability of 1): the LAC score
  1 - p(true class); a row's set holds each class c with 1 - p(c) <= qhat (it may hold both, or none).
- ``kind="value"``: the absolute residual |y - prediction|; the interval is prediction ± qhat.

It needs no feature columns and never perturbs a row, so it applies to every model; a sequential
model's held-out rows must carry the history it reads (rows it leaves unpredicted are skipped).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from treum.core.errors import TreumError
from treum.core.explain import HELD_OUT_PREDICTION, ExplainTarget, chronological, row_id
from treum.core.hookspecs import hookimpl
from treum.core.specs import ExplainerSpec


def conformal_quantile(scores: np.ndarray, alpha: float) -> tuple[float, float]:
    """(qhat, level): the split-conformal quantile of calibration ``scores``; qhat is inf when n is too small."""
    n = len(scores)
    k = math.ceil((n + 1) * (1 - alpha))  # the k-th smallest score (Vovk; Angelopoulos and Bates, 2021)
    level = k / n
    if k > n:  # too few calibration rows for this alpha: only the whole range covers
        return float("inf"), level
    return float(np.sort(np.asarray(scores, dtype=float))[k - 1]), level


def explain_conformal(target: ExplainTarget, rows: pd.DataFrame | None, config: dict[str, Any]) -> dict[str, Any]:
    """Calibrate on the earlier held-out rows, measure coverage on the later ones, answer for ``rows``."""
    alpha, fraction = config["alpha"], config["calibration_fraction"]
    if not 0 < alpha < 1 or not 0 < fraction < 1:
        raise TreumError(f"conformal: alpha and calibration_fraction must be in (0, 1), got {alpha}, {fraction}")
    if target.labels is None or len(target.labels) == 0 or target.target_column is None:
        raise TreumError(f"conformal needs labelled held-out rows and their label column: build the ExplainTarget of "
                         f"model '{target.name}' with labels=<rows the model did not fit on> and target_column=...")
    held = chronological(target.labels)
    y = held[target.target_column].to_numpy(dtype=float)
    if HELD_OUT_PREDICTION in held.columns:
        # the predictions no fit saw these rows for (the walk-forward's): a version refit on them would be
        # scored in sample, and its coverage would flatter it
        predictions = pd.DataFrame({target.output: held[HELD_OUT_PREDICTION].to_numpy(dtype=float)}, index=held.index)
        source = "the walk-forward's out-of-sample predictions"
    else:
        predictions = target.predict_rows(held)
        source = "the model's predictions"
    p = predictions[target.output].to_numpy(dtype=float)
    keep = np.isfinite(y) & np.isfinite(p)
    y, p = y[keep], p[keep]
    n_cal = int(len(y) * fraction)
    if n_cal < 2 or len(y) - n_cal < 1:
        raise TreumError(f"conformal: {len(y)} held-out rows with a label and a prediction are too few to calibrate "
                         "and measure on")
    probability = target.kind == "probability"
    if probability and not np.isin(y, (0.0, 1.0)).all():
        raise TreumError(f"conformal: kind 'probability' needs a 0/1 label, but '{target.target_column}' holds "
                         f"{sorted(set(np.unique(y)) - {0.0, 1.0})[:3]}...; use kind 'value'")
    score = _lac_score if probability else _residual_score
    qhat, level = conformal_quantile(score(y[:n_cal], p[:n_cal]), alpha)
    covered = score(y[n_cal:], p[n_cal:]) <= qhat
    result: dict[str, Any] = {
        "method": "split conformal ("
                  + ("LAC score 1 - p(true class), prediction sets" if probability else "absolute residual, intervals")
                  + "; calibration rows before evaluation rows)",
        "kind": target.kind,
        "predictions": source,
        "alpha": alpha,
        "target_coverage": 1 - alpha,
        "coverage": float(covered.mean()),
        "qhat": qhat,
        "quantile_level": level,
        "n_calibration": n_cal,
        "n_evaluation": len(y) - n_cal,
    }
    if probability:
        sizes = (1 - p[n_cal:] <= qhat).astype(int) + (p[n_cal:] <= qhat).astype(int)
        result["mean_set_size"] = float(sizes.mean())
        result["share_empty_sets"] = float((sizes == 0).mean())
        result["classes"] = _class_names(target, predictions.iloc[[0]])
    else:
        result["mean_interval_width"] = 2 * qhat
    if rows is not None and len(rows):
        result["rows"] = _answers(target, rows, qhat, predictions.iloc[[0]] if probability else None)
    return result


def _lac_score(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return 1.0 - np.where(y == 1.0, p, 1.0 - p)


def _residual_score(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.abs(y - p)


def _class_names(target: ExplainTarget, sample: pd.DataFrame) -> dict[str, str]:
    """What classes 1 and 0 are called: the task's label of an output of 1.0 and 0.0 (in a prediction
    row ``sample`` for the other columns), if it gives one."""
    names = {"1": "1", "0": "0"}
    for value in (1.0, 0.0):
        try:
            label = target.decisions(sample, values=[value])[0]
        except (KeyError, ValueError, TypeError):  # a task whose label reads columns it cannot get here
            label = None
        if label is not None:
            names[str(int(value))] = label
    return names


def _answers(target: ExplainTarget, rows: pd.DataFrame, qhat: float, sample: pd.DataFrame | None
             ) -> list[dict[str, Any]]:
    """Each row's prediction set (``sample``: a prediction row naming the classes) or interval."""
    p = target.predict_rows(rows)[target.output].to_numpy(dtype=float)
    probability = sample is not None
    names = _class_names(target, sample) if probability else {}
    out = []
    for i, value in enumerate(p):
        answer: dict[str, Any] = {"row": row_id(rows, i), "prediction": value}
        if probability:
            answer["set"] = [names[c] for c, pc in (("1", value), ("0", 1 - value)) if 1 - pc <= qhat]
        else:
            answer["interval"] = [value - qhat, value + qhat]
        out.append(answer)
    return out


CONFORMAL = ExplainerSpec(
    name="conformal",
    description="split conformal intervals (values) or prediction sets (class probabilities), with the coverage "
    "measured on later held-out rows",
    explain=explain_conformal,
    scope="global",
    defaults={"alpha": 0.1, "calibration_fraction": 0.5, "max_rows": 1000},
)


@hookimpl
def treum_explainers() -> list[ExplainerSpec]:
    return [CONFORMAL]
