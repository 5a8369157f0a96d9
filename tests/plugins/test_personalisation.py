"""Personalisation on SIMULATED users: the simulator, the ``personal`` features, queries and NDCG, the ranking
task and its models.

The simulator is checked against its own generating process (offer rules, the heterogeneity it builds in,
outcomes unknown past the last day); the features by truncation and by flipping one row's feedback; NDCG
against hand computations and sklearn; the models by quality floors on the walk-forward.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import ndcg_score

from treum.core.config import build_config
from treum.core.data import validate_panel
from treum.core.errors import ConfigError
from treum.core.estimators import NoConfig
from treum.core.queries import query_keys, query_metrics, split_entity
from treum.core.task import build_task
from treum.core.user_sim import ASSET_CLASSES, REGION_TASTE, SIGNALS, UserSimConfig, describe, simulate, users_table
from treum.plugins.datasets import users_sim
from treum.plugins.features.personal import compute as personal
from treum.plugins.tasks.ranking import Popularity, RandomOrder, RandomOrderConfig, Ranking, relevance

SMALL = {"n_users": 30, "n_days": 120}


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    """30 simulated users over 120 days, through the data set's own load."""
    return users_sim.load(SMALL)


@pytest.fixture(scope="module")
def small_features(small) -> pd.DataFrame:
    return personal(small, {})


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """The default simulation (200 users x 780 days), as the documentation describes it."""
    return simulate(UserSimConfig())


def ranking(**values):
    return build_task(Ranking.spec, values)


# --- the simulator -----------------------------------------------------------------------------------


def test_the_simulator_is_deterministic_per_seed_and_differs_across_seeds():
    cfg = UserSimConfig(n_users=20, n_days=60, seed=3)
    first, again = simulate(cfg), simulate(UserSimConfig(n_users=20, n_days=60, seed=3))
    pd.testing.assert_frame_equal(first, again)
    other = simulate(UserSimConfig(n_users=20, n_days=60, seed=4))
    assert not first.index.equals(other.index) or not first.equals(other)
    both = first.index.intersection(other.index)
    assert (first.loc[both, "confidence"] != other.loc[both, "confidence"]).mean() > 0.9


def test_offer_rules_hold_and_shape_every_slate(rows):
    eu_crypto = (rows["region"] == "EU") & (rows["asset_class"] == "crypto")
    novice_options = (rows["experience"] == "novice") & (rows["asset_class"] == "options")
    assert not eu_crypto.any() and not novice_options.any()
    # not vacuous: others are offered those signals, and EU users and novices get everything else
    assert ((rows["region"] != "EU") & (rows["asset_class"] == "crypto")).any()
    assert ((rows["experience"] != "novice") & (rows["asset_class"] == "options")).any()
    # an active user sees every signal offered to them: 8, less one per rule that applies
    slate = rows.groupby([rows.index.get_level_values("timestamp"), "user"]).agg(
        n=("signal", "size"), region=("region", "first"), experience=("experience", "first"))
    expected = len(SIGNALS) - (slate["region"] == "EU").astype(int) - (slate["experience"] == "novice").astype(int)
    assert (slate["n"] == expected).all() and set(slate["n"]) == {6, 7, 8}


def test_experts_win_more_often_than_novices_by_a_clear_margin(rows):
    stats = describe(rows)["experience"]
    assert stats["expert"]["win_rate"] > stats["intermediate"]["win_rate"] > stats["novice"]["win_rate"]
    assert stats["expert"]["win_rate"] - stats["novice"]["win_rate"] > 0.08
    # the hidden traits behind it
    users = users_table(UserSimConfig()).groupby("experience")[["_skill", "_attention", "_noise"]].mean()
    assert users.loc["expert", "_skill"] > users.loc["novice", "_skill"] + 0.5
    assert users.loc["expert", "_noise"] < users.loc["novice", "_noise"]


