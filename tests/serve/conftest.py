"""A registry with real, small models deployed, for the serving tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from treum.commands.contract import FAST as CONTRACT_FAST

from treum.commands.compose import compose_plain, to_dict
from treum.core.config import build_spec_config, config_dict
from treum.core.data import data_version, slice_time
from treum.core.model import build_model
from treum.core.plugins import PluginSettings, create_plugin_registry
from treum.core.task import build_task
from treum.registry.store import Registry
from treum.serve.settings import ServeSettings

FAST = {**CONTRACT_FAST, "ts_transformer": {**CONTRACT_FAST["ts_transformer"], "max_epochs": 1}}  # faster still
TRAIN = {  # model: (data set, task config)
    "gbm_direction": ("sp500", {"horizon": 1, "horizons": [1]}),
    "logit_direction": ("sp500", {"horizon": 1, "horizons": [1]}),
    "ts_transformer": ("sp500", {"horizon": 1, "horizons": [1, 5]}),
    "garch": ("sp500", {"horizons": [1, 21]}),
    "markov_regime": ("sp500_index", {}),
}


def fit_and_register(registry: Registry, plugins, name: str, tmp: Path, end: str = "2016-12-31",
                     task_config: dict[str, Any] | None = None, data: str | None = None, **overrides):
    """Fit a model for its task on real data up to ``end`` and register it (validated), as a training run would.

    The data set and task config are the model's row of TRAIN, or its task's example for a model not in it.
    """
    spec = plugins.model(name)
    example = plugins.task(spec.task).example
    data_default, task_cfg = TRAIN.get(name, (example.data, dict(example.config)))
    data = data or data_default
    task = build_task(plugins.task(spec.task), task_config if task_config is not None else task_cfg)
    cfg = compose_plain([f"model={name}"], plugins)
    config = build_spec_config(spec, {**to_dict(cfg.model), **FAST.get(name, {}), **overrides})
    full = plugins.dataset(data).load({})
    panel = slice_time(full, end=pd.Timestamp(end))
    features = example.features  # the feature set its task's models read (technical, cross_asset, ...)
    frame = panel.join(plugins.feature_set(features).compute(panel, {})).join(task.make_targets(panel))
    model = build_model(spec, config, task).fit(frame)
    path = model.save(tmp / f"{name}-{end}-{len(overrides)}-{json.dumps(task_config, sort_keys=True)}")
    metrics = {"auc": 0.5, "n": float(len(frame))}
    return registry.register(
        name=name, task=spec.task, family=spec.family, config=config_dict(config),
        artifact_dir=path, metrics=metrics, performance=task.performance_row(metrics), baselines={}, validated=True, data_version=data_version(full),
        metadata={"data": data, "features": features, "capabilities": sorted(spec.capabilities),
                  "task_config": task.config_dict(),
                  "entities": sorted(map(str, panel.index.get_level_values("entity").unique()))},
    )


def serve_values(**overrides) -> dict[str, Any]:
    """The serve config group as composed from conf/serve/ensemble.yaml, with ``overrides`` merged in (nested)."""
    cfg = compose_plain([], create_plugin_registry(PluginSettings()))
    return _merge({**to_dict(cfg.serve), "refresh_seconds": 0}, overrides)


def _merge(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def settings(**overrides) -> ServeSettings:
    return ServeSettings.from_config(serve_values(**overrides))


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


@pytest.fixture
def service(serve_home, serve_plugins):
    """A Service over the deployed registry, without its refresh thread; closed (logs flushed) after the test."""
    from treum.serve.router import Service

    svc = Service(settings(), Registry(home=serve_home), serve_plugins, start_refresher=False)
    yield svc
    svc.close()
