"""The plugin manager: discovery, plugins.toml policy, name clashes, hook typos, cross-references.

Whether every hook is documented, collected, consumed and tested is checked in
``tests/test_hooks_meta.py``.
"""

from __future__ import annotations

import importlib.metadata as md
import textwrap
import types

import pluggy
import pytest

from treum.core import hookspecs
from treum.core.errors import PluginError
from treum.core.hookspecs import hookimpl
from treum.core.plugins import (
    HOOK_KINDS,
    SEARCH_PATH_HOOKS,
    PluginSettings,
    create_plugin_registry,
    hook_kinds,
    hookspec_functions,
    kind_noun,
    load_plugin_settings,
    search_path_hooks,
)
from treum.core.specs import (
    DatasetSpec,
    ExplainerSpec,
    FairnessCheckSpec,
    MonitorSpec,
    ServeRouteSpec,
)

BUILTIN_MODELS = {"gbm_direction", "logit_direction", "ts_transformer", "garch", "markov_regime"}


def test_builtins_are_registered_through_entry_points(plugins):
    models = plugins.specs("models")
    assert BUILTIN_MODELS <= set(models)
    owners = {plugins.owner("models", name) for name in BUILTIN_MODELS}
    # every built-in came from an entry point of the treum distribution, as a third-party one would
    infos = {i.name: i for i in plugins.infos}
    assert all(infos[o].origin == "entry point" and infos[o].distribution == "treum" for o in owners)
    assert {"sp500", "nasdaq", "vix", "wti", "sp500_stocks", "sp500_index", "csv"} <= set(plugins.specs("datasets"))
    assert "technical" in plugins.specs("features")


def test_specs_are_sorted_by_name(plugins):
    names = list(plugins.specs("models"))
    assert names == sorted(names)


def test_unknown_model_names_the_closest(plugins):
    with pytest.raises(PluginError, match=r"'garhc' is not registered; did you mean 'garch'\?"):
        plugins.model("garhc")


def test_two_plugins_claiming_one_name_fail_naming_both():
    clash = types.SimpleNamespace(
        treum_datasets=hookimpl(lambda: [DatasetSpec("sp500", "another S&P 500", lambda cfg: None)])
    )
    with pytest.raises(PluginError) as err:
        create_plugin_registry(PluginSettings(), extra_plugins=[("clashing_plugin", clash)])
    assert "'datasets_arch'" in str(err.value) and "'clashing_plugin'" in str(err.value)


def test_hook_typo_fails_with_suggestion():
    typo = types.SimpleNamespace(treum_modles=hookimpl(lambda: []))
    with pytest.raises(PluginError, match=r"treum_modles.*did you mean 'treum_models'"):
        create_plugin_registry(PluginSettings(), extra_plugins=[("typo_plugin", typo)])


def test_disable_switches_a_plugin_off(tmp_path):
    toml = tmp_path / "plugins.toml"
    toml.write_text('[plugins]\ndisable = ["ts_transformer"]\n')
    reg = create_plugin_registry(load_plugin_settings(toml))
    assert "ts_transformer" not in reg.specs("models")
    info = next(i for i in reg.infos if i.name == "ts_transformer")
    assert info.enabled is False
    with pytest.raises(PluginError, match=r"not registered: it is provided by plugin 'ts_transformer'"):
        reg.model("ts_transformer")


def test_local_folder_plugin_is_loaded(tmp_path):
    folder = tmp_path / "my_plugins"
    folder.mkdir()
    (folder / "extra_data.py").write_text(
        textwrap.dedent(
            """
            from treum.core.hookspecs import hookimpl
            from treum.core.specs import DatasetSpec

            @hookimpl
            def treum_datasets():
                return [DatasetSpec("my_prices", "prices from a local plugin", lambda cfg: None)]
            """
        )
    )
    toml = tmp_path / "plugins.toml"
    toml.write_text('[plugins]\npaths = ["my_plugins"]\n')
    reg = create_plugin_registry(load_plugin_settings(toml))
    assert "my_prices" in reg.specs("datasets")
    assert reg.owner("datasets", "my_prices") == "extra_data"


def test_enable_requires_the_plugin_to_exist(tmp_path):
    toml = tmp_path / "plugins.toml"
    toml.write_text('[plugins]\nenable = ["not_installed_anywhere"]\n')
    with pytest.raises(PluginError, match="not_installed_anywhere"):
        create_plugin_registry(load_plugin_settings(toml))