def test_follow_rates_follow_each_regions_taste(rows):
    follow = rows.pivot_table(index="region", columns="asset_class", values="target_followed", aggfunc="mean")
    checked = 0
    for i, asset in enumerate(ASSET_CLASSES):
        tastes = {region: taste[i] for region, taste in REGION_TASTE.items()}
        best = max(tastes.values())
        fans = [r for r, v in tastes.items() if v == best]
        if len(fans) != 1:
            continue  # a tie (fx: EU and LATAM) says nothing about which one follows more
        assert follow[asset].idxmax() == fans[0], (asset, follow[asset].to_dict())
        checked += 1
    assert checked == 5
    # and the gap is not a rounding matter: NA follows equity signals far more than APAC does
    assert follow.loc["NA", "equity"] - follow.loc["APAC", "equity"] > 0.03


def test_outcomes_due_after_the_last_day_are_unknown(rows):
    ts = rows.index.get_level_values("timestamp")
    assert (pd.DatetimeIndex(rows["outcome_known_at"]) == ts + pd.offsets.BDay(5)).all()
    late = rows["outcome_known_at"] > ts.max()
    followed = rows["target_followed"] == 1
    assert (late & followed).sum() > 100  # there are follows near the end ...
    assert rows.loc[late, "target_outcome"].isna().all()  # ... whose outcome is not known yet
    known = rows[~late]
    assert known.loc[known["target_followed"] == 1, "target_outcome"].notna().all()
    assert known.loc[known["target_followed"] == 0, "target_outcome"].isna().all()


def test_outcomes_due_after_a_bounded_end_are_unknown_too():
    panel = users_sim.load({**SMALL, "end": "2022-04-29"})
    last = panel.index.get_level_values("timestamp").max()
    assert last == pd.Timestamp("2022-04-29")
    late = panel["outcome_known_at"] > last
    assert late.any() and panel.loc[late, "target_outcome"].isna().all()


def test_the_data_set_is_a_valid_panel_unique_per_day_and_pair(small, plugins):
    assert list(small.index.names) == ["timestamp", "entity"]
    assert small.index.is_unique and small.index.is_monotonic_increasing
    validate_panel(small, "users_sim", required=users_sim.REQUIRED)
    entity = small.index.get_level_values("entity")
    assert (entity == small["user"] + ":" + small["signal"]).all()
    spec = plugins.dataset("users_sim")
    assert "SIMULATED" in spec.caveat and "SIMULATED" in spec.description
    assert plugins.dataset("users_sim").load(SMALL).equals(small)


def test_simulator_config_is_validated_naming_the_key():
    with pytest.raises(ConfigError, match="n_users must be at least 10, got 5"):
        users_sim.load({"n_users": 5})
    with pytest.raises(ConfigError, match="n_days must be at least 60"):
        build_config(UserSimConfig, {"n_days": 20}, "data")


# --- the personal features ---------------------------------------------------------------------------


def _days(panel: pd.DataFrame) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.unique(panel.index.get_level_values("timestamp").values))


@pytest.mark.parametrize("cut", [10, 45, 90])
def test_no_look_ahead_features_up_to_t_do_not_change_with_later_rows(small, small_features, cut):
    t = _days(small)[cut]
    ts = small.index.get_level_values("timestamp")
    early = small[ts <= t]
    pd.testing.assert_frame_equal(personal(early, {}), small_features[ts <= t])


@pytest.mark.parametrize("cut", [20, 75])
def test_features_at_t_need_only_what_is_known_at_t(small, small_features, cut):
    """Up to t, with every fact not known at t blanked: the day's own follows and outcomes known later."""
    t = _days(small)[cut]
    ts = small.index.get_level_values("timestamp")
    known = small[ts <= t].copy()
    known.loc[known.index.get_level_values("timestamp") == t, "target_followed"] = np.nan
    known.loc[known["outcome_known_at"] > t, "target_outcome"] = np.nan
    pd.testing.assert_frame_equal(personal(known, {}), small_features[ts <= t])


def _later_rows_of(panel: pd.DataFrame, key: tuple, since: pd.Timestamp) -> pd.Index:
    ts, entity = panel.index.get_level_values("timestamp"), panel.index.get_level_values("entity")
    return panel.index[(entity == key[1]) & (ts >= since)]


