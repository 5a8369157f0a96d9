"""The ``personal`` feature set: a user's profile, the signal, and both their histories, known at t.

For rows of (day, user, signal) such as ``users_sim``'s. Three kinds of column, all ``f_*``:

- the stated profile (risk tolerance, horizon, account size, experience, age band, region) and
  the signal's own attributes (risk level, holding period, asset class) with the gaps between
  the two: known before the user ever acts;
- the signal's published ``confidence`` that day: known when the signal is shown;
- histories: how often this user followed this signal (and any signal) on earlier days, how
  their follows went, and how every user's follows of this signal went, each counting only
  outcomes already known at t (``outcome_known_at`` <= t). Rates are shrunk towards a prior so
  that a user with two follows is not called a 100% winner.

Nothing here reads a row's own feedback or anything decided after t;
``tests/plugins/test_personalisation.py`` truncates the data and recomputes to prove it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from treum.core.hookspecs import hookimpl
from treum.core.specs import FeatureSetSpec
from treum.core.user_sim import (
    AGE_BANDS,
    ASSET_CLASSES,
    EXPERIENCE,
    HORIZON_BARS,
    REGIONS,
    RISK_TOLERANCE,
)

DEFAULTS: dict[str, Any] = {"prior_strength": 5.0, "follow_prior": 0.1, "win_prior": 0.5}
ORDINALS = {"risk_tolerance": RISK_TOLERANCE, "experience": EXPERIENCE, "age_band": AGE_BANDS}
# the profile and the signal's attributes: a counterfactual may not change them (treum report's default)
IMMUTABLE = ("f_user_risk", "f_user_experience", "f_user_age", "f_user_log_account", "f_user_log_horizon",
             *(f"f_region_{r}" for r in REGIONS), "f_signal_risk", "f_signal_log_holding",
             *(f"f_asset_{a}" for a in ASSET_CLASSES), "f_risk_gap", "f_horizon_gap")


def _ordinal(values: pd.Series, levels: tuple[str, ...]) -> np.ndarray:
    return values.map({v: float(i) for i, v in enumerate(levels)}).to_numpy(dtype=float)


def _profile(panel: pd.DataFrame) -> dict[str, np.ndarray]:
    out = {f"f_user_{k.split('_')[0] if k != 'age_band' else 'age'}": _ordinal(panel[k], v) for k, v in ORDINALS.items()}
    out["f_user_log_account"] = np.log(panel["account_usd"].to_numpy(dtype=float).clip(1.0))
    user_hold = panel["horizon"].map(HORIZON_BARS).to_numpy(dtype=float)
    out["f_user_log_horizon"] = np.log(user_hold)
    for r in REGIONS:
        out[f"f_region_{r}"] = (panel["region"] == r).to_numpy(dtype=float)
    risk = panel["risk_level"].to_numpy(dtype=float)
    hold = np.log(panel["holding_bars"].to_numpy(dtype=float))
    out["f_signal_risk"], out["f_signal_log_holding"] = risk, hold
    for a in ASSET_CLASSES:
        out[f"f_asset_{a}"] = (panel["asset_class"] == a).to_numpy(dtype=float)
    out["f_risk_gap"] = risk - 1.5 * out["f_user_risk"]  # conservative ~ 0, moderate ~ 1.5, aggressive ~ 3
    out["f_horizon_gap"] = np.abs(hold - out["f_user_log_horizon"])
    out["f_confidence"] = panel["confidence"].to_numpy(dtype=float)
    return out


def _follows_before(panel: pd.DataFrame, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows shown, rows followed) of ``key`` on days strictly before each row's day."""
    frame = pd.DataFrame({"k": panel[key].to_numpy(), "t": panel.index.get_level_values("timestamp"),
                          "f": panel["target_followed"].to_numpy(dtype=float)})
    day = frame.groupby(["k", "t"], sort=True).agg(n=("f", "size"), f=("f", "sum"))
    cum = day.groupby(level="k").cumsum() - day  # before the day: a day's own decisions are not known at its start
    joined = cum.reindex(pd.MultiIndex.from_arrays([frame["k"], frame["t"]]))
    return joined["n"].to_numpy(dtype=float), joined["f"].to_numpy(dtype=float)


def _outcomes_known(panel: pd.DataFrame, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(follows resolved, of them won, sign of the last resolved one) of ``key``, known at each row's time."""
    ts = panel.index.get_level_values("timestamp")
    done = panel["target_followed"].to_numpy(dtype=float) == 1
    outcome = panel["target_outcome"].to_numpy(dtype=float)
    done &= np.isfinite(outcome)
    ev = pd.DataFrame({"k": panel[key].to_numpy()[done], "known": pd.DatetimeIndex(panel["outcome_known_at"])[done],
                       "win": (outcome[done] > 0).astype(float), "sign": np.sign(outcome[done])})
    ev = ev.sort_values(["known"], kind="mergesort")
    ev["n_res"] = ev.groupby("k").cumcount() + 1.0
    ev["n_win"] = ev.groupby("k")["win"].cumsum()
    ev = ev.groupby(["k", "known"], sort=False).last().reset_index()  # several resolved the same day: the day's total
    rows = pd.DataFrame({"k": panel[key].to_numpy(), "t": ts, "pos": np.arange(len(panel))}).sort_values("t", kind="mergesort")
    merged = pd.merge_asof(rows, ev.rename(columns={"known": "t"}), on="t", by="k", direction="backward",
                           allow_exact_matches=True)  # an outcome known at the start of day t may be used on t
    merged = merged.sort_values("pos")
    return (merged["n_res"].fillna(0).to_numpy(float), merged["n_win"].fillna(0).to_numpy(float),
            merged["sign"].fillna(0).to_numpy(float))


def compute(panel: pd.DataFrame, cfg: Any) -> pd.DataFrame:
    """Profile, signal and history features for every (day, user:signal) row, from data known at that day."""
    c = dict(DEFAULTS)
    if cfg is not None:
        c.update({k: v for k, v in dict(cfg).items() if k != "name"})
    missing = [col for col in ("user", "signal", "target_followed", "target_outcome", "outcome_known_at",
                               "confidence", "risk_level", "holding_bars", "asset_class", *ORDINALS,
                               "horizon", "account_usd", "region") if col not in panel.columns]
    if missing:
        raise ValueError(f"the personal features need rows of (day, user, signal) with columns {missing} "
                         "(data=users_sim has them)")
    k, fp, wp = float(c["prior_strength"]), float(c["follow_prior"]), float(c["win_prior"])
    out = _profile(panel)
    keys = {"user_signal": panel.index.get_level_values("entity").to_series(index=panel.index), "user": panel["user"],
            "signal": panel["signal"]}
    work = panel[["target_followed", "target_outcome", "outcome_known_at"]].copy()
    for name, values in keys.items():
        work["key"] = values.to_numpy()
        shown, followed = _follows_before(work, "key")
        resolved, won, last = _outcomes_known(work, "key")
        out[f"f_{name}_follow_rate"] = (followed + k * fp) / (shown + k)
        out[f"f_{name}_win_rate"] = (won + k * wp) / (resolved + k)
        if name == "user_signal":
            out["f_user_signal_last_result"] = last
            out["f_user_signal_shown_log"] = np.log1p(shown)
    return pd.DataFrame(out, index=panel.index)


@hookimpl
def treum_features() -> list[FeatureSetSpec]:
    return [
        FeatureSetSpec(
            "personal",
            "a user's profile, the signal's attributes and confidence, and both their follow/outcome histories "
            "known at t (rows of day x user x signal)",
            compute,
            immutable=IMMUTABLE,
        )
    ]
