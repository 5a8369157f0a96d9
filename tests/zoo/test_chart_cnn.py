"""The chart CNN: charts drawn where expected from bars up to t only, warm start only on extending data,
the sample sheet of run_files, and configs it refuses with a message that says what to change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from treum.commands.compose import model_config
from treum.core.errors import ConfigError
from treum.core.model import build_model
from treum.core.task import build_task
from treum.zoo import chart_cnn
from treum.zoo.chart_cnn import Bars, ChartCNNConfig, render_charts

# small enough that a fit takes a second or two on two cores
TINY = {"window": 5, "height": 16, "max_epochs": 3, "update_epochs": 1, "patience": 5, "max_train_images": 400,
        "max_valid_images": 200, "batch_size": 64, "arch_kwargs": {"channels": [8, 8, 16, 16], "stem_width": 8}}


@pytest.fixture(scope="module")
def reg(plugins):
    """The session's registry once the entry point is installed; else one with the module added by hand."""
    if "chart_cnn" in plugins.specs("models"):
        return plugins
    from treum.core.plugins import PluginSettings, create_plugin_registry

    return create_plugin_registry(PluginSettings(), extra_plugins=[("chart_cnn_dev", chart_cnn)])


@pytest.fixture(scope="module")
def frame(reg):
    """The S&P 500 index (open, high, low, close, volume), 2003-2008, with features and direction labels."""
    data = reg.dataset("sp500").load({"start": "2003-01-01", "end": "2008-12-31"})
    task = build_task(reg.task("direction"), {})
    return data.join(task.make_targets(data)), task


def _model(reg, task, name="chart_cnn", **over):
    return build_model(reg.model(name), model_config(reg, name, [], {**TINY, **over}), task)


# rendering -----------------------------------------------------------------------
THREE = {  # three bars; the highest high is bar 1's, the lowest low bar 0's
    "open_": np.array([[1.0, 2.0, 3.0]]),
    "high": np.array([[2.0, 4.0, 3.5]]),
    "low": np.array([[0.5, 1.5, 2.5]]),
    "close": np.array([[1.5, 3.0, 3.0]]),
    "volume": np.array([[4.0, 2.0, 4.0]]),
}


def test_three_bars_are_drawn_where_expected():
    img = render_charts(**THREE, height=10)
    assert img.shape == (1, 10, 9) and img.dtype == np.uint8 and set(np.unique(img)) <= {0, 255}
    on = img[0] > 0
    # price rows 0..6 (10 rows less a volume fifth of 2 and a gap row); row = round((4 - p) / 3.5 * 6)
    expected_price = np.zeros((7, 9), dtype=bool)
    expected_price[5, 0] = True  # bar 0: open 1.0 -> row 5, left column
    expected_price[3:7, 1] = True  # high 2.0 -> 3, low 0.5 -> 6, middle column
    expected_price[4, 2] = True  # close 1.5 -> 4, right column
    expected_price[3, 3] = True  # bar 1: open 2.0 -> 3
    expected_price[0:5, 4] = True  # high 4.0 (the highest: top row) .. low 1.5 -> 4
    expected_price[2, 5] = True  # close 3.0 -> 2
    expected_price[2, 6] = True  # bar 2: open 3.0 -> 2
    expected_price[1:4, 7] = True  # high 3.5 -> 1 .. low 2.5 -> 3
    expected_price[2, 8] = True  # close 3.0 -> 2
    np.testing.assert_array_equal(on[:7], expected_price)
    assert not on[7].any()  # the gap row between prices and volumes
    # volume: the bottom fifth (2 rows), scaled to the window's largest (4 -> 2 rows, 2 -> 1 row), middle columns
    expected_volume = np.zeros((2, 9), dtype=bool)
    expected_volume[:, 1] = expected_volume[:, 7] = True
    expected_volume[1, 4] = True
    np.testing.assert_array_equal(on[8:], expected_volume)


