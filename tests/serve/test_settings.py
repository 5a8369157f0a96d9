"""The serve config: validated by the project's one validator, then checked against the plugins."""

from __future__ import annotations

import types

import pytest

from treum.commands.compose import compose_plain, to_dict
from treum.core.errors import ConfigError, PluginError
from treum.core.hookspecs import hookimpl
from treum.core.plugins import PluginSettings, create_plugin_registry
from treum.serve.settings import ServeSettings, check_plugins

from .conftest import serve_values


def _with(**ensemble) -> dict:
    values = serve_values()
    values["ensemble"] = {**values["ensemble"], **ensemble}
    return values


def test_the_shipped_config_is_valid_and_names_its_tasks_and_models_as_values_only(serve_plugins):
    s = ServeSettings.from_config(serve_values(), serve_plugins)
    assert s.ensemble.task == "direction" and s.regime.task == "regime" and s.regime.model is None
    assert set(s.ensemble.members) == {"gbm_direction", "logit_direction", "ts_transformer"}
    assert {n: a.task for n, a in s.aliases.items()} == {"volatility": "volatility", "market-regime": "regime"}
    assert ServeSettings.from_config(s.as_dict()) == s
    # without the config, no model and no task is named
    assert ServeSettings().tasks == {} and ServeSettings().regime is None and ServeSettings().ensemble is None


def test_a_wrong_type_names_its_key(serve_plugins):
    cfg = compose_plain(["serve.port=abc"], serve_plugins)
    with pytest.raises(ConfigError, match=r"^serve.port: expected an integer, got 'abc'$"):
        ServeSettings.from_config(to_dict(cfg.serve))
    with pytest.raises(ConfigError, match=r"serve.ensemble.weights.bull.gbm_direction: expected a number, got 'x'"):
        ServeSettings.from_config(_with(weights={"bull": {"gbm_direction": "x"}}))


@pytest.mark.parametrize("values,message", [
    ({"prot": 1}, r"serve.prot: unknown key for serve; did you mean 'port'\?"),
    ({"ensemble": {"taks": "direction"}}, r"serve.ensemble.taks: unknown key .*; did you mean 'task'\?"),
    ({"regime": {"task": "regime", "modle": "x"}}, r"serve.regime.modle: unknown key .*; did you mean 'model'\?"),
])
def test_an_unknown_key_gets_a_suggestion(values, message):
    base = serve_values()
    merged = {**base, **{k: ({**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v)
                         for k, v in values.items()}}
    with pytest.raises(ConfigError, match=message):
        ServeSettings.from_config(merged)


@pytest.mark.parametrize("ensemble,message", [
    ({"weights": {"bull": {"gbm_directoin": 1.0}}},
     r"ensemble.weights.bull.gbm_directoin: not a member; did you mean 'gbm_direction'\?"),
    ({"weights": {}}, "ensemble.weights is empty"),
    ({"weights": {"bull": {"gbm_direction": -1.0}}}, "weights cannot be negative"),
    ({"weights": {"bull": {"gbm_direction": 0.0}}}, "at least one member a positive weight"),
    ({"members": {"gbm_direction": {"placement": "gpu"}}, "weights": {"bull": {"gbm_direction": 1.0}},
      "min_members": 1}, r"ensemble.members.gbm_direction.placement: must be one of \['local', 'remote'\]"),
    ({"min_members": 0}, "ensemble.min_members must be at least 1"),
    ({"min_members": 4}, "min_members is 4 but the ensemble has 3 member"),
])
def test_ensemble_cross_checks(ensemble, message):
    with pytest.raises(ConfigError, match=message):
        ServeSettings.from_config(_with(**ensemble))


def test_other_cross_checks():
    with pytest.raises(ConfigError, match="ensemble needs regime"):
        ServeSettings.from_config({**serve_values(), "regime": None})
    with pytest.raises(ConfigError, match="aliases.price: '/predict/price' is a built-in route"):
        ServeSettings.from_config({**serve_values(), "aliases": {"price": {"task": "direction"}}})
    with pytest.raises(ConfigError, match=r"aliases.vol.instrument: must be one of \['request', 'market'\]"):
        ServeSettings.from_config({**serve_values(), "aliases": {"vol": {"task": "volatility", "instrument": "mkt"}}})
    with pytest.raises(ConfigError, match="min_bars .* cannot exceed max_bars"):
        ServeSettings.from_config({**serve_values(), "min_bars": 10, "max_bars": 5})
    with pytest.raises(ConfigError, match="router_replicas must be at least 1, got 0"):
        ServeSettings.from_config({**serve_values(), "router_replicas": 0})
    with pytest.raises(ConfigError, match="keep_alive_s must be at least 1 second, got 0"):
        ServeSettings.from_config({**serve_values(), "keep_alive_s": 0})
    with pytest.raises(ConfigError, match="gc_gen0_threshold cannot be negative"):
        ServeSettings.from_config({**serve_values(), "gc_gen0_threshold": -1})


@pytest.mark.parametrize("values,message", [
    ({"ensemble": {"task": "directoin"}},
     r"serve.ensemble.task: task 'directoin' is not registered; did you mean 'direction'\?"),
    ({"ensemble": {"members": {"garch": {}}}},
     r"serve.ensemble.members.garch: 'garch' is a model of task 'volatility', not 'direction'"),
    ({"regime": {"model": "gbm_direction"}}, r"serve.regime.model: 'gbm_direction' is a model of task 'direction'"),
    ({"tasks": {"volatility": {"model": "garhc"}}},
     r"serve.tasks.volatility.model: model 'garhc' is not registered; did you mean 'garch'\?"),
    ({"tasks": {"volatilty": {}}}, r"serve.tasks.volatilty: task 'volatilty' is not registered"),
    ({"aliases": {"direction": {"task": "volatility"}}}, "'direction' is a task of its own"),
])
def test_names_are_checked_against_the_plugins(serve_plugins, values, message):
    from .conftest import _merge

    settings = ServeSettings.from_config(_merge(serve_values(), values))
    with pytest.raises(ConfigError, match=message):
        check_plugins(settings, serve_plugins)
    with pytest.raises(ConfigError, match=message):
        ServeSettings.from_config(_merge(serve_values(), values), serve_plugins)


@pytest.mark.parametrize("name,route", [("price", "the ensemble"), ("batch", "batch predictions")])
def test_a_task_named_like_a_built_in_predict_route_is_refused_at_start_up(name, route):
    from treum.serve.router import Service

    task = types.SimpleNamespace(name=name, baselines=())  # the registry reads only these
    plugin = types.SimpleNamespace(treum_tasks=hookimpl(lambda: [task]))
    plugins = create_plugin_registry(PluginSettings(), extra_plugins=[("shadowed_tasks", plugin)])
    assert name in plugins.specs("tasks")
    message = (f"plugin 'shadowed_tasks' registers task '{name}', but /predict/{name} is the built-in route of "
               f"{route}, so the task could never be reached; rename the task, or disable the plugin in plugins.toml")
    with pytest.raises(PluginError) as err:
        check_plugins(ServeSettings.from_config(serve_values()), plugins)
    assert str(err.value) == message
    with pytest.raises(PluginError, match="rename the task"):
        ServeSettings.from_config(serve_values(), plugins)
    with pytest.raises(PluginError, match="rename the task"):  # the service checks before it opens anything
        Service(ServeSettings.from_config(serve_values()), None, plugins, start_refresher=False)
