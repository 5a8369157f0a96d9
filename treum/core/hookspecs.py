"""The hooks a treum plugin can implement.

Every hook returns a list of specs (or of search-path strings). The host merges
the lists of all plugins sorted by name; two plugins that claim one name are an
error naming both, so no result depends on the order pluggy calls plugins in.
Plugins must not mutate their arguments (the hooks take none).

The host derives what it collects from this module: a hook ``treum_<kind>``
registers specs of kind ``<kind>`` (``treum_models`` -> ``models``), except a hook
marked with ``returns_search_path``, whose strings go to Hydra's search path.
A new hook needs nothing but its function here, its docstring, and a consumer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pluggy

PROJECT = "treum"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

_Hook = TypeVar("_Hook", bound=Callable)

# hook name -> the later feature that will consume what it collects. A hook listed
# here is collected and documented but nothing reads it yet; the meta-tests
# (tests/test_hooks_meta.py) fail when a listed hook gets a consumer, so the
# entry is removed when that feature lands.
WAITING: dict[str, str] = {
    "treum_monitors": "serving monitors: drift and live-metric alerts with retraining jobs",
}


def returns_search_path(hook: _Hook) -> _Hook:
    """Mark a hook that returns Hydra search-path strings rather than named specs."""
    hook.returns_search_path = True  # type: ignore[attr-defined]
    return hook


@hookspec
def treum_tasks() -> list:
    """Return tasks, as ``TaskSpec`` objects.

    A task owns what a prediction means and how it is scored: its config dataclass
    (``conf/task/<name>.yaml``), targets, label horizon or after-the-fact labels,
    prediction columns, range checks, scoring, primary metric, baselines, reference
    comparisons, leaderboard headline, the mapping to ``model_performance_metrics``,
    how a served prediction is scored against its outcome, and a small example for
    the contract tests.

    Every model's ``spec.task`` must name a registered task, and every baseline of
    a task must name a registered model; the host checks both when it collects.
    """


@hookspec
def treum_datasets() -> list:
    """Return the data sets this plugin provides, as ``DatasetSpec`` objects.

    ``load(config)`` must return a validated Panel (see ``treum.core.data``) and
    must not reach the network: data comes from installed packages or user files.
    """


@hookspec
def treum_features() -> list:
    """Return feature sets, as ``FeatureSetSpec`` objects.

    ``compute(panel, config)`` returns feature columns on the panel's index,
    computed per entity from data up to each row's timestamp (no look-ahead).
    """


@hookspec
def treum_models() -> list:
    """Return models, as ``ModelSpec`` objects.

    Each name must have a ``conf/model/<name>.yaml`` on the config search path.
    A model implements ``fit``, ``predict``, ``save`` and ``load`` (``treum.core.model``).
    """


@hookspec
def treum_explainers() -> list:
    """Return explainers, as ``ExplainerSpec`` objects; they check capabilities, not classes."""


@hookspec
def treum_fairness_checks() -> list:
    """Return fairness checks, as ``FairnessCheckSpec`` objects."""


@hookspec
def treum_monitors() -> list:
    """Return drift and health monitors, as ``MonitorSpec`` objects."""


@hookspec
def treum_serve_routes() -> list:
    """Return extra HTTP routes for ``treum serve``, as ``ServeRouteSpec`` objects."""


@hookspec
def treum_commands() -> list:
    """Return extra ``treum`` subcommands, as ``CommandSpec`` objects.

    ``treum <name> ...`` parses its flags with the parser ``configure`` filled and calls
    ``run(args, host)``; ``host`` (``treum.commands.host.CommandHost``) opens the registry,
    loads deployed versions and data sets, so a plugin needs no import beyond ``treum.core``.
    A name that a built-in command already has is refused.
    """


@hookspec
@returns_search_path
def treum_config_searchpath() -> list:
    """Return Hydra search-path entries (``pkg://your_package.conf``) holding your config groups.

    A plugin that adds a model ships ``conf/model/<name>.yaml`` there.
    """
