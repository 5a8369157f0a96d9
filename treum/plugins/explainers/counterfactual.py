"""Counterfactuals: the smallest change of a row's mutable features that changes what its prediction means.

"What means" is the task's class of the prediction (``task.label``: up/down, bull/bear), or the
side of ``threshold`` on the output when the config gives one (tasks without classes need it).
Distance is the scaled L1 norm: the sum over changed features of |change| / that feature's
standard deviation in the background. Features named ``immutable`` (config or target) never
change, nor do features constant in the background (no scale to measure a change by).

The search is bounded and deterministic: every mutable feature alone over a grid of the
background's quantiles; then every pair of the ``pair_candidates`` features that moved the
prediction most, over the grid of both. Each change that flips the class is refined by bisection
towards the row, so the counterfactual sits just past the boundary rather than on a grid point.
Cost per row: about ``grid * features + C(pair_candidates, 2) * grid**2`` predictions in
``2 + refine_steps`` batches.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from treum.core.errors import TreumError
from treum.core.explain import PERTURBATION_EXCLUDES, PERTURBATION_REQUIRES, ExplainTarget, row_id
from treum.core.hookspecs import hookimpl
from treum.core.specs import ExplainerSpec


def explain_counterfactual(target: ExplainTarget, rows: pd.DataFrame, config: dict[str, Any]) -> dict[str, Any]:
    """For each row: the original and counterfactual prediction and class, the changes and their distance."""
    immutable = sorted(set(target.immutable) | set(target.known_features(config["immutable"], "immutable")))
    if config["grid"] < 2:
        raise TreumError(f"counterfactual: grid must be at least 2 quantiles, got {config['grid']}")
    background = target.feature_matrix(target.sample_background(config["background_size"], config["seed"]))
    scale = background.std(axis=0)
    mutable = [j for j, f in enumerate(target.features) if f not in immutable and scale[j] > 0]
    grid = np.quantile(background, np.linspace(0.0, 1.0, config["grid"]), axis=0)  # (grid, features)
    search = _Search(target, config["threshold"], scale, grid, config["refine_steps"], config["pair_candidates"])
    x = target.feature_matrix(rows)
    out = [search.row(x[i], rows.iloc[[i]], row_id(rows, i), mutable, immutable) for i in range(len(rows))]
    how = f"threshold {config['threshold']} on {target.output}" if config["threshold"] is not None else "task label"
    method = (f"counterfactual (grid of {config['grid']} background quantiles, single features then pairs of the "
              f"{config['pair_candidates']} most promising, bisection refinement; class by {how}; "
              "distance = sum |change| / background std)")
    return {"method": method, "immutable": immutable, "rows": out}


class _Search:
    """The search for one explanation's rows (shared grid, scales and class rule)."""

    def __init__(self, target: ExplainTarget, threshold: float | None, scale: np.ndarray, grid: np.ndarray,
                 refine_steps: int, pair_candidates: int):
        self.target, self.threshold, self.scale, self.grid = target, threshold, scale, grid
        self.refine_steps, self.pair_candidates = refine_steps, pair_candidates

    def classes(self, x: np.ndarray, template: pd.DataFrame) -> tuple[np.ndarray, list[str | None]]:
        frame = self.target.predict_frame(x, template)
        return frame[self.target.output].to_numpy(dtype=float), self.target.decisions(frame, threshold=self.threshold)

    def row(self, x: np.ndarray, template: pd.DataFrame, rid: dict, mutable: list[int], immutable: list[str]
            ) -> dict[str, Any]:
        (p0,), (label0,) = self.classes(x[None, :], template)
        if label0 is None:
            raise TreumError(f"task '{self.target.task.name}' gives '{self.target.output}' no class; set the "
                             "counterfactual config 'threshold' on it")
        original = {"prediction": p0, "label": label0}
        if not mutable:
            return {"row": rid, "found": False, "original": original,
                    "why": f"no feature may change: immutable {immutable}, the rest constant in the background"}
        candidates, moved = self._singles(x, template, mutable, label0, p0)
        top = [j for j in sorted(mutable, key=lambda j: -moved[j])[:self.pair_candidates] if moved[j] > 0]
        candidates += self._pairs(x, template, top, label0)
        if not candidates:
            names = [self.target.features[j] for j in mutable]
            why = (f"no change of one feature, or of two among the most influential, within the background's range "
                   f"changes the label '{label0}' (mutable: {', '.join(names)})")
            if immutable:
                why += f"; immutable, never changed: {', '.join(immutable)}"
            return {"row": rid, "found": False, "original": original, "why": why}
        distance, point, prediction, label = self._refine(x, template, np.array(candidates), label0)
        changed = np.flatnonzero(point != x)
        return {"row": rid, "found": True, "original": original,
                "counterfactual": {"prediction": prediction, "label": label},
                "changes": {self.target.features[j]: [x[j], point[j]] for j in changed}, "distance": distance}

    def _distance(self, x: np.ndarray, point: np.ndarray) -> float:
        return float((np.abs(point - x) / self.scale).sum())

    def _singles(self, x: np.ndarray, template: pd.DataFrame, mutable: list[int], label0: str, p0: float
                 ) -> tuple[list[np.ndarray], dict[int, float]]:
        """The closest flipping grid point of each feature alone, and how far each feature moved the output."""
        points = []
        for j in mutable:
            for value in np.unique(self.grid[:, j]):
                if value != x[j]:
                    point = x.copy()
                    point[j] = value
                    points.append((j, point))
        if not points:
            return [], {j: 0.0 for j in mutable}
        values, labels = self.classes(np.array([p for _, p in points]), template)
        moved = {j: 0.0 for j in mutable}
        closest: dict[int, np.ndarray] = {}
        for (j, point), value, label in zip(points, values, labels):
            moved[j] = max(moved[j], abs(value - p0))
            if label != label0 and (j not in closest or self._distance(x, point) < self._distance(x, closest[j])):
                closest[j] = point
        return list(closest.values()), moved

    def _pairs(self, x: np.ndarray, template: pd.DataFrame, top: list[int], label0: str) -> list[np.ndarray]:
        """The closest flipping grid point of each pair of the most influential features."""
        points = []
        for a, b in combinations(top, 2):
            for va in np.unique(self.grid[:, a]):
                for vb in np.unique(self.grid[:, b]):
                    if va != x[a] and vb != x[b]:
                        point = x.copy()
                        point[[a, b]] = va, vb
                        points.append(((a, b), point))
        if not points:
            return []
        _, labels = self.classes(np.array([p for _, p in points]), template)
        closest: dict[tuple[int, int], np.ndarray] = {}
        for (pair, point), label in zip(points, labels):
            if label != label0 and (pair not in closest or self._distance(x, point) < self._distance(x, closest[pair])):
                closest[pair] = point
        return list(closest.values())

    def _refine(self, x: np.ndarray, template: pd.DataFrame, points: np.ndarray, label0: str
                ) -> tuple[float, np.ndarray, float, str | None]:
        """Bisect each segment from the row (its class) to a flipping point, all in one batch per step;
        keep each segment's flipped end and return the closest: (distance, point, prediction, label)."""
        low, high = np.zeros(len(points)), np.ones(len(points))
        for _ in range(self.refine_steps):
            mid = (low + high) / 2
            _, labels = self.classes(x + mid[:, None] * (points - x), template)
            flipped = np.array([label != label0 for label in labels])
            high = np.where(flipped, mid, high)
            low = np.where(flipped, low, mid)
        ends = x + high[:, None] * (points - x)
        predictions, labels = self.classes(ends, template)
        distances = [self._distance(x, end) if label != label0 else np.inf for end, label in zip(ends, labels)]
        k = int(np.argmin(distances))
        return distances[k], ends[k], predictions[k], labels[k]


COUNTERFACTUAL = ExplainerSpec(
    name="counterfactual",
    description="the smallest change of a row's mutable features (scaled L1) that changes its predicted class",
    explain=explain_counterfactual,
    requires=PERTURBATION_REQUIRES,
    excludes=PERTURBATION_EXCLUDES,
    scope="local",
    defaults={"immutable": [], "threshold": None, "grid": 21, "pair_candidates": 4, "refine_steps": 20,
              "background_size": 5000, "max_rows": 20, "seed": 0},
)


@hookimpl
def treum_explainers() -> list[ExplainerSpec]:
    return [COUNTERFACTUAL]
