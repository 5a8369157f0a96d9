"""Outcomes: exact matching of an id and its members, no wildcards, no silent overwrite, hit counts."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from treum.core.errors import NotFoundError, RegistryError
from treum.registry.schema import MLPrediction


def _rows(registry) -> dict[str, MLPrediction]:
    with registry.sessions() as s:
        return {r.prediction_id: r for r in s.execute(select(MLPrediction)).scalars()}


def _outcomes(registry) -> dict[str, float | None]:
    return {pid: r.actual_value for pid, r in _rows(registry).items()}


def test_an_outcome_updates_the_prediction_and_its_members_only(registry, log_predictions, sign_scorer):
    log_predictions("abc123", "abc123:gbm", "abc123:garch", "abc1234", "abc1234:gbm", "abc123x:gbm")
    assert registry.record_outcome("abc123", 0.012, sign_scorer, "api:ci") == 3
    assert _outcomes(registry) == {"abc123": pytest.approx(0.012), "abc123:gbm": pytest.approx(0.012),
                                   "abc123:garch": pytest.approx(0.012), "abc1234": None, "abc1234:gbm": None,
                                   "abc123x:gbm": None}


def test_the_scorer_sets_is_correct_and_the_error_per_row(registry, log_predictions, sign_scorer):
    log_predictions("p1", prediction_probability=None)
    log_predictions("p1:up", prediction_probability=0.7)
    log_predictions("p1:down", prediction_probability=0.2)
    seen = []

    def scorer(row, actual):
        seen.append((row.prediction_id, actual))
        return sign_scorer(row, actual)

    assert registry.record_outcome("p1", 0.5, scorer, "api:ci") == 3
    assert sorted(seen) == [("p1", 0.5), ("p1:down", 0.5), ("p1:up", 0.5)]
    rows = _rows(registry)
    assert (rows["p1"].is_correct, rows["p1"].prediction_error) == (None, None)
    assert rows["p1:up"].is_correct is True and rows["p1:up"].prediction_error == pytest.approx(-0.3)
    assert rows["p1:down"].is_correct is False and rows["p1:down"].prediction_error == pytest.approx(-0.8)


def test_an_outcome_is_audited_once_with_actor_id_value_and_rows(registry, log_predictions, sign_scorer):
    log_predictions("p1", "p1:a")
    registry.record_outcome("p1", -0.25, sign_scorer, "api:bob")
    (row,) = registry.audit_rows()
    assert (row.actor, row.action, row.entity_type, row.entity_id) == ("api:bob", "prediction.outcome",
                                                                       "ml_predictions", "p1")
    assert row.details == {"actual_value": -0.25, "rows": 2}
    assert registry.verify_audit().ok


@pytest.mark.parametrize("bad", ["%", "abc%", "%:gbm", "abc 123", "abc';--", "", "a" * 101, "abc/def", "abc*"])
def test_an_id_outside_the_format_is_refused(registry, log_predictions, bad, sign_scorer):
    log_predictions("abc", "abc:gbm", "abcdef")
    with pytest.raises(RegistryError, match="is not valid.*letters, digits, '-', '_' and ':' only"):
        registry.record_outcome(bad, 1.0, sign_scorer, "api:ci")
    assert set(_outcomes(registry).values()) == {None} and registry.audit_rows() == []


def test_an_id_of_100_characters_is_accepted(registry, log_predictions, sign_scorer):
    pid = "a" * 100
    log_predictions(pid)
    assert registry.record_outcome(pid, 1.0, sign_scorer, "api:ci") == 1


def test_an_underscore_is_not_a_wildcard(registry, log_predictions, sign_scorer):
    # with LIKE, 'a_c' would match 'abc' and 'a_c:%' the members of 'axc'
    log_predictions("abc", "abc:gbm", "axc:gbm", "a_c:gbm", "a_cd")
    with pytest.raises(NotFoundError, match="no logged prediction 'a_'"):
        registry.record_outcome("a_", 1.0, sign_scorer, "api:ci")
    assert registry.record_outcome("a_c", 1.0, sign_scorer, "api:ci") == 1
    assert {k for k, v in _outcomes(registry).items() if v is not None} == {"a_c:gbm"}


def test_matching_is_case_sensitive(registry, log_predictions, sign_scorer):
    # SQLite's LIKE ignores case: exact comparison does not
    log_predictions("abc", "abc:gbm")
    with pytest.raises(NotFoundError):
        registry.record_outcome("ABC", 1.0, sign_scorer, "api:ci")


def test_a_member_id_matches_that_member_only(registry, log_predictions, sign_scorer):
    log_predictions("abc", "abc:gbm", "abc:garch")
    assert registry.record_outcome("abc:gbm", 1.0, sign_scorer, "api:ci") == 1
    assert {k for k, v in _outcomes(registry).items() if v is not None} == {"abc:gbm"}


def test_an_unknown_id_is_not_found_and_writes_nothing(registry, log_predictions, sign_scorer):
    log_predictions("abc")
    with pytest.raises(NotFoundError, match="no logged prediction 'abd'"):
        registry.record_outcome("abd", 1.0, sign_scorer, "api:ci")
    assert registry.audit_rows() == []


def test_an_outcome_is_never_silently_overwritten(registry, log_predictions, sign_scorer):
    log_predictions("abc", "abc:gbm", prediction_probability=0.6)
    assert registry.record_outcome("abc", 0.01, sign_scorer, "api:ci") == 2
    audit_rows = len(registry.audit_rows())
    with pytest.raises(RegistryError, match="already has the outcome 0.01, not -0.02.*never overwritten"):
        registry.record_outcome("abc", -0.02, sign_scorer, "api:mallory")
    rows = _rows(registry)
    assert all(r.actual_value == pytest.approx(0.01) and r.is_correct is True for r in rows.values())
    # the same value again: nothing to do, nothing written
    assert registry.record_outcome("abc", 0.01, sign_scorer, "api:ci") == 0
    assert len(registry.audit_rows()) == audit_rows


def test_a_member_logged_later_gets_the_recorded_outcome_too(registry, log_predictions, sign_scorer):
    log_predictions("abc", "abc:gbm")
    registry.record_outcome("abc", 0.123456789, sign_scorer, "api:ci")
    log_predictions("abc:garch")
    # the stored value is rounded to NUMERIC(18, 8) on PostgreSQL: still the same outcome
    assert registry.record_outcome("abc", 0.123456789, sign_scorer, "api:ci") == 1
    assert registry.audit_rows()[0].details == {"actual_value": 0.123456789, "rows": 1}


def test_a_conflict_on_any_member_refuses_the_whole_outcome(registry, log_predictions, sign_scorer):
    log_predictions("abc", "abc:gbm")
    log_predictions("abc:garch", actual_value=5.0)
    with pytest.raises(RegistryError, match="'abc:garch' already has the outcome 5"):
        registry.record_outcome("abc", 1.0, sign_scorer, "api:ci")
    assert _outcomes(registry) == {"abc": None, "abc:gbm": None, "abc:garch": 5.0}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "x"])
def test_the_value_must_be_a_finite_number(registry, log_predictions, value, sign_scorer):
    log_predictions("abc")
    with pytest.raises(RegistryError, match="actual_value must be a"):
        registry.record_outcome("abc", value, sign_scorer, "api:ci")


def test_a_failing_scorer_writes_nothing(registry, log_predictions):
    log_predictions("abc", "abc:gbm")

    def scorer(row, actual):
        if row.prediction_id == "abc:gbm":
            raise ZeroDivisionError("bad scorer")
        return True, 0.0

    with pytest.raises(ZeroDivisionError):
        registry.record_outcome("abc", 1.0, scorer, "api:ci")
    assert set(_outcomes(registry).values()) == {None} and registry.audit_rows() == []


def test_hit_rate_counts_predictions_outcomes_and_hits_per_model_and_arm(registry, register, log_predictions,
                                                                        sign_scorer):
    a, b = register(payload="a"), register(payload="bb")
    log_predictions("c1", "c2", "c3", model_id=a.id, experiment_arm="control", prediction_probability=0.8)
    log_predictions("t1", "t2", model_id=b.id, experiment_arm="treatment", prediction_probability=0.8)
    log_predictions("n1", model_id=a.id, prediction_probability=0.8, inference_time_ms=9)
    log_predictions("n2", model_id=a.id, inference_time_ms=3)
    for pid, value in (("c1", 1.0), ("c2", -1.0), ("t1", 1.0), ("n1", 1.0)):
        registry.record_outcome(pid, value, sign_scorer, "api:ci")
    assert registry.hit_rate(a.id) == (5, 3, 2)
    assert registry.hit_rate(a.id, "control") == (3, 2, 1)
    assert registry.hit_rate(str(b.id), "treatment") == (2, 1, 1)
    assert registry.hit_rate(b.id, "control") == (0, 0, 0)
    assert sorted(p.prediction_id for p in registry.predictions(b.id)) == ["t1", "t2"]
    assert len(registry.predictions(a.id, limit=2)) == 2
    assert registry.inference_times(a.id) == [3, 9] and registry.inference_times(b.id) == []


def test_two_concurrent_outcomes_for_one_prediction_cannot_both_win(registry, log_predictions, sign_scorer):
    """The second writer is refused whether it waits on the row lock (PostgreSQL) or loses the update (SQLite)."""
    import threading

    from treum.registry.store import Registry

    log_predictions("abc", "abc:gbm")
    other = Registry(url=registry.url, home=registry.home)
    a_scoring, b_done = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def slow_scorer(row, actual):
        a_scoring.set()
        b_done.wait(timeout=1.0)  # PostgreSQL: B is blocked on our row lock, so this times out
        return sign_scorer(row, actual)

    def record(label, reg, value, scorer):
        try:
            results[label] = reg.record_outcome("abc", value, scorer, label)
        except RegistryError as exc:
            results[label] = exc
        finally:
            if label == "b":
                b_done.set()

    a = threading.Thread(target=record, args=("a", registry, 1.0, slow_scorer))
    a.start()
    assert a_scoring.wait(timeout=10)
    b = threading.Thread(target=record, args=("b", other, -1.0, sign_scorer))
    b.start()
    a.join(timeout=30)
    b.join(timeout=30)
    other.close()
    winners = {k: v for k, v in results.items() if v == 2}
    losers = {k: v for k, v in results.items() if isinstance(v, RegistryError)}
    assert len(winners) == 1 and len(losers) == 1, results
    value = 1.0 if "a" in winners else -1.0
    assert set(_outcomes(registry).values()) == {value}
    assert [r.actor for r in registry.audit_rows()] == list(winners)
