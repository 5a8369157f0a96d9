"""The hooks a treum plugin can implement.

Every hook returns a list of specs (or of search-path strings). The host merges
the lists of all plugins sorted by name; two plugins that claim one name are an
error naming both, so no result depends on the order pluggy calls plugins in.
Plugins must not mutate their arguments (the hooks take none).
"""

from __future__ import annotations

import pluggy

PROJECT = "treum"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


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
def treum_config_searchpath() -> list:
    """Return Hydra search-path entries (``pkg://your_package.conf``) holding your config groups.

    A plugin that adds a model ships ``conf/model/<name>.yaml`` there.
    """
