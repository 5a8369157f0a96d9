"""Queries of rows that rank items for a user: the entity ``<user>:<item>`` names both.

A query is one user on one day; its rows are the items the user was shown. Tasks that
rank or recommend items (and their models) read the pair from the entity, so nothing
outside a data set decides how users and items are written.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

QUERY_SEP = ":"


def split_entity(index: pd.MultiIndex) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) per row of a (timestamp, ``user:item``) index; a clear error for an entity without both."""
    entity = pd.Index(index.get_level_values("entity").astype(str))
    parts = entity.str.split(QUERY_SEP, n=1)
    ok = parts.str.len().to_numpy() == 2
    if not ok.all():
        bad = entity[~ok][0]
        raise ValueError(f"rows of users and items are (timestamp, '<user>{QUERY_SEP}<item>'); "
                         f"entity {bad!r} has no '{QUERY_SEP}'")
    return parts.str[0].to_numpy(dtype=object), parts.str[1].to_numpy(dtype=object)


def query_keys(index: pd.MultiIndex) -> tuple[np.ndarray, np.ndarray]:
    """(query id per row: its day and user, item per row)."""
    user, item = split_entity(index)
    day = index.get_level_values("timestamp").asi8
    query = pd.factorize(pd.MultiIndex.from_arrays([day, user]))[0]
    return query, item


def query_metrics(frame: pd.DataFrame, score: str = "score", k: int = 5, seed: int = 0) -> pd.DataFrame:
    """Per query (indexed by day and user) with a relevant item: NDCG@k, hit@1 and the reciprocal rank of the
    first relevant item (gain ``2^rel - 1``).

    Ties in ``score`` are broken by a seeded shuffle, so a constant score earns a random order's figure.
    """
    sub = frame[[score, "target"]].dropna()
    user, _ = split_entity(sub.index)
    day = sub.index.get_level_values("timestamp")
    rng = np.random.default_rng(seed)
    d = pd.DataFrame({"q": pd.factorize(pd.MultiIndex.from_arrays([day, user]))[0], "day": day, "user": user,
                      "s": sub[score].to_numpy(float), "rel": sub["target"].to_numpy(float),
                      "tie": rng.random(len(sub))})
    d = d.sort_values(["q", "s", "tie"], ascending=[True, False, True], kind="mergesort")
    d["rank"] = d.groupby("q").cumcount() + 1
    d["dcg"] = np.where(d["rank"] <= k, (2.0 ** d["rel"] - 1.0) / np.log2(d["rank"] + 1.0), 0.0)
    best = d.sort_values(["q", "rel"], ascending=[True, False], kind="mergesort")
    best_rank = best.groupby("q").cumcount() + 1
    best_dcg = np.where(best_rank <= k, (2.0 ** best["rel"] - 1.0) / np.log2(best_rank + 1.0), 0.0)
    idcg = pd.Series(best_dcg, index=best.index).groupby(best["q"]).sum()
    g = d.groupby("q")
    out = pd.DataFrame({"day": g["day"].first(), "user": g["user"].first(), "dcg": g["dcg"].sum(), "idcg": idcg})
    out["rr"] = 1.0 / d[d["rel"] > 0].groupby("q")["rank"].min().reindex(out.index)
    out["hit1"] = (d[d["rank"] == 1].set_index("q")["rel"] > 0).astype(float).reindex(out.index)
    out = out[out["idcg"] > 0]  # a query where nothing was followed has no ideal order to approach
    out["ndcg"] = out["dcg"] / out["idcg"]
    return out.set_index(["day", "user"], drop=False)[["day", "user", "ndcg", "hit1", "rr"]].rename_axis(["q_day", "q_user"])


def quality_on_first_rows(frame: pd.DataFrame, score: str, k: int) -> np.ndarray:
    """Each query's NDCG@k (``query_metrics``) on its first row of ``frame``, NaN on its other rows and for a query
    with nothing relevant: one figure per user's day, which fairness checks average over a segment's users."""
    per_query = query_metrics(frame, score, k)
    user, _ = split_entity(frame.index)
    keys = pd.MultiIndex.from_arrays([frame.index.get_level_values("timestamp"), user])
    first = ~keys.duplicated()
    out = np.full(len(frame), np.nan)
    out[first] = per_query["ndcg"].reindex(keys[first]).to_numpy()
    return out


def check_resolution(panel: pd.DataFrame, resolve_bars: int, key: str = "task.resolve_bars") -> None:
    """Refuse rows whose outcome is known later than ``resolve_bars`` bars (``outcome_known_at``): the purge,
    which is that many bars, would let training labels reach into the test block."""
    if "outcome_known_at" not in panel.columns:
        return
    cal = pd.DatetimeIndex(np.unique(panel.index.get_level_values("timestamp").values))
    known = pd.DatetimeIndex(panel["outcome_known_at"])
    inside = known <= cal[-1]
    lag = cal.searchsorted(known[inside]) - cal.searchsorted(panel.index.get_level_values("timestamp")[inside])
    worst = int(lag.max()) if len(lag) else 0
    if worst > resolve_bars:
        raise ValueError(f"outcomes are known up to {worst} bars after their row, but {key} is {resolve_bars}; "
                         f"set {key}={worst} so the purge covers them")
