"""A/B splits: sticky assignment by a stable hash of the user id, and a two-proportion test."""

from __future__ import annotations

import hashlib
import math

from scipy import stats


def assign_arm(experiment_id: str, user_id: str | None, treatment_percent: float) -> str:
    """``control`` or ``treatment``, the same for a user every time; no user id means control."""
    if not user_id:
        return "control"
    digest = hashlib.sha256(f"{experiment_id}:{user_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % 10000 / 100.0
    return "treatment" if bucket < treatment_percent else "control"


def two_proportion_test(hits_a: int, n_a: int, hits_b: int, n_b: int) -> dict[str, float | None]:
    """Pooled two-proportion z-test of equal hit rates; p-value two-sided."""
    if n_a == 0 or n_b == 0:
        return {"z": None, "p_value": None}
    pa, pb = hits_a / n_a, hits_b / n_b
    pooled = (hits_a + hits_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return {"z": None, "p_value": None}
    z = (pb - pa) / se
    return {"z": z, "p_value": float(2 * stats.norm.sf(abs(z)))}
