"""Config composition and validation: every mistake stops the run before any work, naming the key."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from treum.commands.compose import compose_run, expand_multirun
from treum.core.config import build_spec_config
from treum.core.errors import ConfigError


def test_model_config_comes_from_its_yaml(plugins):
    cfg = compose_run(["model=garch"], plugins)
    assert cfg.model.name == "garch" and cfg.model.vol == "gjr"
    # the task follows the model when the run does not choose one
    assert cfg.task.name == "volatility"


def test_overrides_reach_the_model_config(plugins):
    cfg = compose_run(["model=gbm_direction", "model.num_leaves=7", "seed=3"], plugins)
    built = build_spec_config(plugins.model("gbm_direction"), dict(cfg.model))
    assert built.num_leaves == 7 and built.seed == 3


def test_misspelled_model_name_suggests_the_registered_one(plugins):
    with pytest.raises(ConfigError, match=r"model 'garhc' is not registered; did you mean 'garch'\?"):
        compose_run(["model=garhc"], plugins)


def test_unknown_model_key_names_the_key_and_the_closest_field(plugins):
    with pytest.raises(ConfigError, match=r"model\.num_leafs: unknown key; did you mean 'num_leaves'"):
        compose_run(["model=gbm_direction", "model.num_leafs=7"], plugins)


def test_added_unknown_key_is_refused_by_the_dataclass(plugins):
    with pytest.raises(ConfigError, match=r"model\.depth: unknown key for model 'gbm_direction'"):
        compose_run(["model=gbm_direction", "+model.depth=3"], plugins)


def test_wrong_type_is_refused(plugins):
    with pytest.raises(ConfigError, match=r"model\.num_leaves: expected an integer, got 'many'"):
        compose_run(["model=gbm_direction", "model.num_leaves=many"], plugins)


def test_literal_choices_are_enforced(plugins):
    with pytest.raises(ConfigError, match=r"model\.vol: must be one of \['garch', 'gjr'\]"):
        compose_run(["model=garch", "model.vol=egarch"], plugins)


def test_cross_field_validation(plugins):
    with pytest.raises(ConfigError, match="divisible by n_heads"):
        compose_run(["model=ts_transformer", "model.d_model=30"], plugins)


def test_task_that_contradicts_the_model_is_refused(plugins):
    with pytest.raises(ConfigError, match="is a volatility model but the run chose task=direction"):
        compose_run(["model=garch", "task=direction"], plugins)


def test_unknown_data_set_suggests(plugins):
    with pytest.raises(ConfigError, match=r"dataset 'sp5000' is not registered; did you mean 'sp500'"):
        compose_run(["data=sp5000"], plugins)


def test_experiment_bundle_applies_its_overrides(plugins):
    cfg = compose_run(["experiment=stocks_direction"], plugins)
    assert cfg.data.name == "sp500_stocks" and cfg.eval.refit_every == 126


def test_third_party_model_config_is_found_on_the_search_path(plugins):
    cfg = compose_run(["model=momentum_sign"], plugins)
    assert cfg.model.lookback == 21


def test_multirun_expands_the_sweep_in_order():
    combos = expand_multirun(["model=gbm_direction,logit_direction", "data=sp500,nasdaq", "seed=1"])
    assert combos == [
        ["model=gbm_direction", "data=sp500", "seed=1"],
        ["model=gbm_direction", "data=nasdaq", "seed=1"],
        ["model=logit_direction", "data=sp500", "seed=1"],
        ["model=logit_direction", "data=nasdaq", "seed=1"],
    ]


@pytest.mark.parametrize("override,message", [
    ("eval.refit_every=abc", "eval.refit_every: expected an integer, got 'abc'"),
    ("eval.window=sliding", "eval.window: must be one of ['expanding', 'rolling'], got 'sliding'"),
    ("task.ties=up", "task.ties: must be one of ['drop', 'down'], got 'up'"),
    ("task.horizon=soon", "task.horizon: expected an integer, got 'soon'"),
    ("+task.horizn=2", "task.horizn: unknown key for task 'direction'; did you mean 'horizon'?"),
])
def test_eval_and_task_configs_go_through_the_one_validator(plugins, override, message):
    with pytest.raises(ConfigError) as err:
        compose_run(["model=logit_direction", override], plugins)
    assert message in str(err.value)


class Side(enum.Enum):
    LONG = "long"
    SHORT = "short"


@dataclass
class Inner:
    depth: int = 1


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    path: Path = Path(".")
    side: Side = Side.LONG
    weights: dict[str, float] = field(default_factory=dict)


def test_the_validator_covers_nested_dataclasses_paths_enums_and_dicts():
    from treum.core.config import build_config

    built = build_config(Outer, {"inner": {"depth": 3}, "path": "/tmp/x", "side": "short", "weights": {"a": 1}})
    assert built.inner.depth == 3 and built.path == Path("/tmp/x") and built.side is Side.SHORT
    assert built.weights == {"a": 1.0}
    for values, message in (({"inner": {"dpeth": 3}}, "x.inner.dpeth: unknown key for x; did you mean 'depth'?"),
                            ({"side": "flat"}, "x.side: must be one of ['long', 'short'], got 'flat'"),
                            ({"weights": {"a": "heavy"}}, "x.weights.a: expected a number, got 'heavy'"),
                            ({"inner": {"depth": "deep"}}, "x.inner.depth: expected an integer, got 'deep'")):
        with pytest.raises(ConfigError) as err:
            build_config(Outer, values, "x")
        assert message in str(err.value), str(err.value)


def test_the_purge_and_the_registry_group_are_checked_before_any_work(plugins):
    with pytest.raises(ConfigError, match="eval.purge=2 is shorter"):
        compose_run(["model=garch", "eval.purge=2"], plugins)
    with pytest.raises(ConfigError, match="registry.register: expected true or false, got 'yes please'"):
        compose_run(["model=garch", "registry.register=yes please"], plugins)
