"""Contextual bandits for recommending signals: LinUCB and linear Thompson sampling (disjoint arms).

Each arm (a signal) keeps a ridge regression of the reward (followed and paid) on the user's
context, updated one observation at a time with Sherman-Morrison. LinUCB recommends the arm
with the highest upper confidence bound (Li et al., 2010, algorithm 1); Thompson sampling draws
each arm's coefficients from their Gaussian posterior and recommends the best draw (Agrawal and
Goyal, 2013). Epsilon-greedy and a random policy are the baselines of ``treum bandits``, which
measures every policy's cumulative pseudo-regret in the simulator (``treum.core.bandit_arena``).

As models of the ``recommendation`` task the two bandits are fitted on the training rows' feedback
(every row a user saw, in time order) and answer each row with the score they would recommend by:
LinUCB its upper bound, Thompson sampling one posterior draw per arm (seeded), clipped to [0, 1].
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from treum.core.bandit_arena import CONTEXT_FEATURES, ArenaConfig, regret_table
from treum.core.config import build_config
from treum.core.errors import TreumError
from treum.core.hookspecs import hookimpl
from treum.core.model import Model
from treum.core.queries import split_entity
from treum.core.specs import CommandSpec, ModelSpec
from treum.core.user_sim import SIGNALS


class LinearArms:
    """Per arm: A = lambda I + sum x x', b = sum r x, and A's inverse kept up to date."""

    def __init__(self, n_arms: int, dim: int, ridge: float = 1.0):
        self.a_inv = np.repeat(np.eye(dim)[None] / ridge, n_arms, axis=0)
        self.b = np.zeros((n_arms, dim))

    def theta(self, arm: int | np.ndarray) -> np.ndarray:
        return np.einsum("...ij,...j->...i", self.a_inv[arm], self.b[arm])

    def update(self, arm: int, x: np.ndarray, reward: float) -> None:
        ax = self.a_inv[arm] @ x
        self.a_inv[arm] -= np.outer(ax, ax) / (1.0 + x @ ax)
        self.b[arm] += reward * x

    def widths(self, arms: np.ndarray, x: np.ndarray) -> np.ndarray:
        """sqrt(x' A^-1 x) per (arm, context row)."""
        return np.sqrt(np.einsum("ni,nij,nj->n", x, self.a_inv[arms], x).clip(0))


class LinUCBPolicy:
    def __init__(self, n_arms: int, dim: int, alpha: float = 0.5, ridge: float = 1.0):
        self.arms, self.alpha = LinearArms(n_arms, dim, ridge), alpha

    def scores(self, contexts: np.ndarray, arms: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        mean = np.einsum("ni,ni->n", self.arms.theta(arms), contexts)
        return mean + self.alpha * self.arms.widths(arms, contexts)

    def choose(self, contexts, arms, rng):
        return int(np.argmax(self.scores(contexts, arms)))

    def update(self, arm, context, reward):
        self.arms.update(arm, context, reward)


class ThompsonPolicy:
    def __init__(self, n_arms: int, dim: int, scale: float = 0.25, ridge: float = 1.0):
        self.arms, self.scale = LinearArms(n_arms, dim, ridge), scale

    def scores(self, contexts: np.ndarray, arms: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = np.empty(len(arms))
        for i, arm in enumerate(arms):
            draw = rng.multivariate_normal(self.arms.theta(int(arm)), self.scale**2 * self.arms.a_inv[arm],
                                           method="cholesky")
            out[i] = draw @ contexts[i]
        return out

    def choose(self, contexts, arms, rng):
        return int(np.argmax(self.scores(contexts, arms, rng)))

    def update(self, arm, context, reward):
        self.arms.update(arm, context, reward)


class EpsilonGreedyPolicy:
    def __init__(self, n_arms: int, dim: int, epsilon: float = 0.1, ridge: float = 1.0):
        self.arms, self.epsilon = LinearArms(n_arms, dim, ridge), epsilon

    def choose(self, contexts, arms, rng):
        if rng.random() < self.epsilon:
            return int(rng.integers(len(arms)))
        return int(np.argmax(np.einsum("ni,ni->n", self.arms.theta(arms), contexts)))

    def update(self, arm, context, reward):
        self.arms.update(arm, context, reward)


class RandomPolicy:
    def __init__(self, n_arms: int, dim: int):
        pass

    def choose(self, contexts, arms, rng):
        return int(rng.integers(len(arms)))

    def update(self, arm, context, reward):
        pass


# models of the recommendation task ---------------------------------------------------------------
@dataclass
class LinUCBConfig:
    alpha: float = 0.5  # width of the confidence bound added to the mean
    ridge: float = 1.0

    def validate(self) -> str | None:
        return None if self.alpha >= 0 and self.ridge > 0 else f"alpha >= 0 and ridge > 0 needed, got {self}"


@dataclass
class ThompsonConfig:
    scale: float = 0.25  # posterior scale: the reward noise's standard deviation
    ridge: float = 1.0
    seed: int = 0

    def validate(self) -> str | None:
        return None if self.scale > 0 and self.ridge > 0 else f"scale > 0 and ridge > 0 needed, got {self}"


class BanditModel(Model):
    """A bandit policy fitted on logged feedback: one ridge per signal over the context features."""

    def _policy(self, n_arms: int, dim: int) -> Any:
        raise NotImplementedError

    def _context(self, data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        missing = [c for c in CONTEXT_FEATURES[1:] if c not in data.columns]
        if missing:
            raise TreumError(f"{self.spec.name} reads the context {missing} of the personal feature set; "
                             "run with features=personal")
        x = data[list(CONTEXT_FEATURES[1:])].to_numpy(float)
        return np.column_stack([np.ones(len(x)), x]), np.isfinite(x).all(axis=1)

    def fit(self, data, valid=None):
        rows = self.join_valid(data, valid).sort_index()
        x, ok = self._context(rows)
        _, item = split_entity(rows.index)
        y = rows["target"].to_numpy(float)
        ok &= np.isfinite(y)
        self.arm_names_ = sorted(set(map(str, item)))
        self.policy_ = self._policy(len(self.arm_names_), x.shape[1])
        arm = np.array([self.arm_names_.index(str(i)) for i in item])
        for a in range(len(self.arm_names_)):  # batch ridge per arm: the same as the updates one by one
            m = ok & (arm == a)
            xa = x[m]
            gram = np.eye(x.shape[1]) * self.config.ridge + xa.T @ xa
            self.policy_.arms.a_inv[a] = np.linalg.inv(gram)
            self.policy_.arms.b[a] = xa.T @ y[m]

    def predict(self, data):
        x, ok = self._context(data)
        _, item = split_entity(data.index)
        arm = np.array([self.arm_names_.index(str(i)) if str(i) in self.arm_names_ else -1 for i in item])
        ok &= arm >= 0
        out = np.full(len(data), np.nan)
        if ok.any():
            out[ok] = np.clip(self._scores(x[ok], arm[ok]), 0.0, 1.0)
        return pd.DataFrame({"p_hit": out}, index=data.index)

    def _scores(self, x: np.ndarray, arm: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def save_weights(self, directory):
        state = {"arms": self.arm_names_, "a_inv": self.policy_.arms.a_inv.tolist(), "b": self.policy_.arms.b.tolist()}
        (directory / "arms.json").write_text(json.dumps(state))

    def load_weights(self, directory):
        state = json.loads((directory / "arms.json").read_text())
        self.arm_names_ = list(state["arms"])
        a_inv = np.asarray(state["a_inv"], dtype=float)
        self.policy_ = self._policy(len(self.arm_names_), a_inv.shape[1])
        self.policy_.arms.a_inv, self.policy_.arms.b = a_inv, np.asarray(state["b"], dtype=float)


class LinUCB(BanditModel):
    def _policy(self, n_arms, dim):
        return LinUCBPolicy(n_arms, dim, self.config.alpha, self.config.ridge)

    def _scores(self, x, arm):
        return self.policy_.scores(x, arm)


class ThompsonBandit(BanditModel):
    def _policy(self, n_arms, dim):
        return ThompsonPolicy(n_arms, dim, self.config.scale, self.config.ridge)

    def _scores(self, x, arm):
        # one posterior draw per arm for the whole call, seeded: the same rows give the same answers
        rng = np.random.default_rng(self.config.seed)
        draws = np.stack([rng.multivariate_normal(self.policy_.arms.theta(a), self.config.scale**2
                                                  * self.policy_.arms.a_inv[a], method="cholesky")
                          for a in range(len(self.arm_names_))])
        return np.einsum("ni,ni->n", draws[arm], x)


def _spec(name: str, cls: type, config_cls: type, description: str) -> ModelSpec:
    cls.spec = ModelSpec(name=name, family="contextual_bandit", task="recommendation",
                         capabilities=frozenset({"multi_asset", "uses_features"}),
                         config_cls=config_cls, factory=cls, description=description)
    return cls.spec


SPECS = [
    _spec("linucb", LinUCB, LinUCBConfig, "LinUCB with one ridge per signal on the user's context (SIMULATED users)"),
    _spec("thompson_bandit", ThompsonBandit, ThompsonConfig,
          "linear Thompson sampling with one Gaussian posterior per signal (SIMULATED users)"),
]


# treum bandits: the regret table ------------------------------------------------------------------
def policies(alpha: float = 0.5, scale: float = 0.25, epsilon: float = 0.1) -> dict[str, Any]:
    """The arena's contestants: the two bandits, epsilon-greedy and random, on the same context."""
    n, d = len(SIGNALS), len(CONTEXT_FEATURES)
    return {
        "linucb": lambda: LinUCBPolicy(n, d, alpha),
        "thompson_bandit": lambda: ThompsonPolicy(n, d, scale),
        f"epsilon_greedy ({epsilon})": lambda: EpsilonGreedyPolicy(n, d, epsilon),
        "random": lambda: RandomPolicy(n, d),
    }


def _configure(parser) -> None:
    parser.add_argument("--rounds", type=int, default=20_000, help="visits per world (default 20000)")
    parser.add_argument("--seeds", type=int, default=5, help="independent simulated worlds (default 5)")
    parser.add_argument("--alpha", type=float, default=0.5, help="LinUCB's bound width")
    parser.add_argument("--epsilon", type=float, default=0.1, help="epsilon-greedy's exploration rate")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")


def _run(args, host) -> int:
    cfg = build_config(ArenaConfig, {"rounds": args.rounds, "seeds": args.seeds}, "bandits")
    rows = regret_table(policies(alpha=args.alpha, epsilon=args.epsilon), cfg)
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "regret_curve"} for r in rows], indent=2))
        return 0
    print(f"contextual bandits on SIMULATED users: {cfg.rounds} visits x {cfg.seeds} worlds, one signal "
          "recommended per visit; pseudo-regret against the best signal in expectation")
    print(f"{'policy':24s} {'cumulative regret':>18s} {'+/- s.e.':>9s} {'reward rate':>12s}")
    for r in rows:
        print(f"{r['policy']:24s} {r['cumulative_regret']:18.1f} {r['regret_se']:9.1f} {r['reward_rate']:12.4f}")
    return 0


@hookimpl
def treum_models() -> list[ModelSpec]:
    return list(SPECS)


@hookimpl
def treum_commands() -> list[CommandSpec]:
    return [CommandSpec("bandits", "cumulative regret of the contextual bandits beside epsilon-greedy and random, "
                                   "in the user simulator", _configure, _run)]
