"""The built-in task plugins: labels (ties, Lunde-Timmermann dating, labels as known per fold),
metrics, served labels and outcome scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from treum.core.data import make_panel, slice_time
from treum.core.errors import ConfigError
from treum.core.estimators import JsonStateModel, NoConfig
from treum.core.task import build_task
from treum.plugins.tasks.direction import direction_target
from treum.plugins.tasks.regime import BEAR, BULL, lunde_timmermann, regime_metrics


def _panel(prices):
    idx = pd.bdate_range("2020-01-01", periods=len(prices))
    return make_panel(pd.DataFrame({"close": prices}, index=idx), "X")


def test_direction_ties_are_dropped_not_called_down():
    panel = _panel([10.0, 10.0, 11.0, 10.5, 10.5])
    y = direction_target(panel, 1)
    assert np.isnan(y.iloc[0])  # 10 -> 10 is a tie
    assert y.iloc[1] == 1 and y.iloc[2] == 0
    assert np.isnan(y.iloc[3]) and np.isnan(y.iloc[4])  # tie, then no future
    assert direction_target(panel, 1, ties="down").iloc[0] == 0


def test_lunde_timmermann_dates_a_peak_to_trough_bear():
    # up 30%, down 25% (a bear), up 30% (a bull)
    path = np.r_[np.linspace(100, 130, 30), np.linspace(129, 97.5, 30), np.linspace(98, 127, 30)]
    labels = lunde_timmermann(pd.Series(path))
    peak, trough = int(np.argmax(path[:60])), 30 + int(np.argmin(path[30:60]))
    assert (labels.iloc[: peak + 1] == BULL).all()
    assert (labels.iloc[peak + 1 : trough + 1] == BEAR).all()
    assert (labels.iloc[trough + 1 :] == BULL).all()


def test_a_fall_short_of_twenty_percent_is_no_bear():
    path = np.r_[np.linspace(100, 130, 30), np.linspace(129, 110, 20), np.linspace(111, 140, 30)]
    assert (lunde_timmermann(pd.Series(path)) == BULL).all()


def test_unconfirmed_bars_are_unlabelled_when_only_confirmed_phases_count():
    # a bull, a 25% fall that is a confirmed bear, then a 10% rebound: the bars after the trough are undecided
    path = np.r_[np.linspace(100, 130, 30), np.linspace(129, 97.5, 30), np.linspace(98, 107, 10)]
    labels = lunde_timmermann(pd.Series(path), confirmed_only=True)
    trough = 30 + int(np.argmin(path[30:60]))
    assert (labels.iloc[trough + 1 :].isna()).all()
    assert labels.iloc[trough] == BEAR and labels.iloc[5] == BULL
    assert np.isnan(lunde_timmermann(pd.Series(np.linspace(100, 110, 20)), confirmed_only=True)).all()


def test_the_2008_crash_is_a_bear_market_on_real_data(plugins):
    index = plugins.dataset("sp500_index").load({})
    labels = lunde_timmermann(index["close"].droplevel("entity"))
    assert labels.loc["2008-10-01":"2008-11-20"].eq(BEAR).all()
    assert labels.loc["2013"].eq(BULL).all()
    assert labels.loc["2020-03-01":"2020-03-20"].eq(BEAR).all()


class _Recorder(JsonStateModel):
    """Records the labels each fold's fit receives (train, valid); predicts a constant."""

    seen: list = []

    def fit(self, data, valid=None):
        _Recorder.seen.append((data["target"].copy(), None if valid is None else valid["target"].copy()))
        self.state_ = {}

    def predict(self, data):
        return pd.DataFrame({"p_bear": 0.5}, index=data.index)