def test_a_rows_outcome_reaches_features_only_when_it_is_known(small, small_features):
    ts = small.index.get_level_values("timestamp")
    followed = small[(small["target_followed"] == 1) & (small["target_outcome"] != 0)
                     & small["target_outcome"].notna()]
    # a follow whose user:signal is shown again on the very day its outcome is known (so it is the last one known)
    pairs = set(small.index)
    key = next(k for k, r in followed.iterrows() if (r["outcome_known_at"], k[1]) in pairs)
    known_at = small.loc[key, "outcome_known_at"]
    flipped = small.copy()
    flipped.loc[key, "target_outcome"] = -flipped.loc[key, "target_outcome"]  # a win becomes a loss or back
    after = personal(flipped, {})
    before_known = ts < known_at
    pd.testing.assert_frame_equal(after[before_known], small_features[before_known])
    pd.testing.assert_series_equal(after.loc[key], small_features.loc[key])
    nxt = (known_at, key[1])
    assert after.loc[nxt, "f_user_signal_win_rate"] != small_features.loc[nxt, "f_user_signal_win_rate"]
    assert after.loc[nxt, "f_user_signal_last_result"] == -small_features.loc[nxt, "f_user_signal_last_result"] != 0


def test_a_rows_follow_reaches_features_from_the_next_day_only(small, small_features):
    """A follow is an act seen when it is made: it counts from the next day; its outcome not until known."""
    ts = small.index.get_level_values("timestamp")
    ignored = small[small["target_followed"] == 0]
    key = next(k for k in ignored.index if len(_later_rows_of(small, k, k[0] + pd.Timedelta(days=1))) > 0)
    flipped = small.copy()
    flipped.loc[key, "target_followed"] = 1.0  # followed, outcome still unknown (NaN)
    after = personal(flipped, {})
    same_day_or_before = ts <= key[0]
    pd.testing.assert_frame_equal(after[same_day_or_before], small_features[same_day_or_before])
    nxt = _later_rows_of(small, key, key[0] + pd.Timedelta(days=1))[0]
    assert after.loc[nxt, "f_user_signal_follow_rate"] > small_features.loc[nxt, "f_user_signal_follow_rate"]
    # no outcome, so nothing about wins moved anywhere
    pd.testing.assert_series_equal(after["f_user_signal_win_rate"], small_features["f_user_signal_win_rate"])


def tiny_panel() -> pd.DataFrame:
    """Two users, two signals, six days; outcomes known 2 business days later (the last one not yet)."""
    days = pd.bdate_range("2024-01-01", periods=6)  # Mon 1 .. Fri 5, Mon 8
    # (day, user, signal, followed, outcome)
    events = [
        (0, "a", "x", 1, 1.0), (0, "a", "y", 0, None), (0, "b", "x", 1, 0.5),
        (1, "a", "x", 0, None), (1, "a", "y", 1, 2.0), (1, "b", "x", 0, None),
        (2, "a", "x", 1, -1.0), (2, "b", "x", 1, 0.3),
        (3, "a", "x", 0, None), (3, "a", "y", 0, None), (3, "b", "x", 0, None),
        (4, "a", "x", 1, None), (4, "b", "x", 0, None),  # a's follow on day 4 resolves after the last day
        (5, "a", "x", 0, None), (5, "b", "x", 0, None),
    ]
    frame = pd.DataFrame(events, columns=["d", "user", "signal", "target_followed", "target_outcome"])
    frame["target_followed"] = frame["target_followed"].astype(float)
    frame["target_outcome"] = frame["target_outcome"].astype(float)
    ts = days[frame["d"]]
    frame["outcome_known_at"] = ts + pd.offsets.BDay(2)
    frame = frame.assign(confidence=0.1, risk_level=1.0, holding_bars=5.0, asset_class="equity",
                         risk_tolerance="moderate", experience="novice", age_band="30-44", horizon="medium",
                         account_usd=5000.0, region="EU")
    frame.index = pd.MultiIndex.from_arrays([ts, frame["user"] + ":" + frame["signal"]], names=["timestamp", "entity"])
    return frame.drop(columns="d").sort_index()


