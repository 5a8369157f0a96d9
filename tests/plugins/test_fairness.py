"""Fairness over user segments (``treum.plugins.fairness.segments``) on decisions whose gaps are known.

Every figure is built into the synthetic decisions by hand: selection rates, true- and false-positive
rates and query quality per group, so the differences and verdicts can be checked exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from treum.core.config import build_config
from treum.core.errors import ConfigError
from treum.plugins.fairness.segments import SEGMENTS, SegmentFairnessConfig, check


def group_rows(group: str, n_pos: int, pos_selected: int, n_neg: int, neg_selected: int,
               quality: float = 0.5, start: int = 0) -> pd.DataFrame:
    """``n_pos`` followed rows (``pos_selected`` of them recommended) and ``n_neg`` others; quality on every row."""
    n = n_pos + n_neg
    selected = [1.0] * pos_selected + [0.0] * (n_pos - pos_selected) + [1.0] * neg_selected + [0.0] * (n_neg - neg_selected)
    positive = [1.0] * n_pos + [0.0] * n_neg
    idx = pd.MultiIndex.from_arrays([pd.bdate_range("2024-01-01", periods=n), [f"{group}{start + i}:s" for i in range(n)]],
                                    names=["timestamp", "entity"])
    return pd.DataFrame({"selected": selected, "positive": positive, "quality": quality, "grp": group}, index=idx)


def split(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(decisions, segments) as the report passes them: the segments are columns of the data's rows."""
    segments = rows[["grp"]].assign(other="x")
    return rows[["selected", "positive", "quality"]], segments


def config(**values) -> SegmentFairnessConfig:
    return build_config(SegmentFairnessConfig, {"segments": ["grp"], **values}, "fairness")


def by_check(result: dict) -> dict[str, dict]:
    return {c["check"]: c for c in result["checks"]}