def test_plugins_toml_rejects_unknown_keys(tmp_path):
    toml = tmp_path / "plugins.toml"
    toml.write_text('[plugins]\ndisabel = ["garch"]\n')
    with pytest.raises(PluginError, match="did you mean 'disable'"):
        load_plugin_settings(toml)


def test_missing_local_folder_is_an_error(tmp_path):
    toml = tmp_path / "plugins.toml"
    toml.write_text('[plugins]\npaths = ["nowhere"]\n')
    with pytest.raises(PluginError, match="does not exist"):
        create_plugin_registry(load_plugin_settings(toml))


def test_example_plugin_distribution_is_installed(plugins):
    info = next(i for i in plugins.infos if i.name == "example_momentum")
    assert info.distribution == "treum-example-plugin" and info.version == "0.3.0"
    assert info.registers == {"models": ["momentum_sign"]}
    drawdown = next(i for i in plugins.infos if i.name == "example_drawdown")
    assert {k: sorted(v) for k, v in drawdown.registers.items()} == {"models": ["drawdown_base_rate", "drawdown_logit"],
                                                                  "tasks": ["drawdown"]}
    assert "pkg://treum_example_plugin.conf" in plugins.searchpath


# -- helpers for registries built from in-process plugins only ----------------------------------


def _returning(value):
    return hookimpl(lambda: value)


def _plugin(**hooks):
    """An in-process plugin whose hooks (``treum_models=[...]``) return the given lists."""
    return types.SimpleNamespace(**{hook: _returning(value) for hook, value in hooks.items()})


def _task(name, *baselines):
    """A TaskSpec-like object: only ``name`` and ``baselines`` are read by the registry."""
    return types.SimpleNamespace(
        name=name,
        baselines=tuple(types.SimpleNamespace(label=label, model=model, overrides={}) for label, model in baselines),
    )


def _model(name, task):
    return types.SimpleNamespace(name=name, task=task)


def _isolated(*also_disable, source=None) -> PluginSettings:
    """Settings that switch off every installed distribution of plugins by its name."""
    distributions = sorted({ep.dist.name for ep in md.entry_points(group="treum") if ep.dist})
    return PluginSettings(disable=(*distributions, *also_disable), source=source)


# -- the hook -> kind mapping is derived from the hookspecs -------------------------------------


def test_hook_kinds_are_derived_from_the_hookspecs_module():
    spec = pluggy.HookspecMarker(hookspecs.PROJECT)
    module = types.ModuleType("other_hookspecs")

    @spec
    def treum_meta_widgets():
        """Return widgets."""

    @spec
    def treum_meta_gadget_checks():
        """Return gadget checks."""

    @spec
    @hookspecs.returns_search_path
    def treum_meta_paths():
        """Return search-path entries."""

    def treum_helper():  # not a hookspec: no marker
        """Not a hook."""

    for fn in (treum_meta_widgets, treum_meta_gadget_checks, treum_meta_paths, treum_helper):
        setattr(module, fn.__name__, fn)
    assert hook_kinds(module) == {"treum_meta_widgets": "meta_widgets", "treum_meta_gadget_checks": "meta_gadget_checks"}
    assert search_path_hooks(module) == ("treum_meta_paths",)


def test_every_hookspec_is_either_a_kind_or_the_search_path():
    hooks = set(hookspec_functions())
    assert set(HOOK_KINDS) | set(SEARCH_PATH_HOOKS) == hooks
    assert not set(HOOK_KINDS) & set(SEARCH_PATH_HOOKS)
    assert SEARCH_PATH_HOOKS == ("treum_config_searchpath",)
    assert all(kind == hook.removeprefix("treum_") for hook, kind in HOOK_KINDS.items())
    assert HOOK_KINDS["treum_tasks"] == "tasks"


@pytest.mark.parametrize(
    ("kind", "noun"),
    [("models", "model"), ("tasks", "task"), ("fairness_checks", "fairness check"), ("serve_routes", "serve route")],
)
def test_error_nouns_come_from_the_kind(kind, noun):
    assert kind_noun(kind) == noun
    reg = create_plugin_registry(_isolated())
    with pytest.raises(PluginError, match=rf"^{noun} 'nothing_here' is not registered"):
        reg.get(kind, "nothing_here")