def test_the_highest_high_is_on_the_top_row_and_the_lowest_low_on_the_price_areas_bottom():
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (50, 20)), axis=1))
    high, low = close * (1 + rng.uniform(0, 0.02, close.shape)), close * (1 - rng.uniform(0, 0.02, close.shape))
    img = render_charts(close, high, low, close, rng.uniform(1, 5, close.shape), None, height=64) > 0
    assert img.shape == (50, 64, 60)
    price_rows = 64 - 64 // 5 - 1
    top_bar = high.argmax(axis=1)
    low_bar = low.argmin(axis=1)
    for i in range(50):
        assert img[i, 0, 3 * top_bar[i] + 1] and img[i, 0].sum() >= 1
        assert img[i, price_rows - 1, 3 * low_bar[i] + 1]
        assert img[i, 64 - 1, 1::3].all()  # every positive volume draws at least its bottom pixel
        assert img[i, 64 - 64 // 5:, 0::3].sum() == 0 and img[i, 64 - 64 // 5:, 2::3].sum() == 0


def test_missing_open_high_low_fall_back_to_the_close_and_a_flat_window_sits_in_the_middle():
    close = THREE["close"]
    a = render_charts(None, None, None, close, None, None, height=10, volume_area=False)
    b = render_charts(close * np.nan, close * np.nan, close * np.nan, close, None, None, height=10, volume_area=False)
    np.testing.assert_array_equal(a, b)
    on = a[0] > 0
    assert on.sum(axis=0).tolist() == [1] * 9  # one dot per column: open = high = low = close
    flat = render_charts(None, None, None, np.ones((1, 4)), None, None, height=10, volume_area=False)[0] > 0
    assert flat[(10 - 1) // 2].all() and flat.sum() == 12


def test_the_moving_average_is_a_connected_line_from_the_first_to_the_last_middle_column():
    close = np.array([[1.0, 1.0, 1.0, 5.0]])
    ma = np.array([[np.nan, 1.0, 3.0, 5.0]])
    on = render_charts(None, None, None, close, None, ma, height=20, volume_area=False)[0] > 0
    glyphs = render_charts(None, None, None, close, None, None, height=20, volume_area=False)[0] > 0
    line = on & ~glyphs
    cols = np.flatnonzero(line.any(axis=0))
    assert cols.min() >= 4 and cols.max() <= 10  # bar 1's middle column (4) to bar 3's (10)
    rows = [np.flatnonzero(on[:, c]) for c in range(4, 11)]
    for r0, r1 in zip(rows, rows[1:]):  # connected: neighbouring columns share or touch a row
        assert r0.min() <= r1.max() + 1 and r1.min() <= r0.max() + 1


def test_the_chart_at_t_uses_bars_up_to_t_only(frame):
    data, _ = frame
    cfg = ChartCNNConfig(window=20, height=32)
    ts = data.index.get_level_values("timestamp")
    cut = ts[len(ts) // 2]
    later = data.copy()
    later.loc[ts > cut, ["open", "high", "low", "close", "volume"]] *= 3.0
    a, b = Bars.of(data, cfg), Bars.of(later, cfg)
    rows = np.flatnonzero(a.ready & (ts.to_numpy()[a.order] <= cut))[-50:]
    np.testing.assert_array_equal(a.images(rows, cfg), b.images(rows, cfg))
    assert not np.array_equal(a.images(rows + 10, cfg), b.images(rows + 10, cfg))  # after the cut they differ
    # a full history: the window plus the moving average's own window
    assert a.ready.sum() == len(data) - cfg.history + 1


# the model -----------------------------------------------------------------------------
def _until(data, end):
    return data[data.index.get_level_values("timestamp") <= end]


def test_warm_start_only_when_the_training_data_strictly_extends_the_last_fit(reg, frame):
    data, task = frame
    chart_cnn.clear_warm_starts()
    first = _model(reg, task).fit(_until(data, "2006-12-31"))
    assert not first.warm_started_ and first.epochs_ == TINY["max_epochs"]
    extended = _model(reg, task).fit(_until(data, "2007-06-30"))  # same start, later end
    assert extended.warm_started_ and extended.epochs_ == TINY["update_epochs"] < first.epochs_
    # the same rows again (two seeded fits must agree): from random weights, the same answers as before
    again = _model(reg, task).fit(_until(data, "2007-06-30"))
    assert not again.warm_started_ and again.epochs_ == TINY["max_epochs"]
    same = _model(reg, task).fit(_until(data, "2006-12-31"))  # an earlier end than the kept fit
    assert not same.warm_started_
    test = data[data.index.get_level_values("timestamp") >= "2007-01-01"]
    pd.testing.assert_frame_equal(same.predict(test), first.predict(test))
    later_start = _model(reg, task).fit(data[(data.index.get_level_values("timestamp") >= "2004-01-01")
                                             & (data.index.get_level_values("timestamp") <= "2008-06-30")])
    assert not later_start.warm_started_  # a rolling window starts somewhere else: no kept fit of its key
    off = _model(reg, task, warm_start=False).fit(_until(data, "2008-06-30"))
    assert not off.warm_started_ and off.epochs_ == TINY["max_epochs"]


def test_predictions_are_probabilities_nan_before_a_full_history_and_survive_save_load(reg, frame, tmp_path):
    data, task = frame
    model = _model(reg, task, warm_start=False).fit(_until(data, "2006-12-31"))
    frame_in = data.drop(columns=[c for c in data.columns if c.startswith("target")])
    pred = model.predict(frame_in)
    history = model.config.history
    assert pred["p_up"].iloc[: history - 1].isna().all() and pred["p_up"].iloc[history - 1:].between(0, 1).all()
    start = pd.Timestamp("2008-01-01")
    part = model.predict_from(frame_in, start)
    ts = frame_in.index.get_level_values("timestamp")
    assert part["p_up"][ts < start].isna().all()
    np.testing.assert_array_equal(part["p_up"][ts >= start].to_numpy(), pred["p_up"][ts >= start].to_numpy())
    from treum.core.model import load_model

    loaded = load_model(model.save(tmp_path / "m"), reg.specs("models"), reg.specs("tasks"))
    np.testing.assert_array_equal(loaded.predict(frame_in)["p_up"].to_numpy(), pred["p_up"].to_numpy())
    assert loaded.predict_last(frame_in)["p_up"] == pytest.approx(pred["p_up"].iloc[-1], rel=1e-6)


def test_run_files_writes_a_sheet_of_sixteen_labelled_charts(reg, frame, tmp_path):
    from PIL import Image

    data, task = frame
    model = _model(reg, task, warm_start=False).fit(_until(data, "2007-12-31"))
    inputs = data.drop(columns=[c for c in data.columns if c.startswith("target")])
    block = data[data.index.get_level_values("timestamp") >= "2008-07-01"]
    rows = block[["target", "target_return"]].join(model.predict(inputs).loc[block.index])
    (path,) = model.run_files(tmp_path, inputs, rows)
    assert path.name == "chart_samples.png" and path.parent == tmp_path
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size == chart_cnn.sheet_size(16, TINY["height"], 3 * TINY["window"])
        pixels = np.asarray(img)
    assert img.size == (4 * (30 + 6) + 6, 4 * (32 + 26 + 6) + 6)  # 4 x 4 tiles of 15 x 2 by 16 x 2 pixels
    assert (pixels == 255).any() and (pixels > 40).sum() > (pixels == 255).sum()  # charts and caption text
    assert model.run_files(tmp_path, inputs, rows.assign(p_up=np.nan)) == []


def test_the_rank_model_learns_beating_the_median_and_answers_score(reg):
    data = reg.dataset("sp500_stocks").load({"start": "2010-01-01", "end": "2012-12-31"})
    data = data[data.index.get_level_values("entity").isin(["AAPL", "JNJ", "XOM", "KO"])]
    task = build_task(reg.task("cross_section"), {})
    labelled = data.join(task.make_targets(data))
    model = _model(reg, task, "chart_cnn_rank", warm_start=False, volume=False).fit(_until(labelled, "2011-12-31"))
    assert model.label_ == "target_up"
    pred = model.predict(data)
    assert list(pred.columns) == ["score"] and pred["score"].dropna().between(0, 1).all()
    assert set(pred.dropna().index.get_level_values("entity")) == {"AAPL", "JNJ", "XOM", "KO"}


# configs it refuses --------------------------------------------------------------------
def test_bad_configs_are_refused_with_what_to_change(reg, frame):
    with pytest.raises(ConfigError, match="window must be at least 2"):
        model_config(reg, "chart_cnn", [], {"window": 1})
    with pytest.raises(ConfigError, match="height must be at least 16"):
        model_config(reg, "chart_cnn", [], {"height": 8})
    with pytest.raises(ConfigError, match="pretrained"):
        model_config(reg, "chart_cnn", [], {"arch_kwargs": {"pretrained": True}})
    with pytest.raises(ConfigError, match="max_train_images"):
        model_config(reg, "chart_cnn", [], {"max_train_images": 10})
    data, task = frame
    train = _until(data, "2005-12-31")
    with pytest.raises(ConfigError, match="no model 'resnet10x'.*resnet10t"):
        _model(reg, task, arch="resnet10x").fit(train)
    with pytest.raises(ConfigError, match=r"labels horizons \[1, 5, 21\].*task.horizons"):
        _model(reg, task, horizon=3).fit(train)
    model = _model(reg, task, horizon=5, warm_start=False).fit(train)
    assert model.label_ == "target_h5"
