"""Early stopping on a validation score, shared by the torch models: keep the best weights, stop when stale."""

from __future__ import annotations

from typing import Any

import numpy as np


class EarlyStopping:
    """``step(score, net)`` after each validation check: True when ``patience`` checks in a row brought no
    improvement of more than ``min_delta``; ``restore(net)`` loads the best weights seen (a non-finite
    score never counts as an improvement)."""

    def __init__(self, patience: int, higher_is_better: bool = False, min_delta: float = 0.0):
        self.patience, self.higher, self.min_delta = patience, higher_is_better, min_delta
        self.best = -np.inf if higher_is_better else np.inf
        self.stale = 0
        self.state: dict[str, Any] | None = None

    def step(self, score: float, net: Any) -> bool:
        better = np.isfinite(score) and (score > self.best + self.min_delta if self.higher
                                         else score < self.best - self.min_delta)
        if better:
            self.best, self.stale = float(score), 0
            self.state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            self.stale += 1
        return self.stale >= self.patience

    def restore(self, net: Any) -> None:
        if self.state is not None:
            net.load_state_dict(self.state)

    @property
    def best_or_none(self) -> float | None:
        return float(self.best) if np.isfinite(self.best) else None