def test_tasks_and_the_extension_hooks_are_collected():
    def noop(*args, **kwargs):
        return None

    plugin = _plugin(
        treum_tasks=[_task("forecast"), _task("direction")],
        treum_explainers=[ExplainerSpec("surrogate", "a decision-tree surrogate", noop)],
        treum_fairness_checks=[FairnessCheckSpec("parity", "demographic parity difference", noop)],
        treum_monitors=[MonitorSpec("psi", "population stability index", noop)],
        treum_serve_routes=[ServeRouteSpec("ping", "/ping", noop)],
    )
    reg = create_plugin_registry(_isolated(), extra_plugins=[("extensions", plugin)])
    assert list(reg.specs("tasks")) == ["direction", "forecast"]
    assert reg.task("forecast").name == "forecast"
    assert reg.owner("tasks", "forecast") == "extensions"
    assert list(reg.specs("explainers")) == ["surrogate"]
    assert reg.get("fairness_checks", "parity").description == "demographic parity difference"
    assert list(reg.specs("monitors")) == ["psi"]
    assert reg.get("serve_routes", "ping").path == "/ping"
    info = next(i for i in reg.infos if i.name == "extensions")
    assert info.registers["tasks"] == ["forecast", "direction"]
    with pytest.raises(PluginError, match=r"task 'forcast' is not registered; did you mean 'forecast'\?"):
        reg.task("forcast")


def test_two_plugins_claiming_one_task_fail_naming_both():
    with pytest.raises(PluginError, match=r"task 'forecast' is registered by two plugins: 'tasks_a' and 'tasks_b'"):
        create_plugin_registry(
            _isolated(),
            extra_plugins=[
                ("tasks_a", _plugin(treum_tasks=[_task("forecast")])),
                ("tasks_b", _plugin(treum_tasks=[_task("forecast")])),
            ],
        )


# -- cross-references: a model's task, a task's baselines ----------------------------------------


def test_a_model_for_an_unregistered_task_fails_naming_plugin_model_task_and_the_closest():
    with pytest.raises(PluginError) as err:
        create_plugin_registry(
            _isolated(),
            extra_plugins=[
                ("my_tasks", _plugin(treum_tasks=[_task("forecast"), _task("volatility")])),
                ("my_plugin", _plugin(treum_models=[_model("foo", "forcast")])),
            ],
        )
    assert str(err.value) == (
        "plugin 'my_plugin' registers model 'foo' for task 'forcast', which no enabled plugin registers; "
        "did you mean 'forecast'? (registered tasks: forecast, volatility)"
    )


def test_a_baseline_naming_an_unregistered_model_fails_naming_plugin_task_label_and_model():
    tasks = _plugin(treum_tasks=[_task("forecast", ("naive", "persistance"))])
    models = _plugin(treum_models=[_model("persistence", "forecast")])
    with pytest.raises(PluginError) as err:
        create_plugin_registry(_isolated(), extra_plugins=[("my_tasks", tasks), ("my_models", models)])
    message = str(err.value)
    assert message.startswith(
        "plugin 'my_tasks' registers task 'forecast' whose baseline 'naive' uses model 'persistance', "
        "which no enabled plugin registers; did you mean 'persistence'?"
    )
    assert "(registered models: persistence)" in message


def test_consistent_models_tasks_and_baselines_are_accepted():
    tasks = _plugin(treum_tasks=[_task("forecast", ("naive", "persistence"))])
    models = _plugin(treum_models=[_model("persistence", "forecast"), _model("arima", "forecast")])
    reg = create_plugin_registry(_isolated(), extra_plugins=[("my_tasks", tasks), ("my_models", models)])
    assert reg.task("forecast").baselines[0].model in reg.specs("models")
    assert {m.task for m in reg.specs("models").values()} <= set(reg.specs("tasks"))


def test_models_are_not_checked_against_tasks_while_no_plugin_registers_one():
    reg = create_plugin_registry(_isolated(), extra_plugins=[("my_plugin", _plugin(treum_models=[_model("foo", "any")]))])
    assert reg.specs("tasks") == {}
    assert reg.model("foo").task == "any"


