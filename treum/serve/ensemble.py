"""Combining ensemble members: the weighted mean of each prediction column over the members that answered."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from treum.serve.bars import RequestError

MEMBER_STATUSES = ("ok", "failed", "timeout", "not deployed")


@dataclass
class MemberAnswer:
    name: str
    version: str | None
    status: str  # one of MEMBER_STATUSES
    values: dict[str, float] | None = None
    latency_ms: float = 0.0
    error: str | None = None
    arm: str | None = None
    model_id: str | None = None
    cached: bool = False
    task: Any = None  # the member's Task, when it answered
    input_error: bool = False  # it failed on the request's input (its 4xx), not on its own

    def as_dict(self, columns: Sequence[str]) -> dict[str, Any]:
        """The member as an answer shows it, its value of each column at the top level (None if it did not answer)."""
        values = self.values or {}
        return {"name": self.name, "version": self.version, "status": self.status,
                **{c: values.get(c) for c in columns}, "latency_ms": self.latency_ms, "cached": self.cached,
                "arm": self.arm, "error": self.error}


@dataclass
class Combined:
    values: dict[str, float]
    used: dict[str, float]  # member -> weight, re-normalised over those that answered
    answered: list[MemberAnswer]
    dropped: list[str]


def combine(answers: Sequence[MemberAnswer], weights: Mapping[str, float], columns: Sequence[str],
            min_members: int) -> Combined:
    """The weighted mean of each column over the members that answered and have a positive weight.

    Fewer than ``min_members`` such members is the request's 503, naming the dropped ones; a 422
    when every member that failed failed on the request's input (bars they cannot answer for).
    """
    ok = [a for a in answers if a.status == "ok" and weights.get(a.name, 0) > 0]
    dropped = [f"{a.name}: {a.status} ({a.error})" for a in answers if a.status != "ok"]
    if len(ok) < min_members:
        failed = [a for a in answers if a.status != "ok"]
        raise RequestError(
            422 if failed and all(a.input_error for a in failed) else 503,
            f"only {len(ok)} ensemble member(s) answered, {min_members} needed; dropped: "
            + ("; ".join(dropped) or "none"),
        )
    total = sum(weights[a.name] for a in ok)
    used = {a.name: weights[a.name] / total for a in ok}
    values = {c: float(sum(used[a.name] * a.values[c] for a in ok)) for c in columns}
    return Combined(values, used, ok, dropped)
