"""The recommendation, risk_profile and segmentation tasks, the behaviour features and the bandit arena."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from treum.core.bandit_arena import ArenaConfig, regret_table
from treum.core.config import build_config
from treum.core.data import slice_time
from treum.plugins.datasets.users_sim import load, load_activity
from treum.plugins.features.behaviour import compute as behaviour
from treum.plugins.tasks.recommendation import Recommendation, RecommendationConfig, hit_target, weighted_auc
from treum.plugins.tasks.risk_profile import forward_appetite
from treum.plugins.tasks.segmentation import Segmentation, SegmentationConfig
from treum.zoo.bandits import policies

SMALL = {"n_users": 30, "n_days": 150}


@pytest.fixture(scope="module")
def activity():
    return load_activity(SMALL)


def test_weighted_auc_is_sklearns_with_ties_and_repeated_rows():
    rng = np.random.default_rng(0)
    p = rng.integers(0, 5, 300) / 4.0  # many ties
    y = (rng.random(300) < 0.3 + 0.4 * p).astype(float)
    w = rng.integers(0, 4, 300).astype(float)  # bootstrap counts: a row drawn 0..3 times
    groups = np.unique(p, return_inverse=True)[1]
    assert weighted_auc(groups, y, np.ones(300)) == pytest.approx(roc_auc_score(y, p))
    rows = np.repeat(np.arange(300), w.astype(int))
    assert weighted_auc(groups, y, w) == pytest.approx(roc_auc_score(y[rows], p[rows]))


def test_a_hit_is_a_follow_that_paid_and_an_unknown_outcome_has_no_label():
    idx = pd.MultiIndex.from_arrays([pd.to_datetime(["2024-01-02"] * 4), ["u1:a", "u1:b", "u1:c", "u1:d"]],
                                    names=("timestamp", "entity"))
    panel = pd.DataFrame({"target_followed": [1.0, 1.0, 0.0, 1.0], "target_outcome": [0.4, -0.2, np.nan, np.nan]},
                         index=idx)
    assert hit_target(panel).tolist()[:3] == [1.0, 0.0, 0.0] and np.isnan(hit_target(panel).iloc[3])


def test_recommendation_refuses_outcomes_known_after_its_purge():
    """Outcomes that arrive later than task.resolve_bars would reach past the purge into the test block."""
    panel = load({**SMALL, "resolve_bars": 8})
    task = Recommendation(build_config(RecommendationConfig, {"resolve_bars": 5}, "task"))
    with pytest.raises(ValueError, match="task.resolve_bars=8"):
        task.make_targets(panel)
    Recommendation(build_config(RecommendationConfig, {"resolve_bars": 8}, "task")).make_targets(panel)


def test_recommendation_decisions_follow_the_threshold():
    panel = load(SMALL)
    task = Recommendation(build_config(RecommendationConfig, {"threshold": 0.2}, "task"))
    oos = task.make_targets(panel).assign(p_hit=np.linspace(0, 0.4, len(panel)))
    d = task.decisions(oos)
    labelled = oos["target"].notna()
    assert len(d) == int(labelled.sum())
    assert (d["selected"] == (oos.loc[labelled, "p_hit"] >= 0.2).astype(float)).all()
    queries = pd.MultiIndex.from_arrays([d.index.get_level_values("timestamp"),
                                         d.index.get_level_values("entity").str.split(":").str[0]]).nunique()
    assert 0 < d["quality"].notna().sum() <= queries  # one NDCG per user's day at most (none without a hit)


def test_forward_appetite_is_the_mean_risk_of_the_next_bars_follows():
    days = pd.bdate_range("2024-01-01", periods=6)
    idx = pd.MultiIndex.from_arrays([days, ["u1"] * 6], names=("timestamp", "entity"))
    panel = pd.DataFrame({"followed": [1, 2, 0, 1, 0, 1.0], "followed_risk": [3, 2, 0, 3, 0, 1.0]}, index=idx)
    got = forward_appetite(panel, 2)
    # t=0: bars 1-2 hold 2 follows of total risk 2 -> 1.0; t=1: bars 2-3, 1 follow of risk 3 -> 3.0;
    # t=2: bars 3-4 -> 3.0; t=3: bars 4-5 -> 1.0; the last two have no full window -> NaN
    assert got.iloc[:4].tolist() == [1.0, 3.0, 3.0, 1.0] and got.iloc[4:].isna().all()
    no_follow = panel.assign(followed=0.0, followed_risk=0.0)
    assert forward_appetite(no_follow, 2).isna().all()  # nothing followed: no appetite revealed


def test_behaviour_features_do_not_look_ahead(activity):
    full = behaviour(activity, {"window": 21})
    ts = activity.index.get_level_values("timestamp").unique().sort_values()
    for cut in (ts[40], ts[90]):
        part = behaviour(slice_time(activity, end=cut), {"window": 21})
        pd.testing.assert_frame_equal(part, slice_time(full, end=cut))


def test_segmentation_scores_in_its_own_space_and_a_better_grouping_scores_higher(activity):
    task = Segmentation(build_config(SegmentationConfig, {"window": 21, "sample": 500}, "task"))
    space = task.make_targets(activity)
    assert list(space.columns) == [f"target_space_{c}" for c in
                                   ("active_rate", "follow_rate", "follow_risk", "follow_log_holding", "skill_gap")]
    rows = space.dropna()
    by_risk = (rows["target_space_follow_risk"] > rows["target_space_follow_risk"].median()).astype(float)
    scrambled = pd.Series(np.random.default_rng(0).permutation(by_risk.to_numpy()), index=rows.index)
    good = task.score(rows.assign(cluster=by_risk), 0, 0)
    bad = task.score(rows.assign(cluster=scrambled), 0, 0)
    assert good["silhouette"] > bad["silhouette"] + 0.05 and good["clusters"] == 2
    assert np.isnan(task.score(rows.assign(cluster=0.0), 0, 0)["silhouette"])  # one cluster: no silhouette


def test_the_bandits_regret_less_than_epsilon_greedy_and_random_in_the_arena():
    rows = {r["policy"]: r for r in regret_table(policies(), ArenaConfig(rounds=3000, seeds=2, n_users=60))}
    assert rows["linucb"]["cumulative_regret"] < rows["random"]["cumulative_regret"] / 2
    assert rows["thompson_bandit"]["cumulative_regret"] < rows["random"]["cumulative_regret"] / 2
    assert rows["linucb"]["cumulative_regret"] < rows["epsilon_greedy (0.1)"]["cumulative_regret"]
    assert rows["random"]["reward_rate"] < rows["linucb"]["reward_rate"]
    curve = rows["linucb"]["regret_curve"]
    assert all(b >= a for a, b in zip(curve, curve[1:]))  # pseudo-regret never goes down


# --- quality floors on the walk-forward (40 simulated users; the full size is measured in the README) -----------
def leaderboard(home, *words: str) -> pd.DataFrame:
    """``treum leaderboard`` in-process; the leaderboard.csv it wrote, indexed by model."""
    from treum.cli import main

    assert main(["leaderboard", *words]) == 0
    (path,) = (home / "runs").glob("*-leaderboard*/leaderboard.csv")
    return pd.read_csv(path).set_index("model")


def test_quality_floor_recommendation(treum_home):
    table = leaderboard(treum_home, "task=recommendation", "data=users_sim", "features=personal", "data.n_users=40",
                        "eval.bootstrap=0")
    auc = table["auc"]
    assert auc["gbm_recommender"] >= auc["signal_hit_rate"] + 0.15
    assert min(auc["linucb"], auc["thompson_bandit"]) >= auc["signal_hit_rate"] + 0.10
    assert auc["signal_hit_rate"] > auc["base_rate"]


def test_quality_floor_risk_profile_and_segmentation(treum_home):
    risk = leaderboard(treum_home, "task=risk_profile", "data=users_sim_activity", "features=behaviour",
                       "data.n_users=40", "eval.bootstrap=0")
    mae = risk["mae"]
    assert mae["risk_appetite_gbm"] < min(mae["recent_appetite"], mae["stated_tolerance"])
    assert risk.loc["risk_appetite_gbm", "spearman"] > risk.loc["stated_tolerance", "spearman"]
    for run in (treum_home / "runs").glob("*-leaderboard*"):
        run.rename(run.with_name(run.name.replace("leaderboard", "done")))
    seg = leaderboard(treum_home, "task=segmentation", "data=users_sim_activity", "features=behaviour",
                      "data.n_users=40")
    assert seg.loc["behaviour_kmeans", "silhouette"] >= seg.loc["stated_segments", "silhouette"] + 0.05