def test_a_task_switched_off_by_plugins_toml_is_named_with_its_plugin(tmp_path):
    source = tmp_path / "plugins.toml"
    with pytest.raises(PluginError) as err:
        create_plugin_registry(
            _isolated("my_tasks", source=source),
            extra_plugins=[
                ("my_tasks", _plugin(treum_tasks=[_task("nowcast")])),
                ("more_tasks", _plugin(treum_tasks=[_task("direction")])),
                ("my_plugin", _plugin(treum_models=[_model("foo", "nowcast")])),
            ],
        )
    assert str(err.value) == (
        f"plugin 'my_plugin' registers model 'foo' for task 'nowcast', which plugin 'my_tasks' provides "
        f"but plugins.toml ({source}) disables; remove it from 'disable' to use it"
    )


# -- plugins.toml: every name must be a plugin or a distribution ---------------------------------


def _toml(tmp_path, body):
    path = tmp_path / "plugins.toml"
    path.write_text("[plugins]\n" + textwrap.dedent(body))
    return path


def test_disabling_a_model_name_names_the_plugin_to_disable(tmp_path):
    toml = _toml(tmp_path, 'disable = ["momentum_sign"]\n')
    with pytest.raises(PluginError) as err:
        create_plugin_registry(load_plugin_settings(toml))
    assert str(err.value) == (
        f"plugins.toml ({toml}) disables 'momentum_sign', which is a model registered by plugin "
        "'example_momentum', not a plugin; disable 'example_momentum'"
    )


def test_disabling_a_spec_name_lists_what_else_its_plugin_registers(tmp_path):
    toml = _toml(tmp_path, 'disable = ["har_rv"]\n')
    plugin = _plugin(
        treum_models=[_model("har_rv", "volatility"), _model("garch_t", "volatility")],
        treum_datasets=[DatasetSpec("realized", "realised variance", lambda cfg: None)],
    )
    with pytest.raises(PluginError) as err:
        create_plugin_registry(load_plugin_settings(toml), extra_plugins=[("vol_models", plugin)])
    assert str(err.value) == (
        f"plugins.toml ({toml}) disables 'har_rv', which is a model registered by plugin 'vol_models', "
        "not a plugin; disable 'vol_models' (it also registers: datasets: realized; models: garch_t)"
    )


def test_disabling_an_unknown_name_suggests_the_closest_plugin(tmp_path):
    toml = _toml(tmp_path, 'disable = ["ts_transfomer"]\n')
    with pytest.raises(PluginError, match=r"disables 'ts_transfomer', which is neither a plugin nor an installed "
                       r"distribution; did you mean 'ts_transformer'\?"):
        create_plugin_registry(load_plugin_settings(toml))


def test_enabling_a_model_name_names_the_plugin_to_enable(tmp_path):
    toml = _toml(tmp_path, 'enable = ["momentum_sign"]\n')
    with pytest.raises(PluginError, match=r"enables 'momentum_sign', which is a model registered by plugin "
                       r"'example_momentum', not a plugin; enable 'example_momentum'$"):
        create_plugin_registry(load_plugin_settings(toml))


def test_a_disabled_spec_name_of_a_disabled_plugin_is_redundant(tmp_path):
    toml = _toml(tmp_path, 'disable = ["example_momentum", "momentum_sign"]\n')
    with pytest.raises(PluginError, match=r"'example_momentum' is already disabled, so remove 'momentum_sign'"):
        create_plugin_registry(load_plugin_settings(toml))


def test_a_distribution_name_switches_all_its_plugins(tmp_path):
    # PEP 503: case, '-', '_' and '.' do not matter
    toml = _toml(tmp_path, 'disable = ["Treum_Example.Plugin"]\n')
    reg = create_plugin_registry(load_plugin_settings(toml))
    info = next(i for i in reg.infos if i.name == "example_momentum")
    assert info.enabled is False and info.disabled_by == "Treum_Example.Plugin"
    assert "momentum_sign" not in reg.specs("models")
    assert all(i.enabled for i in reg.infos if i.distribution == "treum")
    with pytest.raises(PluginError, match=r"through its distribution 'Treum_Example.Plugin'\); "
                       r"remove 'Treum_Example.Plugin' from 'disable' to use it"):
        reg.model("momentum_sign")