@pytest.fixture
def parity_gap() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Group A: 50% of 1,000 rows recommended; group B: 20% of 1,000."""
    a = group_rows("A", 500, 250, 500, 250)
    b = group_rows("B", 500, 100, 500, 100)
    return split(pd.concat([a, b]))


def test_demographic_parity_difference_is_the_gap_in_selection_rates(parity_gap):
    decisions, segments = parity_gap
    strict = by_check(check(decisions, segments, config(demographic_parity_difference=0.1)))
    dp = strict["demographic_parity_difference"]
    assert dp["value"] == pytest.approx(0.3) and dp["passed"] is False and dp["threshold"] == 0.1 and dp["groups"] == 2
    loose = check(decisions, segments, config(demographic_parity_difference=0.4))
    assert by_check(loose)["demographic_parity_difference"]["passed"] is True
    assert check(decisions, segments, config(demographic_parity_difference=0.1))["passed"] is False
    groups = {g["group"]: g for g in check(decisions, segments, config())["by_group"]["grp"]}
    assert groups["A"]["selection_rate"] == pytest.approx(0.5) and groups["B"]["selection_rate"] == pytest.approx(0.2)
    assert groups["A"]["n"] == groups["B"]["n"] == 1000


def test_equalized_odds_is_the_larger_of_the_tpr_and_fpr_gaps():
    # A: TPR 80/100 = 0.8, FPR 30/100 = 0.3; B: TPR 60/100 = 0.6, FPR 20/100 = 0.2 -> max(0.2, 0.1) = 0.2
    rows = pd.concat([group_rows("A", 100, 80, 100, 30), group_rows("B", 100, 60, 100, 20)])
    result = check(*split(rows), config(min_group_rows=50, equalized_odds_difference=0.25))
    groups = {g["group"]: g for g in result["by_group"]["grp"]}
    assert (groups["A"]["true_positive_rate"], groups["A"]["false_positive_rate"]) == pytest.approx((0.8, 0.3))
    assert (groups["B"]["true_positive_rate"], groups["B"]["false_positive_rate"]) == pytest.approx((0.6, 0.2))
    eo = by_check(result)["equalized_odds_difference"]
    assert eo["value"] == pytest.approx(max(abs(0.8 - 0.6), abs(0.3 - 0.2))) and eo["passed"] is True
    # the false-positive gap dominates when it is the larger: A's FPR 0.55 -> max(0.2, 0.35)
    rows = pd.concat([group_rows("A", 100, 80, 100, 55), group_rows("B", 100, 60, 100, 20)])
    eo = by_check(check(*split(rows), config(min_group_rows=50, equalized_odds_difference=0.25)))
    assert eo["equalized_odds_difference"]["value"] == pytest.approx(0.35)
    assert eo["equalized_odds_difference"]["passed"] is False


def test_quality_difference_is_the_gap_in_mean_query_quality():
    # quality sits on one row per query in real decisions (NaN elsewhere): the mean skips the others
    a = group_rows("A", 100, 50, 100, 50, quality=np.nan)
    a.iloc[::4, a.columns.get_loc("quality")] = 0.70
    b = group_rows("B", 100, 50, 100, 50, quality=np.nan)
    b.iloc[::2, b.columns.get_loc("quality")] = [0.5, 0.7] * 50
    result = check(*split(pd.concat([a, b])), config(quality_difference=0.05))
    q = by_check(result)["quality_difference"]
    assert q["value"] == pytest.approx(0.1) and q["passed"] is False
    groups = {g["group"]: g["quality"] for g in result["by_group"]["grp"]}
    assert groups == pytest.approx({"A": 0.7, "B": 0.6})


def test_a_group_below_min_group_rows_is_shown_but_not_judged(parity_gap):
    decisions, segments = parity_gap
    tiny = group_rows("C", 5, 5, 5, 5, start=10_000)  # 10 rows, every one recommended: selection rate 1.0
    d_c, s_c = split(tiny)
    result = check(pd.concat([decisions, d_c]), pd.concat([segments, s_c]), config(min_group_rows=100))
    groups = {g["group"]: g for g in result["by_group"]["grp"]}
    assert groups["C"]["judged"] is False and groups["C"]["n"] == 10 and groups["C"]["selection_rate"] == 1.0
    assert groups["A"]["judged"] is True and groups["B"]["judged"] is True
    dp = by_check(result)["demographic_parity_difference"]
    assert dp["value"] == pytest.approx(0.3) and dp["groups"] == 2  # not 0.8: C is left out
    assert result["rows"] == 2010
    # with the bar lowered C is judged, and the gap is its
    lowered = by_check(check(pd.concat([decisions, d_c]), pd.concat([segments, s_c]), config(min_group_rows=10)))
    assert lowered["demographic_parity_difference"]["value"] == pytest.approx(0.8)


def test_one_judged_group_leaves_nothing_to_compare(parity_gap):
    decisions, segments = parity_gap
    result = check(decisions, segments, config(min_group_rows=1001))
    assert all(c["value"] is None and c["passed"] is None and c["groups"] == 0 for c in result["checks"])
    assert result["passed"] is None  # nothing could be judged: not a pass


def test_a_null_threshold_reports_the_value_without_a_verdict(parity_gap):
    decisions, segments = parity_gap
    result = check(decisions, segments, config(demographic_parity_difference=None))
    dp = by_check(result)["demographic_parity_difference"]
    assert dp["value"] == pytest.approx(0.3) and dp["threshold"] is None and dp["passed"] is None
    # the verdict comes from the judged checks: A and B select half and a fifth of both kinds, so EO is 0.3 too
    assert by_check(result)["equalized_odds_difference"]["passed"] is False and result["passed"] is False


def test_overall_verdict_fails_when_any_judged_check_fails(parity_gap):
    decisions, segments = parity_gap
    # A and B: TPR 0.5 vs 0.2, FPR 0.5 vs 0.2 (each group selects half/a fifth of both kinds): EO 0.3
    everything_null = config(demographic_parity_difference=None, equalized_odds_difference=None, quality_difference=None)
    result = check(decisions, segments, everything_null)
    assert result["passed"] is None and all(c["passed"] is None for c in result["checks"])
    only_eo = check(decisions, segments, dataclasses.replace(everything_null, equalized_odds_difference=0.1))
    assert only_eo["passed"] is False
    assert by_check(only_eo)["equalized_odds_difference"]["value"] == pytest.approx(0.3)


def test_every_configured_segment_gets_three_checks(parity_gap):
    decisions, segments = parity_gap
    result = check(decisions, segments, config(segments=["grp", "other"]))
    assert [(c["segment"], c["check"]) for c in result["checks"]] == [
        (s, c) for s in ("grp", "other")
        for c in ("demographic_parity_difference", "equalized_odds_difference", "quality_difference")]
    # 'other' has one group only: shown, nothing to compare
    assert [g["group"] for g in result["by_group"]["other"]] == ["x"]
    assert all(c["value"] is None for c in result["checks"] if c["segment"] == "other")


def test_a_missing_segment_column_names_the_columns_there_are(parity_gap):
    decisions, segments = parity_gap
    with pytest.raises(ValueError, match=r"fairness segments \['region'\] are not columns of the data "
                                         r"\(it has \['grp', 'other'\]\); set fairness\.segments"):
        check(decisions, segments, config(segments=["grp", "region"]))


@pytest.mark.parametrize(("values", "message"), [
    ({"demographic_parity_difference": 1.5}, "demographic_parity_difference must be in [0, 1] or null, got 1.5"),
    ({"equalized_odds_difference": -0.1}, "equalized_odds_difference must be in [0, 1] or null, got -0.1"),
    ({"quality_difference": 2}, "quality_difference must be in [0, 1] or null, got 2"),
    ({"segments": []}, "segments must name at least one column"),
    ({"min_group_rows": 0}, "min_group_rows and min_group_outcomes must be at least 1, got 0"),
])
def test_config_errors_name_the_key(values, message):
    with pytest.raises(ConfigError, match=r"^fairness: " + message.replace("[", r"\[").replace("]", r"\]")):
        build_config(SegmentFairnessConfig, values, "fairness")


def test_the_shipped_config_is_the_dataclasss_defaults_and_overrides_are_checked(plugins):
    from treum.commands.report import fairness_config

    spec = plugins.specs("fairness_checks")["segments"]
    assert spec.config_cls is SegmentFairnessConfig
    shipped = fairness_config(plugins, "segments", [])
    assert shipped == SegmentFairnessConfig() and shipped.segments == SEGMENTS
    tuned = fairness_config(plugins, "segments", ["fairness.min_group_rows=50", "fairness.quality_difference=null"])
    assert tuned.min_group_rows == 50 and tuned.quality_difference is None
    with pytest.raises(ConfigError, match="demographic_parity_difference must be in"):
        fairness_config(plugins, "segments", ["fairness.demographic_parity_difference=1.5"])


def test_on_real_ranking_decisions_every_row_is_judged_by_its_users_segments(plugins):
    """users_sim rows, a random ranking: each decision joined to its own user's profile; groups add up."""
    from treum.core.task import build_task
    from treum.plugins.datasets.users_sim import load

    panel = load({"n_users": 60, "n_days": 120})
    task = build_task(plugins.task("ranking"), {})
    oos = task.make_targets(panel).assign(score=np.random.default_rng(0).normal(size=len(panel)))
    decisions = task.decisions(oos)
    result = check(decisions, panel, SegmentFairnessConfig(min_group_rows=50))
    assert result["rows"] == len(decisions)
    for seg in SEGMENTS:
        groups = result["by_group"][seg]
        assert sum(g["n"] for g in groups) == len(decisions)
        assert {g["group"] for g in groups} == set(panel[seg].unique())
    # a random order recommends alike everywhere: a gap in selection rates is small
    dp = [c for c in result["checks"] if c["check"] == "demographic_parity_difference" and c["value"] is not None]
    assert dp and all(c["value"] < 0.1 for c in dp)


def test_equalised_odds_leaves_out_a_group_without_enough_positives():
    """fairlearn counts a group with no positives as a true-positive rate of 0: that is no evidence of unfairness."""
    idx = pd.MultiIndex.from_arrays([pd.date_range("2024-01-01", periods=600), [f"u{i}:s" for i in range(600)]],
                                    names=("timestamp", "entity"))
    rng = np.random.default_rng(0)
    positive = np.r_[rng.random(400) < 0.5, np.zeros(200, dtype=bool)]  # group C never has a positive
    selected = np.r_[positive[:400], rng.random(200) < 0.1]
    decisions = pd.DataFrame({"selected": selected.astype(float), "positive": positive.astype(float), "quality": np.nan},
                             index=idx)
    segments = pd.DataFrame({"region": ["A"] * 200 + ["B"] * 200 + ["C"] * 200}, index=idx)
    eo = by_check(check(decisions, segments, config(segments=["region"], min_group_rows=10)))["equalized_odds_difference"]
    assert eo["value"] == pytest.approx(0.0) and eo["passed"] is True  # A and B are alike; C is not compared
