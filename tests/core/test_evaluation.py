"""Walk-forward folds never train on what they test; metrics behave as documented."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from treum.core.data import Segments
from treum.core.errors import ConfigError
from treum.core.evaluation import WalkForwardConfig, final_fold, make_folds, walk_forward
from treum.core.metrics import block_bootstrap_ci, diebold_mariano, qlike

SEG = Segments.from_config({"train": ["2000-01-01", "2007-12-31"], "valid": ["2008-01-01", "2008-12-31"],
                            "test": ["2009-01-01", "2011-12-31"]})
TS = pd.bdate_range("2000-01-03", "2011-12-30")


def _pos(ts):
    return TS.get_loc(ts)


@pytest.mark.parametrize("purge,embargo", [(1, 0), (21, 5)])
def test_folds_leave_purge_and_embargo_before_each_block(purge, embargo):
    cfg = WalkForwardConfig(refit_every=250, embargo=embargo)
    folds = make_folds(TS, SEG, cfg, purge)
    assert folds[0].test[0] == pd.Timestamp("2009-01-01")
    assert folds[-1].test[1] == pd.Timestamp("2011-12-30")
    for f in folds:
        assert _pos(f.test[0]) - _pos(f.valid[1]) == purge + embargo + 1
        assert _pos(f.valid[0]) - _pos(f.train[1]) == purge + 1  # labels of train never reach valid
        assert f.train[0] == pd.Timestamp("2000-01-03")  # expanding
    # blocks tile the test segment without gaps or overlap
    for a, b in zip(folds, folds[1:]):
        assert _pos(b.test[0]) == _pos(a.test[1]) + 1
        assert b.train[1] > a.train[1]


def test_rolling_window_keeps_its_length():
    cfg = WalkForwardConfig(refit_every=250, window="rolling", window_bars=500)
    folds = make_folds(TS, SEG, cfg, purge=1)
    assert all(_pos(f.train[1]) - _pos(f.train[0]) + 1 == 500 for f in folds)


def test_too_little_training_data_is_an_error():
    seg = Segments.from_config({"train": ["2008-11-01", "2008-12-31"], "test": ["2009-01-01", "2009-12-31"]})
    with pytest.raises(ConfigError, match="would train on"):
        make_folds(TS, seg, WalkForwardConfig(), purge=21)


def test_final_fold_ends_at_the_test_segment_with_the_purge():
    fold = final_fold(TS, SEG, WalkForwardConfig(), purge=21)
    assert _pos(pd.Timestamp("2011-12-30")) - _pos(fold.valid[1]) == 21


class _Recorder:
    """A model that remembers the data it was given, to check what the loop shows it."""

    seen: list = []

    def __init__(self):
        self.fit_span = None

    def fit(self, data, valid=None):
        ts = data.index.get_level_values("timestamp")
        _Recorder.seen.append((ts.min(), ts.max(), valid.index.get_level_values("timestamp").max()))
        return self

    def predict(self, data):
        return pd.DataFrame({"p_up": np.full(len(data), 0.5)}, index=data.index)


def test_walk_forward_fits_only_on_the_past_and_predicts_each_test_bar_once():
    idx = pd.MultiIndex.from_arrays([TS, ["X"] * len(TS)], names=["timestamp", "entity"])
    frame = pd.DataFrame({"close": np.linspace(1, 2, len(TS))}, index=idx)
    folds = make_folds(TS, SEG, WalkForwardConfig(refit_every=100), purge=5)
    _Recorder.seen = []
    res = walk_forward("rec", _Recorder, frame, folds, sequential=True)
    assert len(_Recorder.seen) == len(folds)
    for (_, hi, vhi), fold in zip(_Recorder.seen, folds):
        assert hi < fold.test[0] and vhi < fold.test[0]
    pred_ts = res.predictions.index.get_level_values("timestamp")
    assert pred_ts.min() == pd.Timestamp("2009-01-01") and pred_ts.is_unique
    assert len(res.predictions) == ((TS >= "2009-01-01") & (TS <= "2011-12-31")).sum()


class _LabelReader:
    """Predicts by reading the label column: walk_forward must not hand labels to predict."""

    def __init__(self):
        self.columns_seen = []

    def fit(self, data, valid=None):
        return self

    def predict(self, data):
        _LabelReader.columns_seen = list(data.columns)
        return pd.DataFrame({"p": data["target"]}, index=data.index)


def test_predict_never_sees_the_label_columns():
    idx = pd.MultiIndex.from_arrays([TS, ["X"] * len(TS)], names=["timestamp", "entity"])
    frame = pd.DataFrame({"close": np.linspace(1, 2, len(TS)), "f_x": 1.0, "target": 1.0, "target_h5": 0.0}, index=idx)
    folds = make_folds(TS, SEG, WalkForwardConfig(refit_every=400), purge=5)
    with pytest.raises(KeyError, match="target"):
        walk_forward("cheat", _LabelReader, frame, folds, sequential=True)
    assert _LabelReader.columns_seen == ["close", "f_x"]


def test_qlike_is_minimised_by_the_true_variance():
    rng = np.random.default_rng(0)
    true_var = rng.uniform(0.5, 3.0, 20000)
    rv = true_var * rng.chisquare(1, size=true_var.size)
    assert qlike(rv, true_var).mean() < qlike(rv, true_var * 1.3).mean()
    assert qlike(rv, true_var).mean() < qlike(rv, true_var * 0.7).mean()


def test_diebold_mariano_sign_and_power():
    rng = np.random.default_rng(1)
    base = rng.normal(size=2000) ** 2
    better, worse = base, base + 0.2 + rng.normal(scale=0.1, size=2000)
    stat, p = diebold_mariano(better, worse)
    assert stat < -5 and p < 1e-6
    stat2, p2 = diebold_mariano(base, base + rng.normal(scale=0.01, size=2000))
    assert p2 > 0.01


def test_block_bootstrap_interval_covers_the_estimate():
    rng = np.random.default_rng(2)
    x = rng.normal(loc=1.0, size=1000)
    lo, hi = block_bootstrap_ci(lambda i: float(x[i].mean()), len(x), 300)
    assert lo < x.mean() < hi and hi - lo < 0.3
