"""The plugin manager: discovery, plugins.toml policy, name clashes, hook typos, documentation."""

from __future__ import annotations

import inspect
import textwrap
import types

import pytest

from treum.core import hookspecs
from treum.core.errors import PluginError
from treum.core.hookspecs import hookimpl
from treum.core.plugins import PluginSettings, create_plugin_registry, load_plugin_settings
from treum.core.specs import DatasetSpec

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
    with pytest.raises(PluginError, match=r"'garch_hybird' is not registered; did you mean 'garch'\?"):
        plugins.model("garch_hybird")


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
    with pytest.raises(PluginError, match="not registered"):
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
    assert info.distribution == "treum-example-plugin" and info.version == "0.2.0"
    assert info.registers == {"models": ["momentum_sign"]}
    assert "pkg://treum_example_plugin.conf" in plugins.searchpath


def _hook_names():
    return [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("treum_")]


@pytest.mark.parametrize("hook", _hook_names())
def test_every_hook_has_a_contract_docstring(hook):
    doc = getattr(hookspecs, hook).__doc__ or ""
    assert len(doc.strip()) > 40, f"{hook} needs a docstring that states its contract"


@pytest.mark.parametrize("hook", _hook_names())
def test_every_hook_is_documented_in_the_readme(hook):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"`{hook}`" in readme, f"README.md does not document the hook {hook}"