def test_every_regime_label_a_fold_trained_on_is_unchanged_when_later_prices_are_removed(plugins):
    """Run the real walk-forward of `treum leaderboard task=regime data=sp500_index` with a model that records
    what it is fitted on; then, per fold, cut the prices at the fold's last fitted bar, date them again, and
    find every label the fold used unchanged. With the whole sample's dating (what runs used before), the
    labels of the bars before the 2007 peak and other turns were decided by prices inside later test blocks."""
    from treum.commands import run as stages
    from treum.commands.compose import compose_leaderboard
    from treum.core.specs import ModelSpec

    cfg = compose_leaderboard(["task=regime", "data=sp500_index", "eval.bootstrap=0"], plugins)
    prep = stages.prepare(cfg, plugins)
    spec = ModelSpec(name="recorder", family="test", task="regime", capabilities=frozenset({"sequential"}),
                     config_cls=NoConfig, factory=_Recorder)
    _Recorder.seen = []
    result = stages.evaluate("recorder", spec, NoConfig(), prep)
    assert len(_Recorder.seen) == len(result.folds) > 10
    full = prep.frame["target"]
    decided_later = 0
    for fold, (train, valid) in zip(result.folds, _Recorder.seen):
        assert valid is not None and valid.index.get_level_values("timestamp").max() <= fold.fit_end < fold.test[0]
        for used, end in ((train, fold.train[1]), (valid, fold.valid[1])):
            assert used.index.get_level_values("timestamp").max() <= end
            again = prep.task.labels_as_of(slice_time(prep.panel, end=end), end)["target"]
            pd.testing.assert_series_equal(used, again.reindex(used.index), check_names=False)
            decided_later += int((used.isna() & full.reindex(used.index).notna()).sum())
    assert decided_later > 0, "the whole sample's dating labels bars that were undecided at the folds' ends"


def test_regime_detection_lag_counts_bars_to_first_bear_call():
    y = np.array([0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0])
    p = np.array([0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0], dtype=float)
    m = regime_metrics(y, p)
    assert m["bear_markets"] == 2 and m["bears_missed"] == 1 and m["detection_lag_bars"] == 2 and m["n"] == 11


def test_volatility_columns_and_headline_follow_the_horizons(plugins):
    task = build_task(plugins.task("volatility"), {"horizons": [1, 5]})
    assert task.prediction_columns() == ("var_h1", "var_h5")
    assert "qlike_h5" in task.headline() and "qlike_h21" not in task.headline()
    assert list(task.make_targets(_panel([100.0 + i for i in range(10)])).columns) == ["target_var_h1", "target_var_h5"]


@pytest.mark.parametrize("values,error", [({"horizons": "abc"}, "task.horizons: expected a list"),
                                          ({"horizons": [1, 0]}, "horizons must be positive"),
                                          ({"horizonz": [1]}, "task.horizonz: unknown key for task 'volatility'; did you mean 'horizons'")])
def test_task_configs_are_validated(plugins, values, error):
    with pytest.raises(ConfigError, match=error.replace("[", r"\[").replace("'", "'")):
        build_task(plugins.task("volatility"), values)


def test_a_model_scored_on_fewer_rows_than_a_baseline_is_never_validated(plugins):
    task = build_task(plugins.task("direction"))
    assert task.beats({"auc": 0.60, "n": 2010}, [{"auc": 0.51, "n": 2010}])
    assert not task.beats({"auc": 0.60, "n": 1500}, [{"auc": 0.51, "n": 2010}])
    assert not task.beats({"auc": 0.50, "n": 2010}, [{"auc": 0.51, "n": 2010}])


def test_outcomes_are_scored_by_each_task(plugins):
    direction = build_task(plugins.task("direction"))
    regime = build_task(plugins.task("regime"))
    vol = build_task(plugins.task("volatility"))
    up = direction.log_fields({"p_up": 0.7})
    assert direction.score_outcome(up, 1.2)[0] is True and direction.score_outcome(up, -0.4)[0] is False
    assert direction.score_outcome(up, 0.0) == (None, None)  # a tie, dropped as in training
    bear = regime.log_fields({"p_bear": 0.9})
    assert bear["prediction_class"] == "bear"
    assert regime.score_outcome(bear, 1)[0] is True  # a correct bear call counts as correct
    with pytest.raises(ValueError, match="1 \\(bear\\) or 0 \\(bull\\)"):
        regime.score_outcome(bear, -2.5)
    logged = vol.log_fields({"var_h1": 1.5, "var_h21": 30.0})
    assert vol.score_outcome(logged, 1.0) == (None, pytest.approx(0.5))
