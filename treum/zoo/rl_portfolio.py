"""A reinforcement-learning portfolio agent for the portfolio task: stable-baselines3 PPO or SAC.

One step of the environment is one rebalance period of the task's calendar. The agent
sees, for each entity of the universe fixed at fit, the last ``window`` daily returns,
momentum over 1, 3, 6 and 12 months, the 3-month volatility (all from the ``close``
column, scaled by the training returns' standard deviation), whether it can be held,
and its current (drifted) weight; its action (one number per entity, in [-1, 1]) becomes
weights through a softmax of ``action_scale * action`` over the entities that can be
held. The task's risk layer (``Task.constrain``: ``max_weight``, ``max_turnover``) turns
them into the trade. The reward is the net log return of the holding period,
``log(1 - cost) + log(sum_i w_i G_i)`` with ``G_i`` the entity's growth until the next
rebalance and ``cost = cost_bps * traded value``: exactly what the task's backtest books,
less an optional penalty (``variance``: the period's realised variance of daily portfolio
returns; ``drawdown``: the episode's drawdown at the period's end) times ``penalty_weight``.
Episodes start in cash at a random rebalance date of the training rows and last
``episode_steps`` periods (or until the data ends).

``valid`` (when given) only selects: every ``eval_every`` steps the deterministic policy
walks the validation periods and the checkpoint with the best net Sharpe there is kept
(the untrained policy, close to 1/N for PPO, is the first candidate). Saving writes the
policy's state dict (safetensors) and a JSON of the universe and dimensions; loading
rebuilds the SB3 policy from the config and loads it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from treum.core.errors import TreumError
from treum.core.hookspecs import hookimpl
from treum.core.specs import ModelSpec
from treum.core.weights import WeightsModel, wide_closes

MOMENTUM = (21, 63, 126, 252)  # bars of the momentum features
VOL_BARS = 63


@dataclass
class RLPortfolioConfig:
    algorithm: Literal["ppo", "sac"] = "ppo"
    window: int = 21  # daily returns per entity in the observation
    lookback: int = 252  # return rows each decision reads (momentum up to this many bars)
    min_history: int = 63  # the fewest return bars an entity needs to be held
    action_scale: float = 2.0  # weights = softmax(action_scale * action), action in [-1, 1]
    penalty: Literal["none", "variance", "drawdown"] = "none"  # subtracted from the reward
    penalty_weight: float = 0.0  # times the penalty
    episode_steps: int = 36  # rebalance periods per training episode (random start)
    total_timesteps: int = 3000  # environment steps of training
    hidden: int = 64  # units per hidden layer of the policy (and critic)
    layers: int = 2  # hidden layers
    learning_rate: float = 3e-4
    gamma: float = 0.9  # discount per rebalance period
    batch_size: int = 64
    # PPO
    n_steps: int = 256  # steps per rollout
    n_epochs: int = 10
    ent_coef: float = 0.0
    log_std_init: float = -1.0  # initial log standard deviation of PPO's Gaussian actions
    # SAC
    buffer_size: int = 50_000
    learning_starts: int = 256
    gradient_steps: int = 1
    tau: float = 0.005
    # selection on the validation rows
    eval_every: int = 500  # steps between validation checks (0: keep the last policy)
    seed: int = 0
    num_threads: int = 1

    def validate(self) -> str | None:
        checks = [
            (self.window >= 1, f"window must be at least 1, got {self.window}"),
            (self.min_history >= 2, f"min_history must be at least 2, got {self.min_history}"),
            (self.lookback >= max(self.window, self.min_history),
             f"lookback ({self.lookback}) must be at least window ({self.window}) and min_history "
             f"({self.min_history})"),
            (self.action_scale > 0, f"action_scale must be positive, got {self.action_scale}"),
            (self.penalty_weight >= 0, f"penalty_weight cannot be negative, got {self.penalty_weight}"),
            (self.episode_steps >= 1, f"episode_steps must be at least 1, got {self.episode_steps}"),
            (self.total_timesteps >= 1, f"total_timesteps must be at least 1, got {self.total_timesteps}"),
            (self.hidden >= 1 and self.layers >= 0,
             f"need hidden >= 1 and layers >= 0, got hidden={self.hidden}, layers={self.layers}"),
            (self.learning_rate > 0, f"learning_rate must be positive, got {self.learning_rate}"),
            (0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}"),
            (self.batch_size >= 2, f"batch_size must be at least 2, got {self.batch_size}"),
            (self.n_steps >= 2, f"n_steps must be at least 2, got {self.n_steps}"),
            (self.n_epochs >= 1, f"n_epochs must be at least 1, got {self.n_epochs}"),
            (self.eval_every >= 0, f"eval_every cannot be negative, got {self.eval_every}"),
            (self.num_threads >= 1, f"num_threads must be at least 1, got {self.num_threads}"),
        ]
        return next((msg for ok, msg in checks if not ok), None)


# observations and weights, shared by the environment and decide --------------------
def entity_features(returns: np.ndarray, window: int, scale: float) -> np.ndarray:
    """(entities x features) from (bars x entities) simple daily returns, the last bar the decision date.

    Each column is computed from its own returns only (missing ones count as 0): the last
    ``window`` returns, log momentum over ``MOMENTUM`` bars and the volatility over
    ``VOL_BARS``, scaled by ``scale`` (the training returns' standard deviation).
    """
    r = np.nan_to_num(np.asarray(returns, dtype=float), nan=0.0)
    n = r.shape[1]
    win = np.zeros((n, window))
    tail = r[-window:].T
    if tail.shape[1]:
        win[:, window - tail.shape[1]:] = tail
    lr = np.log1p(np.clip(r, -0.99, None))
    mom = [lr[-h:].sum(axis=0) / math.sqrt(h) for h in MOMENTUM]
    vol = r[-VOL_BARS:].std(axis=0) if len(r) > 1 else np.zeros(n)
    return np.column_stack([win, *mom, vol]) / scale


def observation(features: np.ndarray, available: np.ndarray, held: np.ndarray) -> np.ndarray:
    """The flat observation: per entity its features, 1 if it can be held, its weight times N."""
    n = len(available)
    return np.column_stack([features * available[:, None], available, held * n]).astype(np.float32).ravel()


def action_weights(action: np.ndarray, available: np.ndarray, scale: float) -> np.ndarray:
    """Softmax of ``scale * action`` over the available entities; 0 for the others."""
    logits = scale * np.clip(np.asarray(action, dtype=float), -1.0, 1.0)
    logits = np.where(available, logits, -np.inf)
    if not available.any():
        return np.zeros(len(available))
    w = np.exp(logits - logits[available].max())
    return w / w.sum()


@dataclass
class MarketArrays:
    """What the environment steps through: per decision date k, the features, who can be held,
    and the daily returns of the holding period after it (until the next decision date)."""

    dates: pd.DatetimeIndex
    features: np.ndarray  # (K, N, F)
    available: np.ndarray  # (K, N) bool
    periods: list[np.ndarray]  # K arrays (days x N) of simple returns, missing ones 0


def market_arrays(data: pd.DataFrame, task: Any, universe: list[str], cfg: RLPortfolioConfig, scale: float,
                  start: pd.Timestamp | None = None) -> MarketArrays:
    """The decision dates of ``data`` (at or after ``start``) with a holding period after them.

    The history and the rule for who can be held are those of ``WeightsModel.predict_from``:
    the last ``lookback`` return rows up to the date, an entity priced on the date with at
    least ``min_history`` returns among them.
    """
    closes = wide_closes(data).reindex(columns=universe)
    returns = closes.pct_change(fill_method=None)
    rows = closes.index
    ends, feats, avail = [], [], []
    for date in task.rebalance_dates(rows):
        if start is not None and date < start:
            continue
        end = rows.get_loc(date)
        hist = returns.iloc[max(1, end + 1 - cfg.lookback):end + 1].to_numpy()
        ok = closes.iloc[end].notna().to_numpy() & (np.isfinite(hist).sum(axis=0) >= cfg.min_history)
        if not ok.any() or end + 1 >= len(rows):
            continue
        ends.append(end)
        feats.append(entity_features(hist, cfg.window, scale))
        avail.append(ok)
    bounds = ends + [len(rows) - 1]
    r = np.nan_to_num(returns.to_numpy(), nan=0.0)
    periods = [r[a + 1:b + 1] for a, b in zip(bounds[:-1], bounds[1:])]
    n, f = len(universe), cfg.window + len(MOMENTUM) + 1
    return MarketArrays(rows[ends], np.array(feats).reshape(-1, n, f), np.array(avail, dtype=bool).reshape(-1, n),
                        periods)


def make_env(arrays: MarketArrays, task: Any, cfg: RLPortfolioConfig, universe: list[str], random_start: bool = True,
             episode_steps: int | None = None):
    """The gymnasium environment over ``arrays`` (see the module's docstring).

    Training episodes start at a random decision date and last ``cfg.episode_steps``; with
    ``random_start`` False an episode starts at the first date and lasts ``episode_steps``
    (None: until the data ends).
    """
    if episode_steps is None:
        episode_steps = cfg.episode_steps if random_start else len(arrays.periods)
    import gymnasium as gym
    from gymnasium import spaces

    n = len(universe)
    caps = task.config.max_weight is not None or task.config.max_turnover is not None
    cost_rate = task.config.cost_bps / 1e4

    class RebalanceEnv(gym.Env):
        metadata: dict[str, Any] = {"render_modes": []}

        def __init__(self) -> None:
            self.arrays = arrays
            self.observation_space = spaces.Box(-np.inf, np.inf, shape=(n * (arrays.features.shape[2] + 2),),
                                                dtype=np.float32)
            self.action_space = spaces.Box(-1.0, 1.0, shape=(n,), dtype=np.float32)
            self.t = self.done_steps = 0
            self.held = np.zeros(n)
            self.wealth = self.peak = 1.0

        def _obs(self) -> np.ndarray:
            k = min(self.t, len(arrays.periods) - 1)
            return observation(arrays.features[k], arrays.available[k], self.held)

        def reset(self, *, seed: int | None = None, options: dict | None = None):
            super().reset(seed=seed)
            last = max(len(arrays.periods) - episode_steps, 0)
            self.t = int(self.np_random.integers(0, last + 1)) if random_start else 0
            self.done_steps = 0
            self.held = np.zeros(n)  # every episode starts in cash, as the backtest does
            self.wealth = self.peak = 1.0
            return self._obs(), {}

        def weights(self, action: np.ndarray) -> np.ndarray:
            """The traded weights: the softmax, then the task's risk layer when it has caps."""
            ok = arrays.available[self.t]
            w = action_weights(action, ok, cfg.action_scale)
            if caps:
                held = pd.Series(self.held, index=universe) if self.held.sum() > 0 else None
                w = task.constrain(pd.Series(w[ok], index=np.asarray(universe)[ok]), held)
                w = w.reindex(universe, fill_value=0.0).to_numpy()
            return w

        def step(self, action):
            w = self.weights(action)
            traded = float(np.abs(w - self.held).sum())
            cost = traded * cost_rate
            path = np.cumprod(1.0 + arrays.periods[self.t], axis=0)  # each entity's growth, day by day
            values = path @ w
            growth = float(values[-1])
            reward = math.log(1.0 - cost) + math.log(growth)
            daily = values / np.r_[1.0, values[:-1]] - 1.0
            self.wealth *= (1.0 - cost) * growth
            self.peak = max(self.peak, self.wealth)
            if cfg.penalty == "variance":
                reward -= cfg.penalty_weight * float(np.sum(daily**2))
            elif cfg.penalty == "drawdown":
                reward -= cfg.penalty_weight * (1.0 - self.wealth / self.peak)
            self.held = w * path[-1] / growth
            self.t += 1
            self.done_steps += 1
            terminated = self.t >= len(arrays.periods)
            truncated = not terminated and self.done_steps >= episode_steps
            info = {"net_return": (1.0 - cost) * growth - 1.0, "cost": cost, "traded": traded}
            return self._obs(), reward, terminated, truncated, info

    return RebalanceEnv()


def build_policy(cfg: RLPortfolioConfig, obs_dim: int, n_actions: int):
    """The SB3 policy network of ``cfg.algorithm`` for these dimensions (untrained)."""
    from gymnasium import spaces
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.sac.policies import SACPolicy

    obs = spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float32)
    act = spaces.Box(-1.0, 1.0, shape=(n_actions,), dtype=np.float32)
    cls = ActorCriticPolicy if cfg.algorithm == "ppo" else SACPolicy
    policy = cls(obs, act, lambda _: cfg.learning_rate, **policy_kwargs(cfg))
    policy.set_training_mode(False)
    return policy


def policy_kwargs(cfg: RLPortfolioConfig) -> dict[str, Any]:
    arch = [cfg.hidden] * cfg.layers
    if cfg.algorithm == "ppo":
        return {"net_arch": {"pi": arch, "vf": arch}, "log_std_init": cfg.log_std_init}
    return {"net_arch": arch}


def validation_sharpe(policy: Any, env: Any) -> float:
    """The net Sharpe (per period) of the deterministic policy over one pass of ``env``."""
    obs, _ = env.reset()
    rets, done = [], False
    while not done:
        action, _ = policy.predict(obs, deterministic=True)
        obs, _, terminated, truncated, info = env.step(action)
        rets.append(math.log1p(info["net_return"]))
        done = terminated or truncated
    r = np.array(rets)
    return float(r.mean() / r.std()) if len(r) > 1 and r.std() > 0 else -math.inf


class RLPortfolio(WeightsModel):
    """PPO or SAC over the universe fixed at fit; ``decide`` runs the policy deterministically."""

    def lookback(self) -> int:
        return self.config.lookback

    def fit(self, data: pd.DataFrame, valid: pd.DataFrame | None = None) -> None:
        import torch
        from stable_baselines3 import PPO, SAC
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.utils import set_random_seed

        cfg, task = self.config, self.require_task()
        torch.set_num_threads(cfg.num_threads)
        set_random_seed(cfg.seed)
        self.universe_ = sorted(str(e) for e in pd.unique(data.index.get_level_values("entity")))
        returns = wide_closes(data).pct_change(fill_method=None).to_numpy()
        sd = float(np.nanstd(returns))
        self.scale_ = sd if np.isfinite(sd) and sd > 0 else 0.02
        arrays = market_arrays(data, task, self.universe_, cfg, self.scale_)
        if len(arrays.periods) < 2:
            raise TreumError(f"rl_portfolio needs at least 2 rebalance periods with {cfg.min_history} bars of "
                             f"history in the training rows, got {len(arrays.periods)}; give it more data or "
                             "lower model.min_history")
        env = make_env(arrays, task, cfg, self.universe_)
        common = dict(learning_rate=cfg.learning_rate, gamma=cfg.gamma, batch_size=cfg.batch_size,
                      policy_kwargs=policy_kwargs(cfg), seed=cfg.seed, device="cpu", verbose=0)
        if cfg.algorithm == "ppo":
            agent = PPO("MlpPolicy", env, n_steps=cfg.n_steps, n_epochs=cfg.n_epochs, ent_coef=cfg.ent_coef, **common)
        else:
            agent = SAC("MlpPolicy", env, buffer_size=cfg.buffer_size, learning_starts=cfg.learning_starts,
                        gradient_steps=cfg.gradient_steps, tau=cfg.tau, **common)
        selector = None
        self.selection_: list[tuple[int, float]] = []
        if valid is not None and len(valid) and cfg.eval_every:
            context = pd.concat([data, valid]).sort_index()
            v_arrays = market_arrays(context, task, self.universe_, cfg, self.scale_,
                                     start=valid.index.get_level_values("timestamp").min())
            if len(v_arrays.periods) >= 2:
                v_env = make_env(v_arrays, task, cfg, self.universe_, random_start=False)
                selector = checkpoint_selector(BaseCallback, v_env, cfg.eval_every, self.selection_)
        if selector is not None:
            selector.consider(agent.policy, 0)
        agent.learn(total_timesteps=cfg.total_timesteps, callback=selector)
        if selector is not None:
            selector.consider(agent.policy, int(agent.num_timesteps))
            if selector.best_state is not None:  # None only if every validation Sharpe was undefined
                agent.policy.load_state_dict(selector.best_state)
        self.policy_ = agent.policy
        self.policy_.set_training_mode(False)
        self.obs_dim_ = int(env.observation_space.shape[0])

    def predict_from(self, data: pd.DataFrame, start: Any) -> pd.DataFrame:
        """Its decisions read the holdings its earlier decisions built: replay the path from the data's start,
        so that the answers from ``start`` are ``predict``'s (a policy step is cheap)."""
        return super().predict_from(data, None)

    def decide(self, history: pd.DataFrame, date: pd.Timestamp, holdings: pd.Series | None) -> pd.Series | None:
        """Softmax weights of the deterministic policy; before the first trade the agent holds cash."""
        cfg = self.config
        cols = [str(c) for c in history.columns]
        values = history.set_axis(cols, axis=1).reindex(columns=self.universe_).to_numpy()
        available = np.isin(self.universe_, cols)
        if not available.any():
            return None  # no entity of the universe can be held yet
        held = np.zeros(len(self.universe_))
        if holdings is not None:
            held = holdings.set_axis([str(c) for c in holdings.index]).reindex(self.universe_).fillna(0.0).to_numpy()
        obs = observation(entity_features(values, cfg.window, self.scale_), available, held)
        action, _ = self.policy_.predict(obs, deterministic=True)
        w = pd.Series(action_weights(action, available, cfg.action_scale), index=self.universe_)
        # an entity outside the universe fixed at fit gets 0
        return w.reindex(cols, fill_value=0.0).set_axis(history.columns)

    def save_weights(self, directory: Path) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous() for k, v in self.policy_.state_dict().items()}
        save_file(state, str(directory / "policy.safetensors"))
        meta = {"algorithm": self.config.algorithm, "universe": self.universe_, "obs_dim": self.obs_dim_,
                "scale": self.scale_, "selection": self.selection_}
        (directory / "policy.json").write_text(json.dumps(meta, indent=2))

    def load_weights(self, directory: Path) -> None:
        from safetensors.torch import load_file

        meta = json.loads((directory / "policy.json").read_text())
        if meta["algorithm"] != self.config.algorithm:
            raise TreumError(f"{directory}: the policy was trained with {meta['algorithm']}, the config says "
                             f"{self.config.algorithm}")
        self.universe_, self.obs_dim_, self.scale_ = meta["universe"], meta["obs_dim"], meta["scale"]
        self.selection_ = [tuple(s) for s in meta.get("selection", [])]
        self.policy_ = build_policy(self.config, self.obs_dim_, len(self.universe_))
        self.policy_.load_state_dict(load_file(str(directory / "policy.safetensors")))
        self.policy_.set_training_mode(False)


def checkpoint_selector(base: type, env: Any, every: int, log: list):
    """An SB3 callback that keeps the policy with the best validation Sharpe (checked every ``every`` steps)."""

    class Selector(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.best = -math.inf
            self.best_state: dict | None = None

        def consider(self, policy: Any, step: int) -> None:
            score = validation_sharpe(policy, env)
            log.append((step, score))
            if score > self.best:
                self.best = score
                self.best_state = {k: v.detach().clone() for k, v in policy.state_dict().items()}

        def _on_step(self) -> bool:
            if self.num_timesteps % every == 0:
                self.consider(self.model.policy, self.num_timesteps)
            return True

    return Selector()


RLPortfolio.spec = ModelSpec(
    name="rl_portfolio",
    family="reinforcement_learning",
    task="portfolio",
    capabilities=frozenset({"multi_asset", "sequential", "cross_sectional"}),
    config_cls=RLPortfolioConfig,
    factory=RLPortfolio,
    description="PPO or SAC agent (stable-baselines3): softmax weights from windows of returns, net log-return reward",
    extra=None,
)


@hookimpl
def treum_models() -> list[ModelSpec]:
    return [RLPortfolio.spec]
