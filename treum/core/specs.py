"""The specs that plugins return from their hooks.

A spec is plain data: a name (the registry key), what it is, and a factory.
Heavy imports (torch, lightgbm, arch) happen inside the factory, when the
thing is built, never when the spec is created.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

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
        "cross_sectional",  # its answer for one entity depends on the other entities' bars that day (weights,
        # ranks): serving reads every entity it was fitted on, never one instrument's bars alone
        "tree",  # exposes tree_model(), a native tree ensemble (LightGBM Booster) that SHAP's TreeExplainer
        # reads: exactly the trees predict uses, so SHAP values add up to its raw score
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
    task: str  # a registered TaskSpec's name; checked when the plugins are collected
    capabilities: frozenset[str]
    config_cls: type
    factory: Callable[[Any], Any]
    description: str = ""
    extra: str | None = None  # the pip extra it needs, if any
    baseline: bool = False  # baselines are scored beside models but never registered
    ablation_of: str | None = None  # a model with one part removed: leaderboards score it, the demo skips it
    demo: bool = True  # False: too costly for `treum demo` on two CPU cores (leaderboards still run it)
    # with the ``gpu`` capability: the config values that put it on a GPU a search's trial holds
    # (None: ``accelerator: auto`` when its config has that field)
    gpu_config: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        unknown = set(self.capabilities) - CAPABILITIES
        if unknown:
            raise ValueError(
                f"model '{self.name}': unknown capabilities {sorted(unknown)} (known: {sorted(CAPABILITIES)})"
            )


@dataclass(frozen=True)
class Baseline:
    """A baseline of a task: a registered model under a fixed config, shown under ``label``."""

    label: str
    model: str
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskExample:
    """A small slice of real data on which the contract tests fit every model of a task.

    ``data`` is a registered data set, ``start``/``end`` bound it, ``config`` overrides the
    task's config. ``panel``/``entities`` name a data set with several entities, on which
    every model that declares ``multi_asset`` is checked. ``features`` is the feature set
    the example is computed with (a task whose models read other features names its own);
    ``data_config`` sets more of the data set's config (a simulator's number of users).
    """

    data: str
    start: str
    end: str
    config: Mapping[str, Any] = field(default_factory=dict)
    panel: str | None = None
    entities: tuple[str, ...] = ()
    features: str = "technical"
    data_config: Mapping[str, Any] = field(default_factory=dict)  # more of the data set's config (a simulator's size)

    def load_config(self) -> dict[str, Any]:
        """The data set's config for the example: its bounds and ``data_config``."""
        return {**self.data_config, "start": self.start, "end": self.end}


@dataclass(frozen=True)
class TaskSpec:
    """What a task plugin registers: what a prediction means and how it is scored.

    ``factory(config)`` builds a ``treum.core.task.Task`` from its validated config
    (``config_cls``, from ``conf/task/<name>.yaml``); the task then answers every
    question that depends on its config (labels, prediction columns, scoring).
    ``headline`` lists the leaderboard's columns; ``reference`` is the label of the
    baseline that every other row is compared with (``Task.compare``), if any.
    ``data`` is the data set the task is demonstrated on (``treum demo``); ``demo`` lists the
    Hydra overrides of that run beyond ``task=`` and ``data=`` (``("features=cross_asset",)``,
    ``("experiment=forecast_macro",)``): a task whose data, features or horizons differ from
    the defaults says so here, never in the demo's code.
    """

    name: str
    description: str
    config_cls: type
    factory: Callable[[Any], Any]
    primary_metric: str
    higher_is_better: bool
    baselines: tuple[Baseline, ...]
    headline: tuple[str, ...]
    example: TaskExample
    reference: str | None = None
    data: str | None = None
    demo: tuple[str, ...] = ()
    data_kind: str = "panel"  # what its data sets return: "panel" (bars in time) or "corpus" (labelled texts)

    def __post_init__(self) -> None:
        if self.data_kind not in DATA_KINDS:
            raise ValueError(f"task '{self.name}': data_kind must be one of {sorted(DATA_KINDS)}, got {self.data_kind!r}")
        labels = [b.label for b in self.baselines]
        if len(set(labels)) != len(labels):
            raise ValueError(f"task '{self.name}': two baselines share a label ({labels})")
        if self.reference is not None and self.reference not in labels:
            raise ValueError(f"task '{self.name}': reference '{self.reference}' is not one of its baselines {labels}")


