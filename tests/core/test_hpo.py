"""The search space, its validation, the split a search may see, and how a trial asks for its resources."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from treum.core.data import Segments
from treum.core.errors import ConfigError
from treum.core.evaluation import WalkForwardConfig, make_folds
from treum.core.hpo import HpoConfig, as_override, parse_space, search_frame, search_split

COMPOSED = {"model": {"name": "gbm_direction", "learning_rate": 0.02, "num_leaves": 15},
            "features": {"name": "technical", "windows": [5, 21]},
            "eval": {"refit_every": 252}, "task": {"name": "direction", "horizon": 1}, "data": {"name": "sp500"}}


def test_a_space_of_known_keys_parses_into_dimensions():
    dims = parse_space({"model.learning_rate": {"loguniform": [0.001, 0.1]}, "model.num_leaves": {"randint": [4, 63]},
                        "features.windows": {"choice": [[5, 21], [10, 63]]}}, COMPOSED)
    assert [(d.key, d.kind, d.args) for d in dims] == [
        ("model.learning_rate", "loguniform", (0.001, 0.1)), ("model.num_leaves", "randint", (4, 63)),
        ("features.windows", "choice", ([5, 21], [10, 63]))]
    assert dims[1].corners() == [4, 63]


def test_an_unknown_key_names_the_closest_key():
    with pytest.raises(ConfigError) as err:
        parse_space({"model.learning_rat": {"uniform": [0.01, 0.1]}}, COMPOSED)
    assert "'model.learning_rat' is not a key" in str(err.value) and "did you mean 'model.learning_rate'" in str(err.value)


@pytest.mark.parametrize("key, words", [
    ("eval.refit_every", "split"), ("task.horizon", "labels"), ("data.name", "what the search is scored on"),
    ("seed", "not a hyper-parameter"), ("model.name", "not a key"),
])
def test_the_split_the_labels_and_the_data_are_not_hyper_parameters(key, words):
    with pytest.raises(ConfigError, match=words):
        parse_space({key: {"choice": [1, 2]}}, {**COMPOSED, "seed": 0})


@pytest.mark.parametrize("spec, words", [
    ({"logunform": [0.1, 1]}, "did you mean 'loguniform'"),
    ({"uniform": [1.0, 0.5]}, "must be below the high end"),
    ({"loguniform": [0.0, 1.0]}, "needs a low end above 0"),
    ({"randint": [1.5, 8]}, "takes integers"),
    ({"uniform": [0.1]}, r"takes \[low, high\]"),
    ({"quniform": [0.1, 1.0, 0]}, "step must be above 0"),
    ({"choice": [1, 1]}, "lists a value twice"),
    ({"uniform": [0.1, 1], "choice": [1, 2]}, "two distributions"),
    ({"uniform": [0.1, 1], "steps": 3}, "one distribution"),
    ({"uniform": ["a", "b"]}, "takes numbers"),
])
def test_a_bad_distribution_says_what_is_wrong(spec, words):
    with pytest.raises(ConfigError, match=words):
        parse_space({"model.learning_rate": spec}, COMPOSED)


def test_the_hpo_config_refuses_an_empty_space_and_nonsense_budgets():
    from treum.core.config import build_config

    with pytest.raises(ConfigError, match="space is empty"):
        build_config(HpoConfig, {}, "hpo")
    space = {"model.c": {"uniform": [0.1, 1]}}
    with pytest.raises(ConfigError, match="num_samples must be at least 1"):
        build_config(HpoConfig, {"space": space, "num_samples": 0}, "hpo")
    with pytest.raises(ConfigError, match="reduction_factor must be above 1"):
        build_config(HpoConfig, {"space": space, "scheduler": {"reduction_factor": 1}}, "hpo")
    with pytest.raises(ConfigError, match="hpo.scheduler.name: must be one of"):
        build_config(HpoConfig, {"space": space, "scheduler": {"name": "hyperband"}}, "hpo")
    with pytest.raises(ConfigError, match="unknown key"):
        build_config(HpoConfig, {"space": space, "num_sample": 3}, "hpo")


@pytest.mark.parametrize("value", [0.0123, 31, True, "cosine", [16, 32], None])
def test_an_override_reads_back_as_the_same_value(value):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([as_override("model.x", value)])[0]
    assert parsed.value() == value


def _bars(start: str, end: str) -> pd.DatetimeIndex:
    return pd.bdate_range(start, end)


def test_the_search_validates_on_the_valid_segment_and_stops_before_the_test_segment():
    ts = _bars("2000-01-03", "2012-12-31")
    segments = Segments(train=(ts[0], pd.Timestamp("2007-12-31")), valid=(pd.Timestamp("2008-01-01"), pd.Timestamp("2009-12-31")),
                        test=(pd.Timestamp("2010-01-01"), pd.Timestamp("2012-12-31")))
    cfg = HpoConfig(space={"model.c": {"uniform": [0.1, 1]}}, folds=4)
    split = search_split(ts, segments, cfg, purge=21, embargo=5)
    first_test = int(np.searchsorted(ts, segments.test[0]))
    assert split.end == ts[first_test - 1 - 21 - 5]  # no label of the search is decided by a test-segment price
    assert split.segments.test[0] == pd.Timestamp("2008-01-01") and split.segments.test[1] == split.end
    assert split.valid_bars == int(((ts >= segments.valid[0]) & (ts <= segments.valid[1])).sum())
    frame = pd.DataFrame({"x": 1.0}, index=pd.MultiIndex.from_product([ts, ["A"]], names=["timestamp", "entity"]))
    seen = search_frame(frame, split)
    assert seen.index.get_level_values("timestamp").max() == split.end < segments.test[0]
    folds = make_folds(seen.index.get_level_values("timestamp"), split.segments,
                       WalkForwardConfig(refit_every=split.block_bars, embargo=5), 21, valid_len=split.valid_bars)
    assert len(folds) == 4
    for fold in folds:  # each block is predicted by a fit on earlier bars, with its own validation rows before it
        assert fold.train[1] < fold.valid[0] <= fold.valid[1] < fold.test[0] <= fold.test[1] <= split.end


def test_without_a_valid_segment_the_search_takes_the_bars_before_the_test_segment():
    ts = _bars("2000-01-03", "2012-12-31")
    segments = Segments(train=(ts[0], pd.Timestamp("2009-12-31")), valid=None,
                        test=(pd.Timestamp("2010-01-01"), pd.Timestamp("2012-12-31")))
    split = search_split(ts, segments, HpoConfig(space={"model.c": {"uniform": [0.1, 1]}}, search_bars=300, folds=3),
                         purge=1, embargo=0)
    span = ((ts >= split.segments.test[0]) & (ts <= split.segments.test[1])).sum()
    assert span == 300 and split.block_bars == 100 and split.valid_bars == 0 and "no valid segment" in split.source


def test_a_validation_span_shorter_than_its_folds_is_refused():
    ts = _bars("2000-01-03", "2002-12-31")
    segments = Segments(train=(ts[0], pd.Timestamp("2001-12-20")), valid=(pd.Timestamp("2001-12-21"), pd.Timestamp("2001-12-24")),
                        test=(pd.Timestamp("2002-01-01"), pd.Timestamp("2002-12-31")))
    with pytest.raises(ConfigError, match="fewer than hpo.folds=4"):
        search_split(ts, segments, HpoConfig(space={"model.c": {"uniform": [0.1, 1]}}, folds=4), purge=0, embargo=0)


def test_a_trial_asks_for_a_gpu_only_when_the_config_does_and_the_cluster_has_one():
    from treum.commands.tune import trial_resources

    hpo = HpoConfig(space={"model.c": {"uniform": [0.1, 1]}})
    hpo.resources.gpu = 0.5
    asked, where = trial_resources(hpo, {"CPU": 16.0, "GPU": 1.0})
    assert asked == {"cpu": 1.0, "gpu": 0.5} and "0.5 GPU" in where
    asked, where = trial_resources(hpo, {"CPU": 2.0})
    assert asked == {"cpu": 1.0, "gpu": 0.0} and "Ray sees no GPU" in where
    hpo.resources.gpu, hpo.resources.cpu = 0.0, 4.0
    with pytest.raises(ConfigError, match="more than the 2 CPUs"):
        trial_resources(hpo, {"CPU": 2.0})
    hpo.resources.cpu, hpo.resources.gpu = 1.0, 2.0
    with pytest.raises(ConfigError, match="more than the 1 GPUs"):
        trial_resources(hpo, {"CPU": 2.0, "GPU": 1.0})


def test_a_trial_with_a_gpu_puts_its_model_on_it(plugins):
    import dataclasses

    from treum.commands.tune import device_settings

    lightning, gbm = plugins.model("ts_transformer"), plugins.model("gbm_direction")
    assert device_settings(lightning, 3, gpu=True) == {"num_threads": 3, "accelerator": "auto"}
    assert device_settings(lightning, 1, gpu=False) == {"num_threads": 1}
    assert device_settings(lightning, 2, gpu=True, searched=frozenset({"num_threads"})) == {"accelerator": "auto"}
    # no gpu capability (the PyPI LightGBM is CPU-only): its threads follow the trial, never a GPU setting
    assert device_settings(gbm, 2, gpu=True) == {"num_threads": 2}
    built = dataclasses.replace(gbm, capabilities=gbm.capabilities | {"gpu"}, gpu_config={"device_type": "gpu"})
    assert device_settings(built, 2, gpu=True) == {"num_threads": 2, "device_type": "gpu"}
    assert device_settings(plugins.model("logit_direction"), 1, gpu=True) == {}


def test_the_model_must_accept_both_ends_of_a_range_before_any_trial(plugins):
    from omegaconf import OmegaConf

    from treum.commands.tune import check_space

    spec = plugins.model("gbm_direction")
    values = {"learning_rate": 0.02, "num_leaves": 15}
    dims = parse_space({"model.num_leaves": {"uniform": [1.5, 40.0]}}, COMPOSED)
    with pytest.raises(ConfigError, match="hpo.space.model.num_leaves: model 'gbm_direction' refuses 1.5"):
        check_space(dims, spec, values, plugins, OmegaConf.create(COMPOSED))
    dims = parse_space({"model.learning_rate": {"uniform": [0.5, 2.0]}}, COMPOSED)
    with pytest.raises(ConfigError, match=r"refuses 2.0: model: learning_rate must be in \(0, 1\]"):
        check_space(dims, spec, values, plugins, OmegaConf.create(COMPOSED))
