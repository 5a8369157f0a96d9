"""The ``behaviour`` feature set: what a user did over the trailing window, one row per (day, user).

For ``users_sim_activity``'s rows. Over the last ``window`` bars up to and including t (a day's
actions are known at its close): the share of days the user was active, follows per offered
signal, the mean risk level and log holding period of what they followed, and how much more
confident the signals they followed were than those offered (a skill proxy); plus the stated
profile as ordinals. A user with no follow in the window has no follow-based figure (NaN).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from treum.core.hookspecs import hookimpl
from treum.core.specs import FeatureSetSpec
from treum.core.user_sim import AGE_BANDS, BEHAVIOUR_INPUTS, EXPERIENCE, RISK_TOLERANCE, trailing_behaviour

DEFAULTS: dict[str, Any] = {"window": 63, "min_follows": 3}
PROFILE = {"risk_tolerance": RISK_TOLERANCE, "experience": EXPERIENCE, "age_band": AGE_BANDS}


def compute(panel: pd.DataFrame, cfg: Any) -> pd.DataFrame:
    """Trailing behaviour and the stated profile for every (day, user) row."""
    c = dict(DEFAULTS)
    if cfg is not None:
        c.update({k: v for k, v in dict(cfg).items() if k != "name"})
    need = [*BEHAVIOUR_INPUTS, *PROFILE, "account_usd"]
    missing = [col for col in need if col not in panel.columns]
    if missing:
        raise ValueError(f"the behaviour features need rows of (day, user) with columns {missing} "
                         "(data=users_sim_activity has them)")
    out = trailing_behaviour(panel, int(c["window"]), float(c["min_follows"]))
    for col, levels in PROFILE.items():
        out[f"f_p_{col}"] = panel[col].map({v: float(i) for i, v in enumerate(levels)})
    out["f_p_log_account"] = np.log(panel["account_usd"].astype(float).clip(lower=1.0))
    return out


@hookimpl
def treum_features() -> list[FeatureSetSpec]:
    return [FeatureSetSpec("behaviour", "a user's trailing activity, follow rate, risk and holding of what they "
                                        "followed, skill proxy, and stated profile (rows of day x user)", compute,
                           immutable=("f_p_risk_tolerance", "f_p_experience", "f_p_age_band", "f_p_log_account"))]