def test_disabling_the_treum_distribution_switches_every_builtin_off(tmp_path):
    # the example's momentum model needs the built-in direction task: switch it off too
    toml = _toml(tmp_path, 'disable = ["treum", "example_momentum"]\n')
    reg = create_plugin_registry(load_plugin_settings(toml))
    assert not any(i.enabled for i in reg.infos if i.distribution == "treum")
    assert list(reg.specs("models")) == ["drawdown_base_rate", "drawdown_logit"]
    assert list(reg.specs("tasks")) == ["drawdown"]


def test_a_plugin_whose_task_is_switched_off_stops_start_up_naming_both(tmp_path):
    with pytest.raises(PluginError, match=r"plugin 'example_momentum' registers model 'momentum_sign' for task "
                                          r"'direction', which plugin 'tasks_direction' provides but plugins.toml"):
        create_plugin_registry(load_plugin_settings(_toml(tmp_path, 'disable = ["treum"]\n')))


def test_enable_accepts_a_distribution_name(tmp_path):
    reg = create_plugin_registry(load_plugin_settings(_toml(tmp_path, 'enable = ["treum-example-plugin"]\n')))
    assert "momentum_sign" in reg.specs("models")


def test_enabling_and_disabling_one_plugin_through_its_distribution_is_an_error(tmp_path):
    toml = _toml(tmp_path, 'enable = ["treum-example-plugin"]\ndisable = ["example_momentum"]\n')
    with pytest.raises(PluginError, match=r"both enables and disables \['example_momentum'\]; keep one"):
        create_plugin_registry(load_plugin_settings(toml))


def test_a_misnamed_disable_is_reported_before_the_broken_plugin_it_meant(tmp_path):
    folder = tmp_path / "local"
    folder.mkdir()
    (folder / "broken.py").write_text("raise RuntimeError('this plugin does not import')\n")
    toml = _toml(tmp_path, 'paths = ["local"]\ndisable = ["brokn"]\n')
    with pytest.raises(PluginError, match=r"disables 'brokn', which is neither a plugin .*did you mean 'broken'\?"):
        create_plugin_registry(load_plugin_settings(toml))


# -- "not registered" says when a disabled plugin provides the name ------------------------------


def test_a_name_from_a_disabled_plugin_says_which_plugin_and_where(tmp_path):
    toml = _toml(tmp_path, 'disable = ["example_momentum"]\n')
    reg = create_plugin_registry(load_plugin_settings(toml))
    with pytest.raises(PluginError) as err:
        reg.model("momentum_sign")
    assert str(err.value) == (
        f"model 'momentum_sign' is not registered: it is provided by plugin 'example_momentum', which "
        f"plugins.toml ({toml}) disables; remove it from 'disable' to use it"
    )
    assert reg.disabled_registrations()["example_momentum"] == {"models": ["momentum_sign"]}


def test_disabled_plugins_are_imported_only_when_an_error_needs_them(tmp_path):
    folder = tmp_path / "local"
    folder.mkdir()
    marker = tmp_path / "imported"
    (folder / "slow_data.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            from treum.core.hookspecs import hookimpl
            from treum.core.specs import DatasetSpec

            Path({str(marker)!r}).write_text("yes")

            @hookimpl
            def treum_datasets():
                return [DatasetSpec("slow_prices", "prices", lambda cfg: None)]
            """
        )
    )
    toml = _toml(tmp_path, 'paths = ["local"]\ndisable = ["slow_data"]\n')
    reg = create_plugin_registry(load_plugin_settings(toml))
    assert not marker.exists()
    with pytest.raises(PluginError, match=r"dataset 'slow_prices' is not registered: it is provided by plugin 'slow_data'"):
        reg.dataset("slow_prices")
    assert marker.exists()


def test_a_broken_disabled_plugin_breaks_nothing(tmp_path):
    folder = tmp_path / "local"
    folder.mkdir()
    (folder / "broken.py").write_text("raise RuntimeError('this plugin does not import')\n")
    toml = _toml(tmp_path, 'paths = ["local"]\ndisable = ["broken"]\n')
    reg = create_plugin_registry(load_plugin_settings(toml))
    with pytest.raises(PluginError) as err:
        reg.model("not_a_model")
    assert "is not registered" in str(err.value) and "provided by" not in str(err.value)
    assert "broken" not in reg.disabled_registrations()
    assert next(i for i in reg.infos if i.name == "broken").enabled is False
