"""Ranking: order the signals a user is shown on a day, the ones they will act on and profit from first.

Rows are (day, ``<user>:<item>``) pairs: the entity names the query (the user, before the
colon) and the item (after it). A query is one user on one day; its items are the signals
the user saw that day. Labels, from the row's feedback (``target_followed``,
``target_outcome``): ``target`` is the graded relevance, 0 (ignored), 1 (followed, lost) or
2 (followed, won); it is decided when the follow's outcome is known, ``resolve_bars`` later
(the purge). A follow whose outcome is not known yet has no label.

Prediction: ``score``, any real number; only its order within a query matters. Scoring, per
query with at least one relevant item: NDCG@k (gain 2^rel - 1), hit@1 (the top item was
followed) and MRR; each averaged by day and given a 95% moving-block bootstrap interval over
days. ``compare`` gives the paired difference in NDCG@k from the reference (popularity) with
a t-test over days. Baselines: the signals' popularity in the training data and a random order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from treum.core.estimators import JsonStateModel, NoConfig
from treum.core.hookspecs import hookimpl
from treum.core.metrics import block_bootstrap_ci
from treum.core.queries import check_resolution, quality_on_first_rows, query_keys, query_metrics
from treum.core.specs import Baseline, ModelSpec, TaskExample, TaskSpec
from treum.core.task import Task

@dataclass
class RankingConfig:
    k: int = 5  # NDCG@k
    top_k: int = 3  # the signals recommended first: the decision the fairness checks judge
    resolve_bars: int = 5  # bars until a follow's outcome is known: the labels' horizon (purge)

    def validate(self) -> str | None:
        if self.k < 1 or self.top_k < 1:
            return f"k and top_k must be at least 1, got k={self.k}, top_k={self.top_k}"
        if self.resolve_bars < 0:
            return f"resolve_bars cannot be negative, got {self.resolve_bars}"
        return None


def relevance(panel: pd.DataFrame) -> pd.Series:
    """0 ignored, 1 followed and lost (or broke even), 2 followed and won; NaN while a follow's outcome is unknown."""
    followed = panel["target_followed"].to_numpy(dtype=float)
    outcome = panel["target_outcome"].to_numpy(dtype=float)
    rel = np.where(followed == 1, np.where(outcome > 0, 2.0, 1.0), 0.0)
    rel[(followed == 1) & ~np.isfinite(outcome)] = np.nan
    rel[~np.isfinite(followed)] = np.nan
    return pd.Series(rel, index=panel.index)


def ranking_metrics(frame: pd.DataFrame, k: int, n_boot: int, seed: int) -> dict[str, float]:
    """NDCG@k, hit@1 and MRR averaged over days, each with a moving-block bootstrap CI over days."""
    per_query = query_metrics(frame, "score", k, seed)
    daily = per_query.groupby("day")[["ndcg", "hit1", "rr"]].mean()
    names = {"ndcg": f"ndcg_at_{k}", "hit1": "hit_at_1", "rr": "mrr"}
    queries = query_keys(frame["target"].dropna().index)[0]
    out: dict[str, float] = {"n": float(frame[["score", "target"]].dropna().shape[0]), "queries": float(len(per_query)),
                             "days": float(len(daily)),
                             "share_queries_no_relevant": 1.0 - len(per_query) / max(len(np.unique(queries)), 1)}
    for col, name in names.items():
        values = daily[col].to_numpy(float)
        out[name] = float(values.mean()) if len(values) else float("nan")
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = block_bootstrap_ci(
            lambda i, v=values: float(v[i].mean()), len(values), n_boot, block=10, seed=seed)
    for suffix in ("", "_ci_low", "_ci_high"):  # the primary metric under one name whatever k is
        out[f"ndcg{suffix}"] = out[f"ndcg_at_{k}{suffix}"]
    return out


