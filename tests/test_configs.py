"""Config smoke tests in the style of lightning-hydra-template's: every file of every group composes,
validates against its schema, and every data set's segments fit its data."""

from __future__ import annotations

from pathlib import Path

import pytest

import treum
from treum.commands.compose import compose_plain, to_dict
from treum.core.config import build_config, build_spec_config
from treum.core.data import Segments
from treum.core.evaluation import WalkForwardConfig
from treum.core.plugins import PluginSettings, create_plugin_registry

CONF = Path(treum.__file__).parent / "conf"
_REG = create_plugin_registry(PluginSettings())
CHOICES = [(group.name, path.stem) for group in sorted(CONF.iterdir()) if group.is_dir() and group.name != "__pycache__"
           for path in sorted(group.glob("*.yaml"))]


def test_every_group_has_files():
    groups = {g for g, _ in CHOICES}
    assert {"data", "features", "model", "task", "eval", "registry", "serve", "experiment"} <= groups


@pytest.mark.parametrize("group,choice", CHOICES, ids=[f"{g}/{c}" for g, c in CHOICES])
def test_every_config_file_composes_and_validates(group, choice):
    cfg = compose_plain([f"{group}={choice}"], _REG)
    node = to_dict(cfg[group]) if group != "experiment" else None
    if group == "model":
        build_spec_config(_REG.model(choice), node)
    elif group == "task":
        build_spec_config(_REG.task(choice), node, "task")
    elif group == "eval":
        build_config(WalkForwardConfig, node, "eval")
    elif group == "data":
        assert choice in _REG.specs("datasets")
        if _REG.dataset(choice).kind == "panel":  # a corpus has no dates, so no segments
            Segments.from_config(node.get("segments") or {})
        else:
            assert "segments" not in node, f"data/{choice} is labelled text: its rows have no dates to segment"
    elif group == "features":
        assert choice in _REG.specs("features")
    elif group == "serve":
        from treum.serve.settings import ServeSettings

        ServeSettings.from_config(node)
    elif group == "experiment":
        build_spec_config(_REG.task(cfg.task.name), to_dict(cfg.task), "task")
    elif group == "zoo":  # every entry names a registered model and is a valid config of it
        for model, values in (node or {}).items():
            build_spec_config(_REG.model(model), {**to_dict(compose_plain([f"model={model}"], _REG).model), **values})


def _loads_without_a_file(name: str) -> bool:
    """A packaged panel: not a corpus (no segments) nor a data set that reads the user's file (``path``)."""
    node = to_dict(compose_plain([f"data={name}"], _REG).data)
    return _REG.dataset(name).kind == "panel" and "path" not in node


@pytest.mark.parametrize("name", sorted(c for g, c in CHOICES if g == "data" and _loads_without_a_file(c)))
def test_every_data_set_fits_its_segments(name):
    cfg = compose_plain([f"data={name}"], _REG)
    data_cfg = to_dict(cfg.data)
    panel = _REG.dataset(name).load(data_cfg)
    Segments.from_config(data_cfg["segments"]).check_against(panel, f"data '{name}'")


def test_every_model_and_task_has_its_yaml():
    for kind, group in (("models", "model"), ("tasks", "task")):
        for name in _REG.specs(kind):
            cfg = compose_plain([f"{group}={name}"], _REG)
            assert cfg[group].name == name


def test_the_full_zoo_replaces_the_small_defaults_under_the_command_line():
    from treum.commands.compose import model_config

    full = to_dict(compose_plain(["zoo=full"], _REG).zoo)
    small = model_config(_REG, "ts_transformer", [], own=False)
    big = model_config(_REG, "ts_transformer", ["experiment=full_zoo"], own=False)
    assert big.d_model == full["ts_transformer"]["d_model"] != small.d_model
    mine = model_config(_REG, "ts_transformer", ["zoo=full", "model.d_model=8"], own=True)
    assert mine.d_model == 8 and mine.max_epochs == full["ts_transformer"]["max_epochs"]
    # a baseline's fixed overrides still win over the size (a baseline is the same at every size)
    assert model_config(_REG, "ts_transformer", ["zoo=full"], {"d_model": 4}).d_model == 4


def test_task_keys_of_the_models_task_compose_without_naming_the_task():
    """`treum train model=regime_classifier task.classes=3`: the task follows the model, its keys too."""
    from treum.commands.compose import compose_run, model_config

    cfg = compose_run(["model=regime_classifier", "data=sp500_index", "task.classes=3"], _REG)
    assert cfg.task.name == "regime" and cfg.task.classes == 3
    config = model_config(_REG, "regime_classifier", ["task.classes=3", "zoo=full"], own=True)
    assert config.n_estimators == to_dict(compose_plain(["zoo=full"], _REG).zoo)["regime_classifier"]["n_estimators"]