def test_history_counts_match_a_hand_computation():
    panel = tiny_panel()
    f = personal(panel, {})  # priors: strength 5, follow 0.1, win 0.5
    d = pd.bdate_range("2024-01-01", periods=6)

    def rate(hits: float, n: float, prior: float) -> float:
        return (hits + 5 * prior) / (n + 5)

    ax = {i: f.loc[(d[i], "a:x")] for i in range(6)}
    # a:x shown on days 0-5, followed on 0, 2, 4; outcomes +1.0 known day 2, -1.0 known day 4, day 4's never
    assert [r["f_user_signal_shown_log"] for r in ax.values()] == pytest.approx([math.log1p(i) for i in range(6)])
    assert [r["f_user_signal_follow_rate"] for r in ax.values()] == pytest.approx(
        [rate(0, 0, .1), rate(1, 1, .1), rate(1, 2, .1), rate(2, 3, .1), rate(2, 4, .1), rate(3, 5, .1)])
    assert [r["f_user_signal_win_rate"] for r in ax.values()] == pytest.approx(
        [rate(0, 0, .5), rate(0, 0, .5), rate(1, 1, .5), rate(1, 1, .5), rate(1, 2, .5), rate(1, 2, .5)])
    assert [r["f_user_signal_last_result"] for r in ax.values()] == [0, 0, 1, 1, -1, -1]
    # user a, every signal: shown 2, 2, 1, 2, 1 rows on days 0-4, followed 1, 1, 1, 0, 1
    # outcomes: a:x +1 (known day 2), a:y +2 (known day 3), a:x -1 (known day 4)
    assert f.loc[(d[3], "a:x"), "f_user_follow_rate"] == pytest.approx(rate(3, 5, .1))
    assert f.loc[(d[3], "a:y"), "f_user_win_rate"] == pytest.approx(rate(2, 2, .5))
    assert f.loc[(d[4], "a:x"), "f_user_follow_rate"] == pytest.approx(rate(3, 7, .1))
    assert f.loc[(d[4], "a:x"), "f_user_win_rate"] == pytest.approx(rate(2, 3, .5))
    # signal x, every user: shown 2 rows a day, followed 2, 0, 2, 0, 1; outcomes +1, +0.5 (day 2), -1, +0.3 (day 4)
    assert f.loc[(d[2], "b:x"), "f_signal_follow_rate"] == pytest.approx(rate(2, 4, .1))
    assert f.loc[(d[2], "b:x"), "f_signal_win_rate"] == pytest.approx(rate(2, 2, .5))
    assert f.loc[(d[4], "b:x"), "f_signal_win_rate"] == pytest.approx(rate(3, 4, .5))
    assert f.loc[(d[5], "b:x"), "f_signal_follow_rate"] == pytest.approx(rate(5, 10, .1))
    # the profile and the signal: known before anyone acts
    assert f.loc[(d[0], "a:x"), "f_user_experience"] == 0 and f.loc[(d[0], "a:x"), "f_region_EU"] == 1
    assert f.loc[(d[0], "a:x"), "f_risk_gap"] == pytest.approx(1.0 - 1.5 * 1)


def test_personal_features_refuse_rows_without_users_and_signals(small):
    with pytest.raises(ValueError, match=r"personal features need .*'user'.*data=users_sim"):
        personal(small.drop(columns=["user"]), {})


# --- queries and NDCG ---------------------------------------------------------------------------------


def query_frame(rows: list[tuple[str, str, float, float]]) -> pd.DataFrame:
    """(day, user:item, score, target) rows."""
    frame = pd.DataFrame(rows, columns=["day", "entity", "score", "target"])
    frame.index = pd.MultiIndex.from_arrays([pd.DatetimeIndex(frame.pop("day")), frame.pop("entity")],
                                            names=["timestamp", "entity"])
    return frame


