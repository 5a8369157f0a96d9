"""The stress detectors: what each one learns from, how it saves, and its correlation-jump target."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from treum.commands import contract
from treum.commands.compose import model_config
from treum.core.errors import ArtifactIntegrityError, TreumError
from treum.core.model import build_model, load_model
from treum.zoo.stress import correlation_jump, ecdf, model_features


@pytest.fixture(scope="module")
def example(plugins):
    """The anomaly task's example slice (2008-2018) with cross-asset features and labels."""
    spec = plugins.model("isolation_forest")
    return contract.example_frame(plugins, spec)


def test_the_models_never_read_the_vix(example):
    cols = model_features(example)
    assert "f_vix" in example.columns and "f_vix" not in cols and "f_corr_21" in cols


def test_the_training_percentile_map():
    ref = np.sort(np.array([1.0, 2.0, 3.0, 4.0]))
    assert list(ecdf(ref, np.array([0.5, 2.0, 2.5, 9.0]))) == [0.0, 0.5, 0.5, 1.0]


def test_the_correlation_jump_target_looks_horizon_bars_ahead_within_the_frame():
    idx = pd.MultiIndex.from_arrays([pd.bdate_range("2020-01-01", periods=6), ["X"] * 6],
                                    names=["timestamp", "entity"])
    frame = pd.DataFrame({"f_corr_21": [0.2, 0.25, 0.45, 0.3, 0.5, 0.1]}, index=idx)
    y = correlation_jump(frame, 0.1, 2)
    assert list(y.iloc[:4]) == [1.0, 0.0, 0.0, 0.0] and y.iloc[4:].isna().all()
    with pytest.raises(TreumError, match="features=cross_asset"):
        correlation_jump(frame.rename(columns={"f_corr_21": "f_x"}), 0.1, 2)


def test_isolation_forest_reloads_by_refitting_and_refuses_a_forest_that_does_not_reproduce(plugins, example, tmp_path):
    f = contract.fit_example(plugins, "isolation_forest")
    path = f.model.save(tmp_path / "m")
    with np.load(path / "isolation_forest.npz", allow_pickle=False) as npz:
        assert npz["x_train"].shape[1] == len(f.model.features_)
    loaded = load_model(path, plugins.specs("models"), plugins.specs("tasks"))
    pd.testing.assert_frame_equal(loaded.predict(f.frame), f.model.predict(f.frame))
    # the same files with another seed in config.json (and a matching manifest) do not rebuild the same forest
    cfg = json.loads((path / "config.json").read_text())
    cfg["seed"] = 99
    (path / "config.json").write_text(json.dumps(cfg))
    manifest = json.loads((path / "manifest.json").read_text())
    from treum.core.model import file_sha256

    manifest["files"]["config.json"] = file_sha256(path / "config.json")
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactIntegrityError, match="does not reproduce"):
        load_model(path, plugins.specs("models"), plugins.specs("tasks"))


def test_the_autoencoder_learns_from_calm_rows_only(plugins, example):
    spec = plugins.model("autoencoder_stress")
    train = example.loc[:"2015-12-31"]
    task = contract.task_of(plugins, spec)
    cfg = model_config(plugins, "autoencoder_stress", [], {"max_epochs": 2})
    model = build_model(spec, cfg, task).fit(train)
    # with every stress label removed there is nothing calm to learn from: a clear error, not a silent fit
    with pytest.raises(TreumError, match="training rows to learn from"):
        build_model(spec, cfg, task).fit(train.assign(target_stress=np.nan))
    assert 0 <= model.predict(example)["p_stress"].dropna().min() and model.predict(example)["p_stress"].max() <= 1


def test_a_frame_without_cross_asset_features_is_refused_clearly(plugins, example):
    f = contract.fit_example(plugins, "correlation_breakdown")
    with pytest.raises(TreumError, match="features=cross_asset"):
        f.model.predict(f.frame.drop(columns=["f_corr_21"]))
    imp = f.model.feature_importance()
    assert np.isclose(imp.sum(), 1.0) and "f_vix" not in imp.index