DATA_KINDS = frozenset({"panel", "corpus"})


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: ``load(config) -> Panel`` (a long frame indexed by (timestamp, entity)).

    ``kind="corpus"`` marks labelled text instead: ``load`` returns a frame indexed by ``doc``
    with a ``text`` and a ``label`` column (``treum.core.corpus``), for the tasks whose
    ``data_kind`` is ``"corpus"``. ``caveat`` is printed beside every leaderboard on the data
    set (survivorship, a short sample, a licence): what a reader must know before trusting a
    figure. ``missing(config)``, when given, says why the data set cannot be loaded on this
    machine (a research file that is not there, and where to put it), or None when it can:
    ``treum demo`` skips such a task and says why.
    """

    name: str
    description: str
    load: Callable[[Any], Any]
    source: str = ""
    frequency: str = "1d"
    caveat: str = ""
    kind: str = "panel"
    missing: Callable[[Any], str | None] | None = None
    simulated: bool = False  # made by a simulator, not observed: every report and leaderboard says so

    def __post_init__(self) -> None:
        if self.kind not in DATA_KINDS:
            raise ValueError(f"data set '{self.name}': kind must be one of {sorted(DATA_KINDS)}, got {self.kind!r}")


@dataclass(frozen=True)
class FeatureSetSpec:
    """A feature set: ``compute(panel, config) -> DataFrame`` of feature columns on the panel's index.

    A feature at time t may use data up to and including t only.
    """

    name: str
    description: str
    compute: Callable[[Any, Any], Any]
    columns: tuple[str, ...] = ()
    # columns a person cannot change (a user's age band, an instrument's asset class): counterfactuals keep them
    immutable: tuple[str, ...] = ()


EXPLAINER_SCOPES = frozenset({"local", "global"})


@dataclass(frozen=True)
class ExplainerSpec:
    """An explainer: ``explain(target, rows, config) -> dict``, a JSON-serialisable result.

    ``target`` is a ``treum.core.explain.ExplainTarget`` (the fitted model, its task, background
    rows of its input, labelled held-out rows if any); ``rows`` are input rows to explain (None
    when a ``global`` explainer is given none); ``config`` is ``defaults`` completed with the
    caller's values (``treum.core.explain.explain`` refuses a key ``defaults`` lacks, so every
    key an explainer reads is listed there with its default). The result holds plain floats,
    lists and strings and says its ``method``; the caller adds ``explainer``, ``model``, ``output``.

    ``requires``: capabilities the model must have; ``excludes``: capabilities it must not have
    (an explainer that perturbs rows excludes ``sequential`` models). They are checked against
    the model's spec, never its class. ``scope``: ``"local"`` explains the given rows,
    ``"global"`` explains the model over data (rows optional). ``report_rows``: how many of the
    newest rows ``treum report`` gives a local explainer.
    """

    name: str
    description: str
    explain: Callable[..., Any]
    requires: frozenset[str] = field(default_factory=frozenset)
    excludes: frozenset[str] = field(default_factory=frozenset)
    scope: str = "local"
    defaults: Mapping[str, Any] = field(default_factory=dict)
    report_rows: int = 3

    def __post_init__(self) -> None:
        if self.scope not in EXPLAINER_SCOPES:
            raise ValueError(f"explainer '{self.name}': scope must be one of {sorted(EXPLAINER_SCOPES)}, "
                             f"got {self.scope!r}")
        unknown = (set(self.requires) | set(self.excludes)) - CAPABILITIES
        if unknown:
            raise ValueError(f"explainer '{self.name}': unknown capabilities {sorted(unknown)} "
                             f"(known: {sorted(CAPABILITIES)})")
        both = set(self.requires) & set(self.excludes)
        if both:
            raise ValueError(f"explainer '{self.name}' both requires and excludes {sorted(both)}")


@dataclass(frozen=True)
class FairnessCheckSpec:
    """A fairness check: ``check(decisions, segments, config) -> dict``.

    ``decisions`` comes from the task (``Task.decisions``): per out-of-sample row, ``selected`` (the
    model recommended it), ``positive`` (the outcome the decision is for) and ``quality`` (a per-query
    figure such as NDCG, on one row per query); ``segments`` holds the rows' user segments. ``config``
    is an instance of ``config_cls`` (thresholds from ``conf/fairness/<name>.yaml``). The result is a
    JSON-serialisable dict with ``checks`` (one pass or fail per check and segment) and ``by_group``.
    """

    name: str
    description: str
    check: Callable[..., Any]
    config_cls: type | None = None


@dataclass(frozen=True)
class MonitorSpec:
    """A monitor: ``compute(reference, current, config) -> dict`` of drift or health figures."""

    name: str
    description: str
    compute: Callable[..., Any]


@dataclass(frozen=True)
class ServeRouteSpec:
    """An extra HTTP route for the serving application: ``path``, ``methods``, an ``endpoint`` and a ``scope``.

    ``scope`` is what an API key (``Authorization: Bearer <key>``) needs to call the route, one
    of ``treum.registry.keys.SCOPES`` (``admin`` keys may call every route): ``"read"`` by
    default; ``"predict"`` follows ``serve.require_key_for_predict`` exactly as the predict routes
    do (open unless it is true); ``None`` makes an open route, which a plugin must ask for.
    ``example`` is a request ``treum demo`` sends to show the route (its first method), and ``shows``
    the parts of the answer it prints (``"historical.var_99_h1"``).
    """

    name: str
    path: str
    endpoint: Callable[..., Any]
    methods: tuple[str, ...] = ("GET",)
    scope: str | None = "read"
    example: Mapping[str, Any] | None = None  # httpx keywords of a request that shows it (``json=``, ``params=``)
    shows: tuple[str, ...] = ()  # dotted paths of the example's answer that the demo prints (all when empty)
    task: str | None = None  # the task whose deployed model answers it (the demo deploys one to show the route)


@dataclass(frozen=True)
class CommandSpec:
    """A ``treum`` subcommand from a plugin: ``configure(parser)`` adds its flags, ``run(args, host)`` does it.

    ``run`` returns the exit status; a ``TreumError`` it raises prints as one line and exits 2,
    as the built-in commands' do.
    """

    name: str
    help: str
    configure: Callable[[Any], None]
    run: Callable[[Any, Any], int]