def test_ndcg_hit_and_mrr_match_a_hand_computation_and_sklearn():
    frame = query_frame([
        ("2024-01-02", "u1:a", 0.9, 0), ("2024-01-02", "u1:b", 0.8, 2), ("2024-01-02", "u1:c", 0.7, 1),
        ("2024-01-02", "u1:d", 0.1, 0),
        ("2024-01-02", "u2:a", 0.2, 1), ("2024-01-02", "u2:b", 0.5, 0),
        ("2024-01-03", "u1:a", 0.3, 0), ("2024-01-03", "u1:b", 0.2, 0),  # nothing followed: left out
        ("2024-01-03", "u2:a", 3.0, 2), ("2024-01-03", "u2:b", 2.0, 1), ("2024-01-03", "u2:c", 1.0, 0),
    ])
    out = query_metrics(frame, k=3)
    assert len(out) == 3 and (pd.Timestamp("2024-01-03"), "u1") not in out.index
    q1 = out.loc[(pd.Timestamp("2024-01-02"), "u1")]
    # order a, b, c, d; gains 2^rel - 1 = 0, 3, 1, 0; the ideal order b, c
    dcg, idcg = 3 / math.log2(3) + 1 / math.log2(4), 3 / math.log2(2) + 1 / math.log2(3)
    assert q1["ndcg"] == pytest.approx(dcg / idcg) and q1["hit1"] == 0 and q1["rr"] == pytest.approx(1 / 2)
    assert q1["ndcg"] == pytest.approx(ndcg_score([[0, 3, 1, 0]], [[0.9, 0.8, 0.7, 0.1]], k=3))
    q2 = out.loc[(pd.Timestamp("2024-01-02"), "u2")]
    assert q2["ndcg"] == pytest.approx(1 / math.log2(3)) and q2["rr"] == pytest.approx(1 / 2) and q2["hit1"] == 0
    q3 = out.loc[(pd.Timestamp("2024-01-03"), "u2")]
    assert q3["ndcg"] == pytest.approx(1.0) and q3["hit1"] == 1 and q3["rr"] == 1
    # the cutoff matters: at k=1 the first query earns nothing
    assert query_metrics(frame, k=1).loc[(pd.Timestamp("2024-01-02"), "u1"), "ndcg"] == 0


