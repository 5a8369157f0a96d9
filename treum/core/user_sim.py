"""A seeded simulator of users who receive trading signals, follow some of them and see the outcomes.

No real user data exists in this project, so the personalisation tasks (ranking,
recommendation) and the fairness checks run on people made here. Everything trained on
it says so: the data set is called ``users_sim`` and its caveat is printed beside every
figure. The generating process, in order (``docs/data/users_sim.md`` has the numbers):

1. **Users** get an age band, a region, experience (older users are more often experts),
   an account size (log-normal, larger with age and experience), a latent risk appetite
   (lower with age, higher with experience and account size; its terciles are the stated
   risk tolerance), an investment horizon (longer with age and lower risk appetite), and
   three behavioural traits no column shows: **skill** (how strongly they follow a
   signal's published confidence: experts read it, novices barely), **attention** (the
   chance they open the app on a day) and **noise** (how erratic their choices are).
   Each region prefers some asset classes (APAC crypto, EU bonds and FX, NA equities,
   LATAM commodities and FX), and each user deviates from their region.
2. **Signals**: a fixed catalogue of strategies, each with an asset class, a risk level
   (0-3) and a holding period. Each signal's edge follows an AR(1) process around its own
   mean; every day it publishes a *confidence*, a noisy reading of that day's edge.
3. **Days**: an active user sees every signal offered to them: options signals only to
   intermediate and expert users (an appropriateness rule), crypto signals nowhere in the EU
   (a marketing restriction), so slates differ by segment. The chance to follow is a logistic function
   of the asset-class preference, the gap between the signal's risk and the user's
   appetite, the gap in holding period, skill x confidence, and how their last follow of
   that signal went (people repeat what paid and avoid what lost), plus the user's noise.
4. **Outcomes**: a followed signal returns its edge plus noise that grows with its risk
   level, less slippage that is larger for novices and small accounts. The outcome is
   known ``resolve_bars`` bars later; until then no feature may use it.

Feedback columns are named ``target_*`` because they are decided at or after the row's
time: the walk-forward never shows ``target*`` columns to ``predict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# the signal catalogue: name -> (asset class, risk level 0-3, holding period in bars, mean edge in % per trade)
SIGNALS: dict[str, tuple[str, int, int, float]] = {
    "dividend_value": ("equity", 0, 21, 0.20),
    "bond_duration": ("bonds", 0, 21, 0.10),
    "mean_reversion": ("equity", 1, 1, 0.05),
    "fx_carry": ("fx", 1, 21, 0.15),
    "momentum": ("equity", 2, 5, 0.25),
    "commodity_trend": ("commodity", 2, 5, 0.10),
    "crypto_breakout": ("crypto", 3, 1, 0.30),
    "options_vol": ("options", 3, 5, -0.05),
}
ASSET_CLASSES = ("equity", "bonds", "fx", "commodity", "crypto", "options")
SIGNAL_RISK = np.array([s[1] for s in SIGNALS.values()], dtype=float)  # per signal, in the catalogue's order
SIGNAL_HOLDING = np.array([s[2] for s in SIGNALS.values()], dtype=float)
REGIONS = ("NA", "EU", "APAC", "LATAM")
REGION_SHARE = (0.40, 0.30, 0.20, 0.10)
# each region's taste for the asset classes, in log-odds (order of ASSET_CLASSES)
REGION_TASTE = {
    "NA": (0.8, 0.0, -0.4, 0.0, 0.0, 0.3),
    "EU": (0.2, 0.7, 0.6, -0.2, -0.6, -0.3),
    "APAC": (0.3, -0.4, 0.2, -0.2, 1.0, 0.0),
    "LATAM": (0.0, -0.2, 0.6, 0.8, 0.2, -0.4),
}
AGE_BANDS = ("18-29", "30-44", "45-59", "60+")
AGE_SHARE = (0.25, 0.35, 0.25, 0.15)
EXPERIENCE = ("novice", "intermediate", "expert")
RISK_TOLERANCE = ("conservative", "moderate", "aggressive")
HORIZONS = ("short", "medium", "long")
HORIZON_BARS = {"short": 1.0, "medium": 5.0, "long": 21.0}  # a horizon's holding period in bars
ACCOUNT_SIZES = ("small", "medium", "large")  # < 10k, 10k-100k, > 100k USD
SEGMENTS = ("risk_tolerance", "account_size", "region", "experience", "age_band", "horizon")


@dataclass
class UserSimConfig:
    """How many users and days, and the seed; the generating process itself is fixed (module docstring)."""

    n_users: int = 200
    n_days: int = 780
    first_day: str = "2022-01-03"
    seed: int = 7
    resolve_bars: int = 5  # bars until a follow's outcome is known

    def validate(self) -> str | None:
        if self.n_users < 10:
            return f"n_users must be at least 10, got {self.n_users}"
        if self.n_days < 60:
            return f"n_days must be at least 60 (the walk-forward needs history), got {self.n_days}"
        if self.resolve_bars < 1:
            return f"resolve_bars must be at least 1, got {self.resolve_bars}"
        return None


def make_users(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """The users' stated profile (columns) and hidden traits (``_skill``, ``_attention``, ``_noise``, ``_risk``)."""
    age = rng.choice(len(AGE_BANDS), size=n, p=AGE_SHARE)
    region = rng.choice(len(REGIONS), size=n, p=REGION_SHARE)
    # experience rises with age: an ordered logit on age
    exp_latent = 0.6 * age + rng.logistic(size=n)
    experience = np.digitize(exp_latent, [0.9, 2.1])
    log_account = np.log(3_000) + 0.55 * age + 0.6 * experience + rng.normal(0, 1.0, size=n)
    account_usd = np.round(np.exp(log_account), -1)
    risk = -0.5 * age + 0.5 * experience + 0.25 * (log_account - log_account.mean()) + rng.normal(0, 0.8, size=n)
    risk_tolerance = np.digitize(risk, np.quantile(risk, [1 / 3, 2 / 3]))
    horizon_latent = 0.5 * age - 0.4 * risk + rng.normal(0, 0.8, size=n)
    horizon = np.digitize(horizon_latent, np.quantile(horizon_latent, [0.3, 0.7]))
    skill = np.clip(rng.normal(0.25 + 0.45 * experience, 0.2), 0, None)
    attention = rng.beta(2 + experience, 4, size=n)  # experts open the app more often
    noise = rng.uniform(0.6, 1.4, size=n) * (1.4 - 0.25 * experience)
    ids = [f"u{i:04d}" for i in range(n)]
    return pd.DataFrame(
        {
            "user": ids,
            "age_band": np.asarray(AGE_BANDS, dtype=object)[age],
            "region": np.asarray(REGIONS, dtype=object)[region],
            "experience": np.asarray(EXPERIENCE, dtype=object)[experience],
            "account_usd": account_usd,
            "account_size": np.asarray(ACCOUNT_SIZES, dtype=object)[np.digitize(account_usd, [10_000, 100_000])],
            "risk_tolerance": np.asarray(RISK_TOLERANCE, dtype=object)[risk_tolerance],
            "horizon": np.asarray(HORIZONS, dtype=object)[horizon],
            "_risk": risk,
            "_skill": skill,
            "_attention": attention,
            "_noise": noise,
        }
    )