class Ranking(Task):
    def make_targets(self, panel: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in ("target_followed", "target_outcome") if c not in panel.columns]
        if missing:
            raise ValueError(f"ranking needs the feedback columns {missing} (rows of day x user x item, "
                             "as data=users_sim gives)")
        query_keys(panel.index)  # refuses entities that name no query
        check_resolution(panel, self.config.resolve_bars)
        return pd.DataFrame({"target": relevance(panel)}, index=panel.index)

    def label_horizon(self) -> int:
        return int(self.config.resolve_bars)

    def prediction_columns(self) -> tuple[str, ...]:
        return ("score",)

    def headline(self) -> tuple[str, ...]:
        k = self.config.k
        return (f"ndcg_at_{k}", "hit_at_1", "mrr", "queries")

    def score(self, oos: pd.DataFrame, n_boot: int, seed: int) -> dict[str, float]:
        return ranking_metrics(oos, self.config.k, n_boot, seed)

    def compare(self, oos: pd.DataFrame, reference: pd.DataFrame) -> dict[str, float]:
        """The mean daily difference in NDCG@k from the reference on the same queries, with a t-test over days."""
        k = self.config.k
        mine = query_metrics(oos, "score", k)
        theirs = query_metrics(reference, "score", k)
        both = mine[["day", "ndcg"]].join(theirs[["ndcg"]], rsuffix="_ref", how="inner")
        if len(both) == 0:
            return {}
        daily = (both["ndcg"] - both["ndcg_ref"]).groupby(both["day"]).mean().to_numpy(float)
        p = float(stats.ttest_1samp(daily, 0.0).pvalue) if len(daily) > 2 and daily.std() > 0 else float("nan")
        return {f"ndcg_at_{k}_vs_ref": float(daily.mean()), "p_vs_ref": p}

    def performance_row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        k = self.config.k
        return {"total_predictions": int(metrics.get("n", 0) or 0),
                "prediction_distribution": {f"ndcg_at_{k}": metrics.get(f"ndcg_at_{k}"),
                                            "hit_at_1": metrics.get("hit_at_1"), "mrr": metrics.get("mrr")}}

    def decisions(self, oos: pd.DataFrame) -> pd.DataFrame:
        """``selected``: among the user's first ``top_k`` signals of the day; ``positive``: followed;
        ``quality``: the query's NDCG@k, on its first row."""
        sub = oos[["score", "target"]].dropna()
        query, _ = query_keys(sub.index)
        order = pd.DataFrame({"q": query, "s": sub["score"].to_numpy(float)}, index=sub.index)
        rank = order.groupby("q")["s"].rank(method="first", ascending=False).to_numpy()
        return pd.DataFrame({"selected": (rank <= self.config.top_k).astype(float),
                             "positive": (sub["target"].to_numpy(float) >= 1).astype(float),
                             "quality": quality_on_first_rows(sub, "score", self.config.k)}, index=sub.index)

    def describe(self, values: Mapping[str, float]) -> dict[str, Any]:
        return {"meaning": "higher = shown first; only the order among one user's signals of a day matters"}


# baselines ---------------------------------------------------------------------
class Popularity(JsonStateModel):
    """Each item's mean relevance over the training rows: every user gets the crowd's favourites first."""

    def fit(self, data, valid=None):
        rows = self.join_valid(data, valid)
        _, item = query_keys(rows.index)
        rel = rows["target"].to_numpy(float)
        ok = np.isfinite(rel)
        means = pd.Series(rel[ok]).groupby(item[ok]).mean()
        self.state_ = {"items": {str(k): float(v) for k, v in means.items()}, "unseen": float(np.nanmean(rel))}

    def predict(self, data):
        _, item = query_keys(data.index)
        table = self.state_["items"]
        score = np.array([table.get(str(i), self.state_["unseen"]) for i in item], dtype=float)
        return pd.DataFrame({"score": score}, index=data.index)


@dataclass
class RandomOrderConfig:
    seed: int = 0


class RandomOrder(JsonStateModel):
    """A random order, the same for the same row every time (seeded by the row's key)."""

    def fit(self, data, valid=None):
        self.state_ = {"seed": int(self.config.seed)}

    def predict(self, data):
        keys = pd.util.hash_pandas_object(data.index.to_frame(index=False), index=False).to_numpy()
        mixed = (keys ^ np.uint64(self.state_["seed"] * 0x9E3779B97F4A7C15 % 2**64)) % np.uint64(2**31)
        return pd.DataFrame({"score": mixed.astype(float) / 2**31}, index=data.index)


def _baseline(name, cls, desc, config_cls=NoConfig) -> ModelSpec:
    cls.spec = ModelSpec(name=name, family="baseline", task="ranking", capabilities=frozenset({"multi_asset"}),
                         config_cls=config_cls, factory=cls, description=desc, baseline=True)
    return cls.spec


BASELINES = [
    _baseline("popularity", Popularity, "each signal's mean relevance in the training rows, the same for every user"),
    _baseline("random_order", RandomOrder, "a seeded random order", RandomOrderConfig),
]

Ranking.spec = TaskSpec(
    name="ranking",
    description="order each user's signals of the day: NDCG@k of follows and wins (SIMULATED users)",
    config_cls=RankingConfig,
    factory=Ranking,
    primary_metric="ndcg",  # NDCG@k at the configured k (also shown as ndcg_at_<k>)
    higher_is_better=True,
    baselines=(Baseline("popularity", "popularity"), Baseline("random_order", "random_order")),
    headline=("ndcg_at_5", "hit_at_1", "mrr", "queries"),
    example=TaskExample("users_sim", "2022-01-03", "2024-12-27", features="personal", data_config={"n_users": 40}),
    reference="popularity",
    data="users_sim",
    demo=("features=personal", "data.n_users=60"),  # fewer simulated users keep the demo near 20 s a task
)


@hookimpl
def treum_tasks() -> list[TaskSpec]:
    return [Ranking.spec]


@hookimpl
def treum_models() -> list[ModelSpec]:
    return list(BASELINES)
