"""Plugin commands (``treum_commands``): ``treum portfolio`` from the portfolio task's plugin, and the rules."""

from __future__ import annotations

import json
import types

import pytest

from treum import cli
from treum.core.errors import PluginError
from treum.core.hookspecs import hookimpl
from treum.core.plugins import PluginSettings, create_plugin_registry
from treum.core.specs import CommandSpec
from treum.registry.store import Registry


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from tests.serve.conftest import fit_and_register

    plugins = create_plugin_registry(PluginSettings())
    home = tmp_path_factory.mktemp("cli-portfolio")
    reg = Registry(home=home)
    m = fit_and_register(reg, plugins, "inverse_vol", home, end="2016-12-31")
    reg.deploy("inverse_vol", m.model_version, actor="test", reason="cli test")
    reg.close()
    return home


def test_portfolio_weights_and_rebalance_from_the_cli(home, monkeypatch, capsys):
    monkeypatch.setenv("TREUM_HOME", str(home))
    assert cli.main(["portfolio", "weights", "--as-of", "2020-03-18", "--json"]) == 0
    weights = json.loads(capsys.readouterr().out)
    assert weights["rebalanced_on"] == "2020-03-02" and sum(weights["weights"].values()) == pytest.approx(1)
    assert weights["model"].startswith("inverse_vol v")
    assert cli.main(["portfolio", "rebalance", "--holdings", "AAPL=1000,XOM=1000", "--as-of", "2020-03-18",
                     "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["target_weights"] == pytest.approx(weights["weights"])
    assert plan["cost"] == pytest.approx(plan["traded_value"] * 10 / 1e4)


def test_cli_errors_are_one_line(home, monkeypatch, capsys):
    monkeypatch.setenv("TREUM_HOME", str(home))
    assert cli.main(["portfolio", "rebalance", "--holdings", "AAPL:1000"]) == 2
    assert "is not NAME=NUMBER" in capsys.readouterr().err
    assert cli.main(["portfolio", "risk", "--weights", "AAPL=0.5"]) == 2
    assert "sum to 0.5, not 1" in capsys.readouterr().err
    assert cli.main(["portfolio", "risk", "--weights", "AAPL=1", "--data", "sp500_stocks", "--window", "10"]) == 2
    assert "window: Input should be greater than or equal to 250" in capsys.readouterr().err
    assert cli.main(["portfolio", "risk", "--weights", "FF3=1", "--data", "ff3"]) == 2
    assert "has no close prices" in capsys.readouterr().err
    assert cli.main(["portfolio", "weights", "--model", "nope"]) == 2
    assert "no model 'nope' of task 'portfolio' is deployed" in capsys.readouterr().err


def test_a_plugin_command_cannot_take_a_built_in_name():
    def run(args, host):
        return 0

    plugin = types.SimpleNamespace(treum_commands=hookimpl(lambda: [CommandSpec("serve", "x", lambda p: None, run)]))
    reg = create_plugin_registry(PluginSettings(), extra_plugins=[("clash", plugin)])
    with pytest.raises(PluginError, match="registers the command 'serve'"):
        cli.build_parser(reg)
