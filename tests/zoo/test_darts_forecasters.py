"""darts N-BEATS and TFT on the forecast task: windows, scaling, quantile order, artifacts, errors.

Small fits on the real quarterly macro panel (three entities) with short windows and few epochs;
the contract tests (tests/zoo/test_contract.py) cover round trips, seeds and look-ahead on daily data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from treum.core.config import build_spec_config
from treum.core.data import slice_time
from treum.core.errors import ConfigError, TreumError
from treum.core.model import build_model, load_model
from treum.core.task import build_task

WINDOW = 8
SMALL = {"input_chunk_length": WINDOW, "n_epochs": 2, "seed": 0}
HORIZONS = [1, 2, 4]


@pytest.fixture(scope="module")
def macro(plugins):
    task = build_task(plugins.task("forecast"), {"change": "plain", "horizons": HORIZONS, "scored_horizon": 4})
    panel = plugins.dataset("macro").load({})
    return task, panel.join(task.make_targets(panel))


def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    ts = frame.index.get_level_values("timestamp")
    return frame[ts <= pd.Timestamp("1979-12-31")], frame[(ts >= pd.Timestamp("1981-01-01")) & (ts <= pd.Timestamp("1989-12-31"))]


def _fit(plugins, name: str, task, frame: pd.DataFrame, **extra):
    spec = plugins.model(name)
    model = build_model(spec, build_spec_config(spec, {**SMALL, **extra}), task)
    train, valid = _split(frame)
    return model.fit(train, valid)


def _inputs(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in frame.columns if c.startswith("target")])


@pytest.fixture(scope="module", params=[("nbeats", "level"), ("tft", "level"), ("nbeats", "changes")],
                ids=["nbeats", "tft", "nbeats-changes"])
def fitted(request, plugins, macro):
    task, frame = macro
    name, inputs = request.param
    model = _fit(plugins, name, task, frame, inputs=inputs)
    return model, task, frame, model.predict(_inputs(frame))


def test_every_row_is_answered_once_the_window_is_full_and_never_before(fitted):
    model, task, frame, pred = fitted
    assert pred.index.equals(frame.index)
    assert list(pred.columns) == list(task.prediction_columns())
    # a window of levels needs WINDOW bars; a window of trailing h-bar changes h more
    first = WINDOW - 1 + (max(HORIZONS) if model.config.inputs == "changes" else 0)
    for entity, rows in pred.groupby(level="entity"):
        filled = rows.notna().all(axis=1).to_numpy()
        assert not filled[:first].any(), f"{entity}: answered before its first full window"
        assert filled[first:].all(), f"{entity}: a row with a full window is empty"
    last = model.predict_last(_inputs(frame).xs("inflation", level="entity", drop_level=False))
    np.testing.assert_allclose(last.to_numpy(), pred.xs("inflation", level="entity").iloc[-1].to_numpy(), rtol=1e-12)


def test_quantiles_never_cross_and_the_interval_is_not_empty(fitted):
    model, task, frame, pred = fitted
    assert task.check_predictions(pred.dropna()) == []
    for h in HORIZONS:
        assert (pred[f"q90_h{h}"] - pred[f"q10_h{h}"]).median() > 0, f"an 80% interval of width 0 at h{h}"


def test_predictions_at_t_ignore_everything_after_t(fitted):
    """Scaling is fixed at fit: later values (even scaled tenfold) change no earlier forecast."""
    model, task, frame, pred = fitted
    inputs = _inputs(frame)
    ts = inputs.index.get_level_values("timestamp")
    cut = pd.Timestamp("1995-12-31")
    changed = inputs.copy()
    changed.loc[ts > cut, "close"] *= 10
    again = model.predict(changed)
    before = ts <= cut
    pd.testing.assert_frame_equal(again[before], pred[before], rtol=1e-9, atol=1e-12)
    assert not np.allclose(again[~before].dropna().to_numpy(), pred[~before].dropna().to_numpy())


def test_the_scaler_comes_from_the_training_rows_only(plugins, macro):
    task, frame = macro
    model = _fit(plugins, "nbeats", task, frame)
    train, valid = _split(frame)
    for entity, rows in train.groupby(level="entity"):
        y = rows["close"].to_numpy(dtype=float)
        assert model.scaler_[entity]["level"] == pytest.approx([y.mean(), y.std()])
        assert model.scaler_[entity]["change"] == pytest.approx([np.std(y[h:] - y[:-h]) for h in HORIZONS])
    # the valid rows drive early stopping, never the scaling
    loud = valid.copy()
    loud["close"] *= 1000
    spec = plugins.model("nbeats")
    other = build_model(spec, build_spec_config(spec, SMALL), task).fit(train, loud)
    assert other.scaler_ == model.scaler_


def test_a_level_shift_of_an_entity_leaves_its_forecast_changes_unchanged(plugins, macro):
    """Per-entity standardisation: the network sees the same inputs after y + c, so the changes agree."""
    task, frame = macro
    shifted = frame.copy()
    shifted["close"] += 50.0
    a = _fit(plugins, "nbeats", task, frame).predict(_inputs(frame))
    b = _fit(plugins, "nbeats", task, shifted).predict(_inputs(shifted))
    np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), rtol=1e-3, atol=1e-3)


def test_each_horizon_reads_its_own_step_of_the_network_output(plugins, macro):
    """inputs=level: q_h{h} is output step h-1 less the last scaled level, times the entity's level scale."""
    task, frame = macro
    model = _fit(plugins, "nbeats", task, frame)
    steps = model.output_length_

    def known(windows, covariates):  # step s: the last scaled level + (s + 1) * (1, 0, -1): crossed on purpose
        bump = np.arange(1, steps + 1)[:, None] * np.array([1.0, 0.0, -1.0])[None, :]
        return windows[:, -1, 0][:, None, None, None] + bump[None, :, None, :]

    model._forward = known
    pred = model.predict(_inputs(frame)).dropna()
    for (_, entity), row in pred.iloc[[0, -1]].iterrows():
        scale = model.scaler_[entity]["level"][1]
        for h in HORIZONS:
            assert row[[f"q10_h{h}", f"q50_h{h}", f"q90_h{h}"]].tolist() == pytest.approx([-h * scale, 0.0, h * scale])


