"""``users_sim``: SIMULATED users who receive trading signals, follow some and see the outcomes.

No real user data exists here; the personalisation tasks (ranking, recommendation) and the
fairness checks over user segments run on this seeded simulator (``treum.core.user_sim``,
whose docstring and ``docs/data/users_sim.md`` give the generating process). The name, the
caveat beside every leaderboard and every release report say that the data is simulated.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from treum.core.config import build_config
from treum.core.data import bounded, validate_panel
from treum.core.hookspecs import hookimpl
from treum.core.specs import DatasetSpec
from treum.core.user_sim import UserSimConfig, activity, simulate

CAVEAT = ("SIMULATED data: the users, their trades and their feedback come from treum's seeded simulator "
          "(docs/data/users_sim.md), not from real people; figures show what the models recover from a known "
          "generating process, not how real users behave")
REQUIRED = ("user", "signal", "confidence", "target_followed", "target_outcome", "outcome_known_at")


def _config(values: dict) -> UserSimConfig:
    sim_keys = {k: values[k] for k in ("n_users", "n_days", "seed", "resolve_bars") if values.get(k) is not None}
    if values.get("first_day"):
        sim_keys["first_day"] = str(values["first_day"])
    return build_config(UserSimConfig, sim_keys, "data")


def load(cfg: Any) -> pd.DataFrame:
    """Simulate (seeded) and bound to the config's ``start``/``end``; each (day, user:signal) is one row."""
    values = dict(cfg or {})
    rows = bounded(simulate(_config(values)), values)
    # an outcome due after the data's (bounded) last day is not known in it, as at the simulation's own end
    last = rows.index.get_level_values("timestamp").max()
    rows = rows.copy()
    rows.loc[rows["outcome_known_at"] > last, "target_outcome"] = float("nan")
    return validate_panel(rows, "users_sim (simulated)", required=REQUIRED)


def load_activity(cfg: Any) -> pd.DataFrame:
    """The same simulation as one row per (day, user): what each user was offered and did that day."""
    values = dict(cfg or {})
    return validate_panel(bounded(activity(simulate(_config(values))), values), "users_sim_activity (simulated)",
                          required=("user", "active", "offered", "followed", "followed_risk"))


@hookimpl
def treum_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            "users_sim",
            "SIMULATED users x trading signals: profiles, daily follows and outcomes (seeded; no real people)",
            load,
            "treum.core.user_sim (seeded simulator)",
            caveat=CAVEAT,
            simulated=True,
        ),
        DatasetSpec(
            "users_sim_activity",
            "SIMULATED users' days: what each was offered and did, one row per (day, user) (seeded; no real people)",
            load_activity,
            "treum.core.user_sim (seeded simulator)",
            caveat=CAVEAT,
            simulated=True,
        ),
    ]
