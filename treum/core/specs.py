"""The specs that plugins return from their hooks.

A spec is plain data: a name (the registry key), what it is, and a factory.
Heavy imports (torch, lightgbm, arch) happen inside the factory, when the
thing is built, never when the spec is created.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TASKS = frozenset(
    {
        "direction",
        "forecast",
        "volatility",
        "regime",
        "anomaly",
        "portfolio",
        "sentiment",
        "pattern",
        "pricing",
        "ranking",
        "recommendation",
    }
)

CAPABILITIES = frozenset(
    {
        "probabilistic",  # predicts a distribution or class probabilities, not only a point
        "multi_asset",  # fits one model over many entities of a panel
        "multi_horizon",  # predicts several horizons at once
        "native_importance",  # exposes feature_importance()
        "gpu",  # can use a GPU when one is there
        "online_update",  # can update on new bars without a full refit
        "sequential",  # needs the history before each row to predict it (windows, filters)
        "uses_features",  # consumes the feature set's columns (otherwise raw prices/returns)
    }
)


@dataclass(frozen=True)
class ModelSpec:
    """What a model plugin registers.

    ``name`` is the registry key and equals the stem of its ``conf/model/<name>.yaml``.
    ``factory(config)`` builds an unfitted model from a validated config dataclass.
    ``load(dir)`` restores a saved model; it must verify the manifest (see ``treum.core.model``).
    """

    name: str
    family: str
    task: str
    capabilities: frozenset[str]
    config_cls: type
    factory: Callable[[Any], Any]
    description: str = ""
    extra: str | None = None  # the pip extra it needs, if any
    baseline: bool = False  # baselines are scored beside models but never registered

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"model '{self.name}': unknown task '{self.task}' (one of {sorted(TASKS)})")
        unknown = set(self.capabilities) - CAPABILITIES
        if unknown:
            raise ValueError(
                f"model '{self.name}': unknown capabilities {sorted(unknown)} (known: {sorted(CAPABILITIES)})"
            )


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: ``load(config) -> Panel`` (a long frame indexed by (timestamp, entity))."""

    name: str
    description: str
    load: Callable[[Any], Any]
    source: str = ""
    frequency: str = "1d"


@dataclass(frozen=True)
class FeatureSetSpec:
    """A feature set: ``compute(panel, config) -> DataFrame`` of feature columns on the panel's index.

    A feature at time t may use data up to and including t only.
    """

    name: str
    description: str
    compute: Callable[[Any, Any], Any]
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExplainerSpec:
    """An explainer: ``explain(model, data, config) -> dict``; ``requires`` lists capabilities."""

    name: str
    description: str
    explain: Callable[..., Any]
    requires: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class FairnessCheckSpec:
    """A fairness check: ``check(predictions, outcomes, segments, config) -> dict``."""

    name: str
    description: str
    check: Callable[..., Any]


@dataclass(frozen=True)
class MonitorSpec:
    """A monitor: ``compute(reference, current, config) -> dict`` of drift or health figures."""

    name: str
    description: str
    compute: Callable[..., Any]


@dataclass(frozen=True)
class ServeRouteSpec:
    """An extra HTTP route for the serving application: ``path``, ``methods`` and an ``endpoint``."""

    name: str
    path: str
    endpoint: Callable[..., Any]
    methods: tuple[str, ...] = ("GET",)