def random_queries(n_queries: int, n_items: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2024-01-01", periods=n_queries // 4 + 1)
    rows = [(days[q // 4], f"u{q % 4}:s{i}", rng.normal(), float(rng.choice([0, 0, 0, 1, 2])))
            for q in range(n_queries) for i in range(n_items)]
    return query_frame(rows)


def test_ndcg_agrees_with_sklearn_on_many_random_queries():
    frame = random_queries(60, 7, seed=1)
    out = query_metrics(frame, k=5)
    for (day, user), row in out.iterrows():
        q = frame[(frame.index.get_level_values("timestamp") == day)
                  & frame.index.get_level_values("entity").str.startswith(f"{user}:")]
        gains = 2.0 ** q["target"].to_numpy() - 1
        assert row["ndcg"] == pytest.approx(ndcg_score([gains], [q["score"].to_numpy()], k=5))


def test_the_perfect_order_scores_one():
    frame = random_queries(40, 6, seed=2)
    frame["score"] = frame["target"] + np.random.default_rng(0).random(len(frame)) * 0.1
    out = query_metrics(frame, k=5)
    assert len(out) > 0 and np.allclose(out["ndcg"], 1.0) and (out["hit1"] == 1).all() and (out["rr"] == 1).all()


def test_ties_are_broken_by_a_seeded_shuffle_not_by_row_order():
    # one relevant item per query, always the first row: a stable sort of equal scores would rank it first
    rows = [("2024-01-02", f"u{q:03d}:{'a' if i == 0 else f's{i}'}", 1.0, 1.0 if i == 0 else 0.0)
            for q in range(400) for i in range(8)]
    frame = query_frame(rows)
    out = query_metrics(frame, k=5)
    expected = sum(1 / math.log2(r + 1) for r in range(1, 6)) / 8  # a random rank among 8, cut at 5
    assert abs(out["ndcg"].mean() - expected) < 0.06 and out["ndcg"].mean() < 0.6
    assert abs(out["hit1"].mean() - 1 / 8) < 0.06
    pd.testing.assert_frame_equal(out, query_metrics(frame, k=5))  # seeded
    assert not out["ndcg"].equals(query_metrics(frame, k=5, seed=1)["ndcg"])


def test_an_entity_without_a_user_and_item_is_a_clear_error():
    frame = query_frame([("2024-01-02", "u1:a", 1.0, 1.0), ("2024-01-02", "SPX", 0.5, 0.0)])
    with pytest.raises(ValueError, match=r"entity 'SPX' has no ':'"):
        query_metrics(frame)
    with pytest.raises(ValueError, match=r"<user>:<item>"):
        query_keys(frame.index)
    user, item = split_entity(frame.index[:1])
    assert list(user) == ["u1"] and list(item) == ["a"]
    # the item may itself hold a colon: only the first one splits
    assert list(split_entity(query_frame([("2024-01-02", "u1:fx:carry", 1.0, 1.0)]).index)[1]) == ["fx:carry"]


# --- the ranking task -----------------------------------------------------------------------------


def test_relevance_is_0_ignored_1_lost_2_won_and_unknown_while_pending(small):
    rel = relevance(small)
    followed, outcome = small["target_followed"] == 1, small["target_outcome"]
    assert (rel[~followed] == 0).all()
    assert (rel[followed & (outcome > 0)] == 2).all() and (rel[followed & (outcome <= 0)] == 1).all()
    assert rel[followed & outcome.isna()].isna().all() and (followed & outcome.isna()).any()


def test_resolve_bars_shorter_than_the_datas_outcome_delay_is_refused(small):
    with pytest.raises(ValueError, match=r"task\.resolve_bars=5"):
        ranking(resolve_bars=3).make_targets(small)
    ranking(resolve_bars=5).make_targets(small)  # as long as the delay: accepted
    slow = users_sim.load({**SMALL, "resolve_bars": 8})
    with pytest.raises(ValueError, match=r"known up to 8 bars after their row, but task\.resolve_bars is 5; "
                                         r"set task\.resolve_bars=8"):
        ranking().make_targets(slow)


def test_ranking_refuses_rows_without_feedback_or_queries(small):
    with pytest.raises(ValueError, match=r"feedback columns \['target_outcome'\]"):
        ranking().make_targets(small.drop(columns=["target_outcome"]))


def scored(small: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    targets = ranking().make_targets(small)
    return pd.DataFrame({"score": np.random.default_rng(seed).normal(size=len(small))}, index=small.index).join(targets)


def test_decisions_select_exactly_top_k_per_query(small):
    task = ranking(top_k=3)
    oos = scored(small)
    dec = task.decisions(oos)
    sub = oos.dropna()
    assert dec.index.equals(sub.index)
    query, _ = query_keys(sub.index)
    sizes = pd.Series(query).value_counts().sort_index()
    chosen = pd.Series(dec["selected"].to_numpy()).groupby(query).sum()
    assert (chosen == np.minimum(sizes, 3)).all() and (sizes > 3).any()
    # the selected ones are the best scored of their query
    worst_selected = pd.Series(np.where(dec["selected"] == 1, sub["score"], np.inf)).groupby(query).min()
    best_left = pd.Series(np.where(dec["selected"] == 0, sub["score"], -np.inf)).groupby(query).max()
    assert (worst_selected > best_left).all()
    assert ((dec["positive"] == 1) == (sub["target"] >= 1)).all()
    # quality: the query's NDCG, on one row per query that has a relevant item
    per_query = query_metrics(sub, k=5)
    assert dec["quality"].notna().sum() == len(per_query)
    assert sorted(dec["quality"].dropna()) == pytest.approx(sorted(per_query["ndcg"]))


def test_compare_is_positive_for_a_better_ranking(small):
    task = ranking()
    labelled = ranking().make_targets(small)
    perfect = labelled.assign(score=labelled["target"])
    popularity = Popularity(NoConfig())
    popularity.fit(small.join(labelled).iloc[: len(small) // 2])
    pop = popularity.predict(small).join(labelled)
    better, worse = task.compare(perfect, pop), task.compare(pop, perfect)
    assert better["ndcg_at_5_vs_ref"] > 0.2 and worse["ndcg_at_5_vs_ref"] == pytest.approx(-better["ndcg_at_5_vs_ref"])
    assert better["p_vs_ref"] < 0.01
    assert task.compare(pop, pop)["ndcg_at_5_vs_ref"] == 0


def test_popularity_scores_each_items_mean_relevance_and_random_order_is_seeded(small):
    labelled = small.join(ranking().make_targets(small))
    pop = Popularity(NoConfig())
    pop.fit(labelled)
    means = labelled.groupby("signal")["target"].mean()
    pred = pop.predict(labelled)["score"]
    assert np.allclose(pred.to_numpy(), labelled["signal"].map(means).to_numpy())
    rnd = RandomOrder(RandomOrderConfig(seed=3))
    rnd.fit(labelled)
    first = rnd.predict(labelled)["score"]
    assert first.equals(rnd.predict(labelled.iloc[::-1])["score"].sort_index())  # by the row's key, not its place
    other = RandomOrder(RandomOrderConfig(seed=4))
    other.fit(labelled)
    assert not first.equals(other.predict(labelled)["score"])


# --- the models: quality floors on the walk-forward ------------------------------------------------------


def run_table(command: str, run_args: list[str], home: Path) -> pd.DataFrame:
    """``treum COMMAND ARGS`` in-process; the leaderboard.csv it wrote (``write_table``), indexed by model."""
    from treum.cli import main

    assert main([command, *run_args]) == 0
    (path,) = (home / "runs").glob(f"*-{command}*/leaderboard.csv")
    return pd.read_csv(path).set_index("model")


def test_reduced_quality_floor_lambdarank_beats_popularity_beats_random(treum_home):
    """40 simulated users over the default 780 days, through the real prepare path and walk-forward.

    One LightGBM thread: the same trees (deterministic), and no slowdown on a busy shared machine.
    """
    table = run_table("evaluate", ["model=ltr_lambdarank", "data=users_sim", "features=personal", "data.n_users=40",
                                   "eval.bootstrap=0", "model.num_threads=1"], treum_home)
    assert set(table.index) == {"ltr_lambdarank", "popularity", "random_order"}
    ndcg = table["ndcg_at_5"]
    assert ndcg["ltr_lambdarank"] >= ndcg["popularity"] + 0.10
    assert ndcg["popularity"] > ndcg["random_order"] + 0.03
    assert table.loc["ltr_lambdarank", "ndcg_at_5_vs_ref"] > 0.10 and table.loc["ltr_lambdarank", "p_vs_ref"] < 0.01
    assert (table["n"] == table["n"].max()).all() and (table["empty"] == 0).all()  # all scored on the same rows


@pytest.mark.slow
def test_full_size_quality_floor(treum_home):
    """The shipped configuration (200 users, 780 days) as `treum leaderboard` runs it, in a tmp TREUM_HOME
    (the autouse ``treum_home`` fixture sets the variable); about 80 s."""
    table = run_table("leaderboard", ["task=ranking", "data=users_sim", "features=personal"], treum_home)
    assert set(table.index) == {"ltr_lambdarank", "signal_weighting", "popularity", "random_order"}
    ndcg = table["ndcg"]
    assert ndcg["ltr_lambdarank"] >= ndcg["popularity"] + 0.10
    assert ndcg["signal_weighting"] > ndcg["popularity"]
    assert ndcg["popularity"] > ndcg["random_order"]
    assert table.loc["ltr_lambdarank", "ndcg_at_5_ci_low"] > table.loc["popularity", "ndcg_at_5_ci_high"]