def signal_edges(n_days: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(edge, published confidence), each days x signals: AR(1) edges and noisy readings of them."""
    k = len(SIGNALS)
    mean = np.array([s[3] for s in SIGNALS.values()])
    phi, sd = 0.97, 0.12
    edge = np.empty((n_days, k))
    edge[0] = mean + rng.normal(0, sd / np.sqrt(1 - phi**2), size=k)
    for t in range(1, n_days):
        edge[t] = mean + phi * (edge[t - 1] - mean) + rng.normal(0, sd, size=k)
    confidence = (edge - edge.mean()) / edge.std() + rng.normal(0, 0.7, size=edge.shape)
    return edge, confidence


def offer_rules(users: pd.DataFrame) -> np.ndarray:
    """users x signals: which signals a user is offered (options: not to novices; crypto: not in the EU)."""
    offered = np.ones((len(users), len(SIGNALS)), dtype=bool)
    for k, (asset, _, _, _) in enumerate(SIGNALS.values()):
        if asset == "options":
            offered[:, k] = (users["experience"] != "novice").to_numpy()
        elif asset == "crypto":
            offered[:, k] = (users["region"] != "EU").to_numpy()
    return offered


def _taste(users: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """users x signals: the region's taste for each signal's asset class plus a personal deviation."""
    region = np.stack([REGION_TASTE[r] for r in users["region"]])  # users x asset classes
    own = region + rng.normal(0, 0.5, size=region.shape)
    cls = [ASSET_CLASSES.index(s[0]) for s in SIGNALS.values()]
    return own[:, cls]


@dataclass
class World:
    """The fixed parts of a simulation: users, signals' edges and confidences, and every user x signal term."""

    users: pd.DataFrame
    days: pd.DatetimeIndex
    edge: np.ndarray  # days x signals, % per trade
    confidence: np.ndarray  # days x signals, published
    offered: np.ndarray  # users x signals
    base: np.ndarray  # users x signals: the follow utility's fixed part (taste, risk and horizon gaps)
    skill: np.ndarray
    noise: np.ndarray
    attention: np.ndarray
    slippage: np.ndarray  # per user, % per trade
    risk_sd: np.ndarray  # per signal, % per trade

    def p_follow(self, users: np.ndarray, t: int, last_result: np.ndarray | float = 0.0) -> np.ndarray:
        """users x signals: the chance each user follows each signal on day t (logistic noise of their scale)."""
        det = self.base[users] + self.skill[users, None] * self.confidence[t][None, :] + 0.6 * last_result
        return 1.0 / (1.0 + np.exp(-det / self.noise[users, None]))

    def p_win(self, users: np.ndarray, t: int) -> np.ndarray:
        """users x signals: the chance a follow on day t pays after the user's slippage."""
        from scipy.stats import norm

        return norm.cdf((self.edge[t][None, :] - self.slippage[users, None]) / self.risk_sd[None, :])


def make_world(cfg: UserSimConfig, rng: np.random.Generator) -> World:
    """Draw the users, the signals' paths and the tastes (in this order, so a seed always gives the same world)."""
    users = make_users(cfg.n_users, rng)
    days = pd.bdate_range(cfg.first_day, periods=cfg.n_days)
    edge, confidence = signal_edges(cfg.n_days, rng)
    taste = _taste(users, rng)
    risk_level, holding = SIGNAL_RISK, SIGNAL_HOLDING
    # the user's appetite on the signals' 0-3 risk scale, and their holding period in bars
    appetite = 1.5 + 1.1 * (users["_risk"].to_numpy() - users["_risk"].mean()) / users["_risk"].std()
    user_hold = users["horizon"].map(HORIZON_BARS).to_numpy(float)
    novice = (users["experience"] == "novice").to_numpy()
    base = (-1.6 + taste - 0.9 * np.abs(risk_level[None, :] - appetite[:, None])
            - 0.5 * np.abs(np.log(holding[None, :]) - np.log(user_hold[:, None])))
    return World(
        users=users, days=days, edge=edge, confidence=confidence, offered=offer_rules(users), base=base,
        skill=users["_skill"].to_numpy(), noise=users["_noise"].to_numpy(), attention=users["_attention"].to_numpy(),
        slippage=0.05 + 0.10 * novice + 0.05 * (users["account_size"] == "small").to_numpy(),
        risk_sd=np.array([0.4, 0.8, 1.5, 2.5])[risk_level.astype(int)],
    )


def simulate(cfg: UserSimConfig) -> pd.DataFrame:
    """Rows of (day, user, signal) for every signal an active user saw, with their profile and feedback.

    Columns: ``user``, ``signal``, the profile (``SEGMENTS`` and ``account_usd``), the signal's
    ``asset_class``, ``risk_level``, ``holding_bars`` and its ``confidence`` that day, ``outcome_known_at``
    (when a follow's outcome is known, whether or not it was followed); feedback
    ``target_followed`` (0/1) and ``target_outcome`` (the trade's return in %, NaN when not followed).
    """
    rng = np.random.default_rng(cfg.seed)
    w = make_world(cfg, rng)
    users, days, edge, confidence = w.users, w.days, w.edge, w.confidence
    names = list(SIGNALS)
    risk_level, holding = SIGNAL_RISK, SIGNAL_HOLDING
    skill, noise, attention, slippage, risk_sd, offered, base = (w.skill, w.noise, w.attention, w.slippage,
                                                                 w.risk_sd, w.offered, w.base)
    n_u, n_k = len(users), len(names)
    last_result = np.zeros((n_u, n_k))  # +1 last follow of this signal paid, -1 lost, 0 none yet (known only)
    pending: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # (resolve day, users, signals, outcomes)
    parts = []
    for t in range(cfg.n_days):
        while pending and pending[0][0] <= t:  # outcomes known by day t
            _, pu, pk, po = pending.pop(0)
            last_result[pu, pk] = np.sign(po)
        active = np.flatnonzero(rng.random(n_u) < attention)
        if len(active) == 0:
            continue
        util = (base[active] + skill[active, None] * confidence[t][None, :] + 0.6 * last_result[active]
                + noise[active, None] * rng.logistic(size=(len(active), n_k)))
        followed = (util > 0) & offered[active]
        outcome = np.where(
            followed,
            edge[t][None, :] + risk_sd[None, :] * rng.standard_normal((len(active), n_k)) - slippage[active, None],
            np.nan,
        )
        fu, fk = np.nonzero(followed)
        if len(fu):
            pending.append((t + cfg.resolve_bars, active[fu], fk, outcome[fu, fk]))
        shown = offered[active].ravel()
        parts.append(pd.DataFrame({
            "timestamp": days[t],
            "u": np.repeat(active, n_k)[shown],
            "k": np.tile(np.arange(n_k), len(active))[shown],
            "confidence": np.tile(confidence[t], len(active))[shown],
            "target_followed": followed.ravel().astype(float)[shown],
            "target_outcome": outcome.ravel()[shown],
        }))
    rows = pd.concat(parts, ignore_index=True)
    profile = users.drop(columns=[c for c in users.columns if c.startswith("_")])
    rows = rows.join(profile, on="u")
    rows["signal"] = np.asarray(names, dtype=object)[rows["k"].to_numpy()]
    rows["asset_class"] = np.asarray([s[0] for s in SIGNALS.values()], dtype=object)[rows["k"].to_numpy()]
    rows["risk_level"] = risk_level[rows["k"].to_numpy()]
    rows["holding_bars"] = holding[rows["k"].to_numpy()]
    # when the row's outcome is known: resolve_bars business days later (the simulator's calendar)
    rows["outcome_known_at"] = (pd.DatetimeIndex(rows["timestamp"]) + pd.offsets.BDay(cfg.resolve_bars)).as_unit("ns")
    # an outcome due after the simulation's last day is not known yet, as with forward returns at a panel's end
    rows.loc[rows["outcome_known_at"] > days[-1], "target_outcome"] = np.nan
    entity = rows["user"].astype(str) + ":" + rows["signal"].astype(str)
    rows.index = pd.MultiIndex.from_arrays(
        [pd.DatetimeIndex(rows.pop("timestamp")).as_unit("ns"), entity.to_numpy(dtype=object)],
        names=("timestamp", "entity"),
    )
    return rows.drop(columns=["u", "k"]).sort_index()


def users_table(cfg: UserSimConfig) -> pd.DataFrame:
    """The simulated users' stated profile and hidden traits (what segments and a test can check against)."""
    return make_users(cfg.n_users, np.random.default_rng(cfg.seed))


def describe(rows: pd.DataFrame) -> dict[str, Any]:
    """Follow and win rates per segment: the heterogeneity the documentation quotes."""
    out: dict[str, Any] = {"rows": len(rows), "users": int(rows["user"].nunique()),
                           "follow_rate": float(rows["target_followed"].mean())}
    won = (rows["target_outcome"] > 0).where(rows["target_followed"] == 1)
    for seg in SEGMENTS:
        g = pd.DataFrame({"f": rows["target_followed"], "w": won, "s": rows[seg]}).groupby("s")
        out[seg] = {str(k): {"follow_rate": round(float(v["f"].mean()), 4), "win_rate": round(float(v["w"].mean()), 4)}
                    for k, v in g}
    return out


def activity(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (day, user) of the simulation, active or not: what the user was offered and did that day.

    Columns: the profile, ``active`` (opened the app), ``offered``, ``followed`` (counts), ``followed_risk``
    (sum of the risk levels followed), ``followed_log_holding`` (sum of their log holding periods),
    ``confidence_followed`` and ``confidence_offered`` (sums of the published confidence). A day's
    actions are known at its close, so a feature at t may read them.
    """
    f = rows["target_followed"].to_numpy(float)
    day_user = pd.MultiIndex.from_arrays([rows.index.get_level_values("timestamp"), rows["user"].to_numpy()],
                                         names=("timestamp", "entity"))
    parts = pd.DataFrame({
        "offered": 1.0, "followed": f, "followed_risk": f * rows["risk_level"].to_numpy(float),
        "followed_log_holding": f * np.log(rows["holding_bars"].to_numpy(float)),
        "confidence_followed": f * rows["confidence"].to_numpy(float), "confidence_offered": rows["confidence"].to_numpy(float),
    }, index=day_user)
    daily = parts.groupby(level=["timestamp", "entity"]).sum()
    days = pd.DatetimeIndex(np.unique(rows.index.get_level_values("timestamp")))
    users = np.unique(rows["user"].to_numpy())
    full = pd.MultiIndex.from_product([days, users], names=("timestamp", "entity"))
    daily = daily.reindex(full, fill_value=0.0)
    daily["active"] = (daily["offered"] > 0).astype(float)
    profile = rows.drop_duplicates("user").set_index("user")[[*SEGMENTS, "account_usd"]]
    out = daily.join(profile, on="entity")
    out.insert(0, "user", out.index.get_level_values("entity").to_numpy(dtype=object))
    return out


BEHAVIOUR_INPUTS = ("active", "offered", "followed", "followed_risk", "followed_log_holding", "confidence_followed",
                    "confidence_offered")


def trailing_behaviour(panel: pd.DataFrame, window: int, min_follows: float = 3) -> pd.DataFrame:
    """``f_b_*`` per (day, user) row of ``activity``: the last ``window`` bars up to and including t.

    Active-day share, follows per offered signal, the mean risk level and log holding period of
    what was followed, and the mean confidence of what was followed less that of what was offered;
    the follow-based figures are NaN with fewer than ``min_follows`` follows in the window.
    """
    sums = panel[list(BEHAVIOUR_INPUTS)].groupby(level="entity", sort=False).rolling(window, min_periods=window).sum()
    sums.index = sums.index.droplevel(0)
    sums = sums.reindex(panel.index)
    follows = sums["followed"].where(sums["followed"] >= min_follows)
    offered = sums["offered"].replace(0, np.nan)
    return pd.DataFrame({
        "f_b_active_rate": sums["active"] / window,
        "f_b_follow_rate": sums["followed"] / offered,
        "f_b_follow_risk": sums["followed_risk"] / follows,
        "f_b_follow_log_holding": sums["followed_log_holding"] / follows,
        "f_b_skill_gap": sums["confidence_followed"] / follows - sums["confidence_offered"] / offered,
    }, index=panel.index)
