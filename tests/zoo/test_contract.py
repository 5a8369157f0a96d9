"""The contract every registered model keeps, parametrised over the plugin registry.

Data, label columns and range checks come from each model's task spec (its
``example``), so a third-party model of a third-party task is checked the same
way. fit returns the fitted model; predict answers every row with the task's
columns, in range; a save/load round trip gives the same predictions; a changed
artifact is refused; two fits with one seed agree; declared capabilities hold;
predictions at t do not change when data after t is removed.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from treum.commands.compose import model_config
from treum.core.data import slice_time
from treum.core.errors import ArtifactIntegrityError
from treum.core.model import build_model, load_model
from treum.core.plugins import PluginSettings, create_plugin_registry
from treum.core.task import build_task

_REG = create_plugin_registry(PluginSettings())
MODELS = sorted(_REG.specs("models"))
# smaller settings so that the contract runs in seconds; quality floors use the shipped configs
FAST = {"ts_transformer": {"max_epochs": 2, "d_model": 16, "window": 16}, "markov_regime": {"search_reps": 1}}
MULTI_ASSET = [m for m in MODELS if "multi_asset" in _REG.model(m).capabilities and _REG.task(_REG.model(m).task).example.panel]


def task_of(spec):
    task_spec = _REG.task(spec.task)
    return build_task(task_spec, dict(task_spec.example.config))


def example_frame(spec, panel: bool = False) -> pd.DataFrame:
    """The task's example data with features and the task's labels."""
    ex = _REG.task(spec.task).example
    data = _REG.dataset(ex.panel if panel else ex.data).load({"start": ex.start, "end": ex.end})
    if panel and ex.entities:
        data = data[data.index.get_level_values("entity").isin(ex.entities)]
    feats = _REG.feature_set("technical").compute(data, {})
    return data.join(feats).join(task_of(spec).make_targets(data))


_FRAMES: dict = {}


def frame_for(spec):
    key = spec.task
    if key not in _FRAMES:
        _FRAMES[key] = example_frame(spec)
    return _FRAMES[key]


def _split(frame):
    ts = frame.index.get_level_values("timestamp")
    end = ts.max()
    train = frame[ts < end - pd.DateOffset(years=2, days=40)]
    valid = frame[(ts >= end - pd.DateOffset(years=2)) & (ts < end - pd.DateOffset(years=1, days=40))]
    return train, valid, end - pd.DateOffset(years=1)


def _fit_predict(spec, frame):
    train, valid, test_start = _split(frame)
    task = task_of(spec)
    if task.label_horizon() is None:  # labels decided after the fact: as known at the fit's end
        known = task.labels_as_of(frame, valid.index.get_level_values("timestamp").max())
        train, valid = train.copy(), valid.copy()
        for col in known.columns:
            train[col], valid[col] = known[col].reindex(train.index), known[col].reindex(valid.index)
    config = model_config(_REG, spec.name, [], FAST.get(spec.name))
    model = build_model(spec, config, task)
    assert model.fit(train, valid) is model
    return model, slice_time(model.predict(frame), start=test_start)


@pytest.fixture(scope="module", params=MODELS)
def fitted(request):
    spec = _REG.model(request.param)
    frame = frame_for(spec)
    model, pred = _fit_predict(spec, frame)
    return spec, model, pred, frame


def test_predictions_have_the_task_columns_in_range_on_every_row(fitted):
    spec, model, pred, frame = fitted
    task = task_of(spec)
    assert model.fitted
    full = model.predict(frame)
    assert full.index.equals(frame.index), "predict answers every row of its input, in order"
    assert task.check_predictions(pred) == [], f"{spec.name}: {task.check_predictions(pred)}"


def test_the_range_check_catches_bad_predictions(fitted):
    spec, _, pred, _ = fitted
    task = task_of(spec)
    col = task.prediction_columns()[0]
    broken = pred.copy()
    broken.iloc[0, broken.columns.get_loc(col)] = np.nan
    assert any(col in p for p in task.check_predictions(broken))
    lo, hi = task.column_ranges().get(col, (-np.inf, np.inf))
    if np.isfinite(hi) or np.isfinite(lo):
        broken = pred.copy()
        broken.iloc[0, broken.columns.get_loc(col)] = hi + 1 if np.isfinite(hi) else lo - 1
        assert any("outside" in p for p in task.check_predictions(broken))


def test_save_load_round_trip_gives_the_same_predictions(fitted, tmp_path):
    spec, model, pred, frame = fitted
    path = model.save(tmp_path / "m")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["model"] == spec.name and manifest["files"]
    loaded = load_model(path, _REG.specs("models"), _REG.specs("tasks"))
    assert loaded.task is not None and loaded.task.config_dict() == model.task.config_dict()
    again = slice_time(loaded.predict(frame), start=pred.index.get_level_values("timestamp").min())
    np.testing.assert_allclose(again.to_numpy(dtype=float), pred.to_numpy(dtype=float), rtol=1e-6, atol=1e-9)


def test_a_changed_artifact_is_refused(fitted, tmp_path):
    spec, model, _, _ = fitted
    path = model.save(tmp_path / "m")
    victim = sorted(p for p in path.iterdir() if p.name != "manifest.json")[0]
    victim.write_bytes(victim.read_bytes() + b" ")
    with pytest.raises(ArtifactIntegrityError, match=victim.name):
        load_model(path, _REG.specs("models"), _REG.specs("tasks"))


def test_two_fits_with_one_seed_agree(fitted):
    spec, _, pred, frame = fitted
    _, pred2 = _fit_predict(spec, frame)
    np.testing.assert_allclose(pred2.to_numpy(dtype=float), pred.to_numpy(dtype=float), rtol=1e-6, atol=1e-9)


def test_non_sequential_models_ignore_context(fitted):
    spec, model, pred, frame = fitted
    if "sequential" in spec.capabilities:
        pytest.skip(f"{spec.name} declares 'sequential': it reads the rows before each prediction")
    only_test = model.predict(slice_time(frame, start=pred.index.get_level_values("timestamp").min()))
    np.testing.assert_allclose(only_test.to_numpy(dtype=float), pred.to_numpy(dtype=float))


def test_declared_capabilities_hold(fitted):
    spec, model, pred, _ = fitted
    caps = spec.capabilities
    if "native_importance" in caps:
        imp = model.feature_importance()
        assert np.isclose(imp.sum(), 1.0) and (imp >= 0).all() and imp.index.str.startswith("f_").all()
    else:
        with pytest.raises(NotImplementedError):
            model.feature_importance()
    if "multi_horizon" in caps:
        assert len(pred.columns) >= 2, f"{spec.name} declares multi_horizon but predicts {list(pred.columns)}"
    if "probabilistic" in caps and not spec.baseline:
        col = task_of(spec).prediction_columns()[0]
        assert pred[col].nunique() > 1


@pytest.mark.parametrize("name", MULTI_ASSET)
def test_multi_asset_models_fit_and_predict_every_entity(name):
    """Every model that declares multi_asset, of any task and any plugin, on the task's example panel."""
    spec = _REG.model(name)
    frame = example_frame(spec, panel=True)
    _, pred = _fit_predict(spec, frame)
    entities = set(_REG.task(spec.task).example.entities)
    assert set(pred.index.get_level_values("entity")) == entities
    assert task_of(spec).check_predictions(pred) == []


def test_predictions_at_t_use_data_up_to_t_only(fitted):
    """Cut the data inside the test year and predict again: no earlier prediction may change.

    For the Markov-switching model this is the proof that it answers with filtered
    probabilities, not smoothed ones; for GARCH and the transformer, that their
    recursions and windows look backwards only.
    """
    spec, model, pred, frame = fitted
    test_ts = pred.index.get_level_values("timestamp")
    cut = test_ts[len(test_ts) // 2]
    truncated = model.predict(slice_time(frame, end=cut))
    before = slice_time(pred, end=cut)
    again = slice_time(truncated, start=before.index.get_level_values("timestamp").min())
    np.testing.assert_allclose(again.to_numpy(dtype=float), before.to_numpy(dtype=float), rtol=1e-6, atol=1e-9)
