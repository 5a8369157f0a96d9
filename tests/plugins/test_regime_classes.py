"""The regime task's three-class labelling (bull / bear / sideways) and the regime classifier's purge."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from treum.commands import contract
from treum.commands.compose import model_config
from treum.core.data import make_panel, slice_time
from treum.core.evaluation import without_labels
from treum.core.model import build_model
from treum.core.task import build_task
from treum.plugins.tasks.regime import BEAR, BULL, SIDEWAYS, regime_metrics, trend
from treum.zoo.regime_classifier import purged

THREE = {"classes": 3, "sideways_window": 20, "sideways_band": 0.03}


def _panel(prices):
    idx = pd.bdate_range("2020-01-01", periods=len(prices))
    return make_panel(pd.DataFrame({"close": prices}, index=idx), "X")


def _path():
    # a 30% rise, 60 flat bars (a sideways bull), a 25% fall (a bear), a 30% rise
    return np.r_[np.linspace(100, 130, 40), np.full(60, 130.0) + np.sin(np.arange(60)) * 0.3,
                 np.linspace(129, 97, 40), np.linspace(98, 128, 40)]


def test_trend_is_the_least_squares_change_over_the_window():
    y = np.log(np.linspace(100, 120, 30))
    tr = trend(y, 10)
    assert np.isnan(tr[:9]).all()
    fit = np.polyfit(np.arange(10), y[5:15], 1)[0] * 9
    assert tr[14] == pytest.approx(fit)
    assert trend(np.full(30, 4.0), 10)[-1] == pytest.approx(0.0)


def test_three_classes_mark_the_flat_stretch_of_a_bull_phase_sideways_and_keep_the_bear_whole(plugins):
    task = build_task(plugins.task("regime"), THREE)
    y = task.make_targets(_panel(_path()))["target"].to_numpy()
    two = build_task(plugins.task("regime"), {})
    y2 = two.make_targets(_panel(_path()))["target"].to_numpy()
    assert task.prediction_columns() == ("p_bear", "p_sideways", "p_bull")
    assert (y[50:70] == SIDEWAYS).all()  # the flat stretch, up to its peak (where the bear begins)
    assert (y[15:25] == BULL).all()  # the rise
    assert ((y == BEAR) == (y2 == BEAR))[10:-10].all()  # bear markets are the two-class ones
    assert np.isnan(y[:10]).all() and np.isnan(y[-9:]).all() and not np.isnan(y[10:-9]).any()  # incomplete windows


def test_a_sideways_label_is_unknown_until_the_centred_window_has_passed(plugins):
    task = build_task(plugins.task("regime"), THREE)
    panel = _panel(_path())
    end = panel.index.get_level_values("timestamp")[70]
    known = task.labels_as_of(panel, end)["target"].to_numpy()
    assert np.isnan(known[-9:]).all()  # the last 9 bars' windows reach past the end
    full = task.make_targets(panel)["target"].to_numpy()[: len(known)]
    ok = ~np.isnan(known)
    assert (known[ok] == full[ok]).all()  # what was known then is what the whole sample says


def test_three_class_metrics_score_the_called_class_and_the_bear_lag():
    y = np.array([BULL, BULL, SIDEWAYS, SIDEWAYS, BEAR, BEAR, BEAR, BULL])
    called = np.array([BULL, SIDEWAYS, SIDEWAYS, SIDEWAYS, SIDEWAYS, BEAR, BEAR, BULL])
    m = regime_metrics(y, (called == BEAR).astype(float), called=called)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)  # recall of bull, sideways, bear
    assert m["detection_lag_bars"] == 1 and m["bear_markets"] == 1 and "macro_f1" in m


def test_three_class_predictions_must_sum_to_one_and_outcomes_take_three_classes(plugins):
    task = build_task(plugins.task("regime"), THREE)
    idx = _panel(np.ones(3)).index
    bad = pd.DataFrame({"p_bear": [0.2, 0.2, 0.2], "p_sideways": [0.3, 0.3, 0.3], "p_bull": [0.5, 0.5, 0.6]}, index=idx)
    assert any("sum to 1" in p for p in task.check_predictions(bad))
    values = {"p_bear": 0.2, "p_sideways": 0.5, "p_bull": 0.3}
    assert task.label(values) == "sideways"
    logged = task.log_fields(values)
    assert task.score_outcome(logged, SIDEWAYS)[0] is True
    assert task.score_outcome(logged, BEAR)[0] is False
    with pytest.raises(ValueError, match="sideways"):
        task.score_outcome(logged, 3)
    with pytest.raises(ValueError, match="1 \\(bear\\)"):
        build_task(plugins.task("regime"), {}).score_outcome(logged, 2)


@pytest.mark.parametrize("name", ["regime_classifier", "hmm_regime", "markov_regime", "ma200_rule", "majority_regime"])
def test_every_regime_model_answers_three_classes_without_look_ahead(plugins, name):
    spec = plugins.model(name)
    ex = plugins.task("regime").example
    data = plugins.dataset(ex.data).load({"start": ex.start, "end": ex.end})
    task = build_task(plugins.task("regime"), {"classes": 3})
    frame = data.join(plugins.feature_set("technical").compute(data, {})).join(task.make_targets(data))
    ts = frame.index.get_level_values("timestamp")
    train = frame[ts < "2009-01-01"].copy()
    train["target"] = task.labels_as_of(data, pd.Timestamp("2008-12-31"))["target"].reindex(train.index)
    config = model_config(plugins, name, [], contract.FAST.get(name, {}))
    model = build_model(spec, config, task).fit(train)
    inputs = without_labels(frame)
    pred = slice_time(model.predict(inputs), start="2010-01-01")
    assert list(pred.columns) == ["p_bear", "p_sideways", "p_bull"]
    assert not task.check_predictions(pred), task.check_predictions(pred)
    cut = slice_time(model.predict(slice_time(inputs, end="2011-06-30")), start="2010-01-01")
    np.testing.assert_allclose(cut.to_numpy(), slice_time(pred, end="2011-06-30").to_numpy(), atol=1e-9)


def test_the_classifier_drops_the_last_labelled_bars_of_each_instrument():
    idx = pd.MultiIndex.from_product([pd.bdate_range("2020-01-01", periods=10), ["A", "B"]],
                                     names=["timestamp", "entity"])
    data = pd.DataFrame({"target": np.r_[np.zeros(16), np.full(4, np.nan)]}, index=idx).sort_index(level="entity")
    kept = purged(data, 3)
    for entity in ("A", "B"):
        rows = kept.xs(entity, level="entity")
        assert len(rows) == 5  # 8 labelled bars, the last 3 dropped, and the unlabelled tail too
    assert purged(data, 0) is data