def test_with_changes_each_horizon_reads_its_own_component_at_its_own_step(plugins, macro):
    """inputs=changes: q_h{h} is the trailing h-bar change's component, h - 1 steps on, times its scale."""
    task, frame = macro
    model = _fit(plugins, "nbeats", task, frame, inputs="changes")
    steps, k = model.output_length_, len(HORIZONS)

    def known(windows, covariates):  # step s, component j: (s + 1 + 100 j) * (1, 0, -1)
        code = np.arange(1, steps + 1)[:, None] + 100 * np.arange(k)[None, :]
        return np.broadcast_to(code[None, :, :, None] * np.array([1.0, 0.0, -1.0]), (len(windows), steps, k, 3))

    model._forward = known
    pred = model.predict(_inputs(frame)).dropna()
    (_, entity), row = next(pred.iloc[[-1]].iterrows())
    for j, h in enumerate(HORIZONS):
        scale = model.scaler_[entity]["change"][j]
        value = (h + 100 * j) * scale
        assert row[[f"q10_h{h}", f"q50_h{h}", f"q90_h{h}"]].tolist() == pytest.approx([-value, 0.0, value])


def test_the_artifact_is_safetensors_and_json_and_predicts_the_same(tmp_path, plugins, fitted):
    model, task, frame, pred = fitted
    path = model.save(tmp_path / "m")
    names = {p.name for p in Path(path).iterdir()}
    assert names == {"config.json", "task.json", "manifest.json", "weights.safetensors", "darts_state.json"}
    state = json.loads((path / "darts_state.json").read_text())
    assert state["input_chunk_length"] == WINDOW and state["output_chunk_length"] == max(HORIZONS)
    assert set(state["scaler"]) == {"gdp_growth", "inflation", "unemployment"}
    loaded = load_model(path, plugins.specs("models"), plugins.specs("tasks"))
    pd.testing.assert_frame_equal(loaded.predict(_inputs(frame)), pred, rtol=0, atol=0)


def test_an_entity_without_training_statistics_is_refused(fitted):
    model, task, frame, pred = fitted
    other = _inputs(frame).rename(index={"inflation": "cpi"}, level="entity")
    with pytest.raises(TreumError, match="'cpi'"):
        model.predict(other)


def test_training_series_shorter_than_window_plus_horizon_name_the_fix(plugins, macro):
    task, frame = macro
    spec = plugins.model("nbeats")
    model = build_model(spec, build_spec_config(spec, {**SMALL, "input_chunk_length": 200}), task)
    with pytest.raises(TreumError, match="input_chunk_length"):
        model.fit(slice_time(frame, end=pd.Timestamp("1984-12-31")))


def test_the_default_window_is_the_longest_horizon(plugins, macro):
    task, _ = macro
    spec = plugins.model("tft")
    model = build_model(spec, build_spec_config(spec, {}), task)
    assert model.window() == max(HORIZONS)


@pytest.mark.parametrize(
    ("name", "values", "message"),
    [
        ("tft", {"hidden_size": 10, "num_attention_heads": 4}, "divisible"),
        ("nbeats", {"input_chunk_length": 1}, "at least 2"),
        ("nbeats", {"layer_widths": 0}, "layer_widths"),
        ("tft", {"n_epochs": 0}, "n_epochs"),
        ("nbeats", {"level_covariate": True}, "inputs=changes"),
        ("tft", {"inputs": "diffs"}, "level"),
    ],
)
def test_bad_configs_are_refused_with_the_reason(plugins, name, values, message):
    with pytest.raises(ConfigError, match=message):
        build_spec_config(plugins.model(name), values)
