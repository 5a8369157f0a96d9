"""The contract every registered model keeps, parametrised over the plugin registry.

fit returns the fitted model; predict answers every row with the task's columns;
a save/load round trip gives the same predictions; a changed artifact is refused;
two fits with one seed agree; declared capabilities hold.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from treum.core.config import build_config
from treum.core.data import slice_time
from treum.core.errors import ArtifactIntegrityError
from treum.core.model import load_model
from treum.core.plugins import PluginSettings, create_plugin_registry
from treum.core.tasks import get_task

_REG = create_plugin_registry(PluginSettings())
MODELS = sorted(_REG.specs("models"))
# smaller settings so that the contract runs in seconds; quality floors use the shipped configs
FAST = {"ts_transformer": {"max_epochs": 2, "d_model": 16, "window": 16}, "markov_regime": {"search_reps": 1}}
DATA = {"direction": "sp500", "volatility": "sp500", "regime": "sp500_index"}
SPANS = {"direction": ("2003-01-01", "2012-12-31"), "volatility": ("2003-01-01", "2012-12-31"),
         "regime": ("1995-01-01", "2012-12-31")}
TASK_CFG = {"direction": {"horizon": 1, "horizons": [1, 5, 21]}, "volatility": {"horizons": [1, 21]}, "regime": {}}


def _frame(plugins, task, dataset=None, entities=None):
    panel = plugins.dataset(dataset or DATA[task]).load({"start": SPANS[task][0], "end": SPANS[task][1]})
    if entities:
        panel = panel[panel.index.get_level_values("entity").isin(entities)]
    feats = plugins.feature_set("technical").compute(panel, {})
    return panel.join(feats).join(get_task(task).make_targets(panel, TASK_CFG[task]))


_FRAMES: dict = {}


def frame_for(plugins, task):
    if task not in _FRAMES:
        _FRAMES[task] = _frame(plugins, task)
    return _FRAMES[task]


def _config(spec):
    from omegaconf import OmegaConf

    from treum.configuration import compose_plain

    cfg = compose_plain([f"model={spec.name}"], _REG)
    values = {**OmegaConf.to_container(cfg.model, resolve=True), **FAST.get(spec.name, {})}
    return build_config(spec, values)


def _split(frame):
    ts = frame.index.get_level_values("timestamp")
    end = ts.max()
    train = frame[ts < end - pd.DateOffset(years=2, days=40)]
    valid = frame[(ts >= end - pd.DateOffset(years=2)) & (ts < end - pd.DateOffset(years=1, days=40))]
    test_start = end - pd.DateOffset(years=1)
    return train, valid, test_start


def _fit_predict(spec, frame):
    train, valid, test_start = _split(frame)
    model = spec.factory(_config(spec))
    assert model.fit(train, valid) is model
    pred = model.predict(frame)
    return model, slice_time(pred, start=test_start)


@pytest.fixture(scope="module", params=MODELS)
def fitted(request):
    spec = _REG.model(request.param)
    frame = frame_for(_REG, spec.task)
    model, pred = _fit_predict(spec, frame)
    return spec, model, pred, frame


def test_predictions_have_the_task_columns_on_every_row(fitted):
    spec, model, pred, frame = fitted
    task = get_task(spec.task)
    assert model.fitted
    assert set(task.prediction_columns) <= set(pred.columns)
    full = model.predict(frame)
    assert full.index.equals(frame.index), "predict answers every row of its input, in order"
    values = pred[list(task.prediction_columns)].to_numpy()
    assert np.isfinite(values).all(), f"{spec.name} left test rows without a prediction"
    if spec.task in ("direction", "regime"):
        assert ((values >= 0) & (values <= 1)).all()
    if spec.task == "volatility":
        assert (values > 0).all()


def test_save_load_round_trip_gives_the_same_predictions(fitted, tmp_path):
    spec, model, pred, frame = fitted
    path = model.save(tmp_path / "m")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["model"] == spec.name and manifest["files"]
    loaded = load_model(path, _REG.specs("models"))
    again = slice_time(loaded.predict(frame), start=pred.index.get_level_values("timestamp").min())
    np.testing.assert_allclose(again.to_numpy(dtype=float), pred.to_numpy(dtype=float), rtol=1e-6, atol=1e-9)


def test_a_changed_artifact_is_refused(fitted, tmp_path):
    spec, model, _, _ = fitted
    path = model.save(tmp_path / "m")
    victim = sorted(p for p in path.iterdir() if p.name != "manifest.json")[0]
    victim.write_bytes(victim.read_bytes() + b" ")
    with pytest.raises(ArtifactIntegrityError, match=victim.name):
        load_model(path, _REG.specs("models"))


def test_two_fits_with_one_seed_agree(fitted):
    spec, _, pred, frame = fitted
    _, pred2 = _fit_predict(spec, frame)
    np.testing.assert_allclose(pred2.to_numpy(dtype=float), pred.to_numpy(dtype=float), rtol=1e-6, atol=1e-9)


def test_non_sequential_models_ignore_context(fitted):
    spec, model, pred, frame = fitted
    if "sequential" in spec.capabilities:
        assert spec.task in ("direction", "volatility", "regime")
        return
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
        horizon_cols = [c for c in pred.columns if c.startswith(("p_up_h", "var_h"))]
        assert len(horizon_cols) >= 2
    if "probabilistic" in caps:
        col = get_task(spec.task).prediction_columns[0]
        assert pred[col].nunique() > 1 or spec.baseline


@pytest.mark.parametrize("name", [m for m in MODELS if "multi_asset" in _REG.model(m).capabilities
                                  and _REG.model(m).task == "direction"])
def test_multi_asset_models_fit_and_predict_every_entity(name):
    spec = _REG.model(name)
    frame = _frame(_REG, "direction", "sp500_stocks", ["AAPL", "JNJ", "XOM"])
    _, pred = _fit_predict(spec, frame)
    assert set(pred.index.get_level_values("entity")) == {"AAPL", "JNJ", "XOM"}
    assert np.isfinite(pred["p_up"]).all()


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
