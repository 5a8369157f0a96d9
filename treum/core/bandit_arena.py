"""The bandit arena: contextual-bandit policies recommend one signal per visit to SIMULATED users.

Built on the world of ``treum.core.user_sim`` (the same users, signals, tastes and edges as the
``users_sim`` data set). Each round a user opens the app (chosen in proportion to their
attention), the policy sees one context vector per signal offered to them and recommends one; the
reward is 1 when the user follows it and the trade pays. The simulator knows each arm's expected
reward, so the arena measures **pseudo-regret**: the best arm's expected reward less the chosen
arm's, summed over rounds. A policy is anything with ``choose(contexts, rng) -> index`` and
``update(arm, context, reward)``; ``treum.zoo.bandits`` has LinUCB, Thompson sampling,
epsilon-greedy and random.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from treum.core.user_sim import (
    AGE_BANDS,
    EXPERIENCE,
    HORIZON_BARS,
    REGIONS,
    RISK_TOLERANCE,
    SIGNAL_HOLDING,
    SIGNAL_RISK,
    SIGNALS,
    UserSimConfig,
    make_world,
)

# the context a policy sees for one (user, signal) pair, named as the personal feature set names them
CONTEXT_FEATURES = ("bias", "f_user_risk", "f_user_experience", "f_user_age", "f_user_log_account",
                    "f_user_log_horizon", *(f"f_region_{r}" for r in REGIONS), "f_confidence", "f_risk_gap",
                    "f_horizon_gap")


class Policy(Protocol):
    def choose(self, contexts: np.ndarray, arms: np.ndarray, rng: np.random.Generator) -> int: ...

    def update(self, arm: int, context: np.ndarray, reward: float) -> None: ...


@dataclass
class ArenaConfig:
    rounds: int = 20_000
    visits_per_day: int = 40  # rounds before the signals' edges move on a day
    seeds: int = 5  # independent worlds; the table shows the mean and its standard error
    n_users: int = 200

    def validate(self) -> str | None:
        if self.rounds < 100 or self.visits_per_day < 1 or self.seeds < 1 or self.n_users < 10:
            return "rounds >= 100, visits_per_day >= 1, seeds >= 1 and n_users >= 10 are needed"
        return None


class Arena:
    """One seeded world, stepped visit by visit."""

    def __init__(self, seed: int, n_users: int = 200, days: int = 1000):
        rng = np.random.default_rng(seed)
        self.world = make_world(UserSimConfig(n_users=n_users, n_days=days, seed=seed), rng)
        users = self.world.users
        def ordinal(column: str, levels: tuple[str, ...]) -> np.ndarray:
            return users[column].map({v: float(i) for i, v in enumerate(levels)}).to_numpy(float)

        risk = ordinal("risk_tolerance", RISK_TOLERANCE)
        hold = np.log(users["horizon"].map(HORIZON_BARS).to_numpy(float))
        # the same columns, units and gaps as the personal feature set's (f_user_*, f_region_*, f_*_gap)
        self.profile = np.column_stack([
            np.ones(len(users)), risk, ordinal("experience", EXPERIENCE), ordinal("age_band", AGE_BANDS),
            np.log(users["account_usd"].to_numpy(float).clip(1.0)), hold,
            *((users["region"] == r).to_numpy(float) for r in REGIONS),
        ])
        self.risk_level, self.log_holding = SIGNAL_RISK, np.log(SIGNAL_HOLDING)
        self.weights = self.world.attention / self.world.attention.sum()

    def contexts(self, user: int, day: int) -> np.ndarray:
        """signals x CONTEXT_FEATURES for one user on one day."""
        p = self.profile[user]
        n = len(SIGNALS)
        return np.column_stack([
            np.repeat(p[None, :], n, axis=0), self.world.confidence[day],
            self.risk_level - 1.5 * p[1], np.abs(self.log_holding - p[5]),
        ])

    def expected(self, user: int, day: int) -> np.ndarray:
        """Per signal: P(follow) x P(the trade pays), the reward a recommendation earns in expectation."""
        u = np.array([user])
        return (self.world.p_follow(u, day) * self.world.p_win(u, day))[0]


def run_policy(make: Callable[[], Policy], cfg: ArenaConfig, seed: int) -> dict[str, Any]:
    """Cumulative pseudo-regret and reward of one policy over ``cfg.rounds`` visits of the world ``seed``."""
    arena = Arena(seed, cfg.n_users, days=cfg.rounds // cfg.visits_per_day + 1)
    rng = np.random.default_rng(seed + 10_007)  # the visits and rewards: the same for every policy of a seed
    play = np.random.default_rng(seed + 20_011)  # the policy's own coin flips
    visitors = rng.choice(len(arena.weights), size=cfg.rounds, p=arena.weights)
    draws = rng.random(cfg.rounds)
    policy = make()
    regret = np.empty(cfg.rounds)
    reward = np.empty(cfg.rounds)
    for i in range(cfg.rounds):
        user, day = int(visitors[i]), i // cfg.visits_per_day
        arms = np.flatnonzero(arena.world.offered[user])
        ctx = arena.contexts(user, day)[arms]
        mean = arena.expected(user, day)[arms]
        pick = int(policy.choose(ctx, arms, play))
        r = float(draws[i] < mean[pick])
        policy.update(int(arms[pick]), ctx[pick], r)
        regret[i] = mean.max() - mean[pick]
        reward[i] = r
    return {"cumulative_regret": float(regret.sum()), "reward_rate": float(reward.mean()),
            "regret_curve": np.cumsum(regret)[:: max(cfg.rounds // 50, 1)].round(3).tolist()}


def regret_table(policies: Mapping[str, Callable[[], Policy]], cfg: ArenaConfig) -> list[dict[str, Any]]:
    """Every policy on the same ``cfg.seeds`` worlds and visits: mean cumulative regret, its standard error, reward."""
    rows = []
    for name, make in policies.items():
        runs = [run_policy(make, cfg, seed) for seed in range(cfg.seeds)]
        regrets = np.array([r["cumulative_regret"] for r in runs])
        rows.append({"policy": name, "rounds": cfg.rounds, "seeds": cfg.seeds,
                     "cumulative_regret": float(regrets.mean()),
                     "regret_se": float(regrets.std(ddof=1) / np.sqrt(len(regrets))) if len(regrets) > 1 else float("nan"),
                     "reward_rate": float(np.mean([r["reward_rate"] for r in runs])),
                     "regret_curve": runs[0]["regret_curve"]})
    return sorted(rows, key=lambda r: r["cumulative_regret"])
