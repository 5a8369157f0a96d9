"""A registry with real, small models deployed, for the serving tests."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from treum.configuration import compose_plain
from treum.core.config import build_config
from treum.core.data import slice_time
from treum.core.plugins import PluginSettings, create_plugin_registry
from treum.core.tasks import get_task
from treum.registry.store import Registry
from treum.serve.settings import ServeSettings

FAST = {"ts_transformer": {"max_epochs": 1, "d_model": 16, "window": 16}, "markov_regime": {"search_reps": 1}}
TRAIN = {  # model: (data set, task config)
    "gbm_direction": ("sp500", {"horizon": 1, "horizons": [1]}),
    "logit_direction": ("sp500", {"horizon": 1, "horizons": [1]}),
    "ts_transformer": ("sp500", {"horizon": 1, "horizons": [1, 5]}),
    "garch": ("sp500", {"horizons": [1, 21]}),
    "markov_regime": ("sp500_index", {}),
}


def fit_and_register(registry: Registry, plugins, name: str, tmp: Path, end: str = "2016-12-31", **overrides):
    """Fit a model on real data up to ``end`` and register it (validated), as a training run would."""
    spec = plugins.model(name)
    data, task_cfg = TRAIN[name]
    cfg = compose_plain([f"model={name}"], plugins)
    config = build_config(spec, {**OmegaConf.to_container(cfg.model, resolve=True), **FAST.get(name, {}), **overrides})
    panel = slice_time(plugins.dataset(data).load({}), end=__import__("pandas").Timestamp(end))
    frame = panel.join(plugins.feature_set("technical").compute(panel, {})).join(
        get_task(spec.task).make_targets(panel, task_cfg))
    model = spec.factory(config).fit(frame)
    path = model.save(tmp / f"{name}-{end}-{len(overrides)}")
    return registry.register(
        name=name, task=spec.task, family=spec.family, config=json.loads(json.dumps(dataclasses.asdict(config))),
        artifact_dir=path, metrics={"auc": 0.5}, baselines={}, validated=True, data_version="test",
        metadata={"data": data, "features": "technical", "capabilities": sorted(spec.capabilities),
                  "entities": sorted(map(str, panel.index.get_level_values("entity").unique()))},
    )


def settings(**overrides) -> ServeSettings:
    cfg = compose_plain([], create_plugin_registry(PluginSettings()))
    values = {**OmegaConf.to_container(cfg.serve, resolve=True), "refresh_seconds": 0, **overrides}
    return ServeSettings.from_config(values)


@pytest.fixture(scope="session")
def serve_plugins():
    return create_plugin_registry(PluginSettings())


@pytest.fixture(scope="session")
def deployed_home(tmp_path_factory, serve_plugins) -> Path:
    """A TREUM_HOME whose registry has the five models deployed; copied per test."""
    home = tmp_path_factory.mktemp("serve-home")
    reg = Registry(home=home)
    for name in TRAIN:
        m = fit_and_register(reg, serve_plugins, name, home / "saved")
        reg.deploy(name, m.model_version, actor="fixture", reason="serving tests")
    reg.close()
    return home


@pytest.fixture
def serve_home(deployed_home, tmp_path, monkeypatch) -> Path:
    import shutil

    home = tmp_path / "serve-home"
    shutil.copytree(deployed_home, home)
    monkeypatch.setenv("TREUM_HOME", str(home))
    return home
