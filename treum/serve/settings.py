"""The serving settings (``conf/serve/ensemble.yaml``), validated once at start-up.

The config names tasks and models only as values: which model answers a task
(``tasks.<task>.model``, else the one deployed model of that task), the aliases
of ``/predict/<task>``, the task whose answer is the market regime, and the
ensemble (its members' task, members, and weights per regime label). No task or
model is named in this module.

``ServeSettings.from_config(values)`` validates with the project's one validator
(``treum.core.config.build_config``): an unknown key gets a did-you-mean, a wrong
type names its key (``serve.port: expected an integer, got 'abc'``).
``check_plugins(settings, plugins)`` then checks the names against the plugins (and that no task
is named like a built-in predict route).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from treum.core.config import build_config, config_dict
from treum.core.errors import ConfigError, PluginError, did_you_mean

PLACEMENTS = ("local", "remote")
ENGINES = ("ray", "uvicorn")
ALIAS_INSTRUMENTS = ("request", "market")
ENSEMBLE_ROUTE = "price"  # /predict/price: the specification's name of the regime-weighted ensemble
BATCH_ROUTE = "batch"
RESERVED_ROUTES = (ENSEMBLE_ROUTE, BATCH_ROUTE)


@dataclass(frozen=True)
class Member:
    """An ensemble member: ``local`` (inside the router's replica) or ``remote`` (its own deployment)."""

    placement: str = "local"  # one of PLACEMENTS (checked in problem(): a dict's values get no choices listed)


@dataclass(frozen=True)
class TaskServing:
    """``tasks.<task>``: the model that answers the task (null: the one deployed model of the task)."""

    model: str | None = None


@dataclass(frozen=True)
class Alias:
    """``aliases.<name>``: ``/predict/<name>`` answers as ``/predict/<task>``.

    ``instrument: market`` reads the answering model's own market (the first instrument
    it was fitted on) as of the requested instrument's last bar, instead of the
    requested instrument itself.
    """

    task: str
    instrument: str = "request"  # one of ALIAS_INSTRUMENTS (checked in validate(), as placement is)


@dataclass(frozen=True)
class RegimeSettings:
    """The market state that picks the ensemble's weights: ``label(values)`` of this task's answer."""

    task: str
    model: str | None = None  # null: tasks.<task>.model, else the deployed model of the task


@dataclass(frozen=True)
class EnsembleSettings:
    """Members of one task combined by the weighted mean of each prediction column, weights per regime label."""

    task: str
    members: dict[str, Member] = field(default_factory=dict)
    weights: dict[str, dict[str, float]] = field(default_factory=dict)
    min_members: int = 2
    member_timeout_ms: float = 250.0

    def problem(self) -> str | None:
        """The first inconsistency, as a message naming the key, or None."""
        if not self.members:
            return "ensemble.members is empty: name at least one model"
        for name, member in self.members.items():
            if member.placement not in PLACEMENTS:
                return (f"ensemble.members.{name}.placement: must be one of {list(PLACEMENTS)}, "
                        f"got {member.placement!r}{did_you_mean(member.placement, PLACEMENTS)}")
        if not self.weights:
            return "ensemble.weights is empty: give a weight per member for each regime label"
        names = list(self.members)
        for label, weights in self.weights.items():
            for member, w in weights.items():
                if member not in self.members:
                    return (f"ensemble.weights.{label}.{member}: not a member{did_you_mean(member, names)} "
                            f"(members: {', '.join(names)})")
                if w < 0:
                    return f"ensemble.weights.{label}.{member}: weights cannot be negative, got {w}"
            if not any(w > 0 for w in weights.values()):
                return f"ensemble.weights.{label}: give at least one member a positive weight"
        if self.min_members < 1:
            return f"ensemble.min_members must be at least 1, got {self.min_members}"
        if self.min_members > len(self.members):
            return (f"ensemble.min_members is {self.min_members} but the ensemble has {len(self.members)} "
                    "member(s)")
        if self.member_timeout_ms <= 0:
            return f"ensemble.member_timeout_ms must be positive, got {self.member_timeout_ms}"
        return None


@dataclass(frozen=True)
class ServeSettings:
    engine: str = "ray"                      # "uvicorn": one process on one machine, without Ray
    host: str = "127.0.0.1"
    port: int = 8000
    direct_port: int = 8001
    direct_ingress: bool = True
    router_replicas: int = 1                 # Ray replicas of the router (2: one killed, the proxy uses the other)
    keep_alive_s: int = 120                  # idle keep-alive connections stay open this long (both ports)
    address: str | None = None
    require_key_for_predict: bool = False
    refresh_seconds: float = 2.0
    context_bars: int = 400
    max_bars: int = 2000
    min_bars: int = 260
    cache_size: int = 4096
    cache_url: str | None = None
    gc_gen0_threshold: int = 50_000          # Python's gen-0 GC threshold in a serving process (0: Python's 700)
    log_batch_size: int = 1000             # rows per transaction (each commit is an fsync)
    log_flush_seconds: float = 0.5
    log_max_queue: int = 10_000              # rows in memory; more go to the durable spool under TREUM_HOME
    durable_ack: bool = True                 # an answer is sent once its log rows are fsynced to the spool
    durable_ack_timeout_s: float = 5.0       # ... or, past this, answers 503
    log_close_budget_s: float = 10.0         # shutdown writes for this long, then leaves the rest in the spool
    # bounded work per request
    max_body_bytes: int = 2_000_000          # a larger body is refused with 413 before it is parsed
    max_batch_bars: int = 20_000             # bars summed over the items of one batch
    request_timeout_s: float = 10.0          # a prediction that takes longer answers 504
    rate_limit_per_minute: int = 6000        # per API key, or per client address without one (429); 0: off
    rate_limit_burst: int = 200
    upload_root: str | None = None           # POST /models reads artifacts only below it (null: $TREUM_HOME/uploads)
    tasks: dict[str, TaskServing] = field(default_factory=dict)
    aliases: dict[str, Alias] = field(default_factory=dict)
    regime: RegimeSettings | None = None
    ensemble: EnsembleSettings | None = None

    def validate(self) -> str | None:
        """Cross-field checks; ``build_config`` calls this after the types are checked."""
        if self.min_bars > self.max_bars:
            return f"min_bars ({self.min_bars}) cannot exceed max_bars ({self.max_bars})"
        if self.max_body_bytes < 1024 or self.max_batch_bars < self.max_bars or self.request_timeout_s <= 0:
            return ("max_body_bytes must be at least 1024, max_batch_bars at least max_bars, and request_timeout_s "
                    "positive")
        if self.durable_ack_timeout_s <= 0:
            return f"durable_ack_timeout_s must be positive, got {self.durable_ack_timeout_s}"
        if self.gc_gen0_threshold < 0:
            return f"gc_gen0_threshold cannot be negative (0 keeps Python's own), got {self.gc_gen0_threshold}"
        if self.engine not in ENGINES:
            return f"engine: must be one of {list(ENGINES)}, got {self.engine!r}{did_you_mean(self.engine, ENGINES)}"
        if self.router_replicas < 1:
            return f"router_replicas must be at least 1, got {self.router_replicas}"
        if self.keep_alive_s < 1:
            return f"keep_alive_s must be at least 1 second, got {self.keep_alive_s}"
        if self.rate_limit_per_minute < 0 or self.rate_limit_burst < 1:
            return "rate_limit_per_minute cannot be negative (0 switches it off) and rate_limit_burst must be >= 1"
        for name, alias in self.aliases.items():
            if name in RESERVED_ROUTES:
                return f"aliases.{name}: '/predict/{name}' is a built-in route; pick another alias name"
            if alias.instrument not in ALIAS_INSTRUMENTS:
                return (f"aliases.{name}.instrument: must be one of {list(ALIAS_INSTRUMENTS)}, got "
                        f"{alias.instrument!r}{did_you_mean(alias.instrument, ALIAS_INSTRUMENTS)}")
        if self.ensemble is not None:
            problem = self.ensemble.problem()
            if problem:
                return problem
            if self.regime is None:
                return "ensemble needs regime: its weights are chosen by the regime task's label"
        return None

    @classmethod
    def from_config(cls, values: Mapping[str, Any], plugins: Any = None) -> "ServeSettings":
        """Validate the ``serve`` config group; with ``plugins``, check the tasks and models it names too."""
        settings = build_config(cls, values, "serve")
        if plugins is not None:
            check_plugins(settings, plugins)
        return settings

    def as_dict(self) -> dict[str, Any]:
        """The YAML shape again (for the exported Serve config and for replicas)."""
        return config_dict(self)

    def model_for(self, task: str) -> str | None:
        """The model that ``tasks.<task>.model`` names, if any."""
        chosen = self.tasks.get(task)
        return chosen.model if chosen is not None else None


def check_plugins(settings: ServeSettings, plugins: Any) -> None:
    """No task is named like a built-in predict route, every task the config names is registered, and every
    model it names is a model of that task.

    Run at start-up; a PluginError names the plugin whose task ``/predict/price`` or ``/predict/batch`` would
    shadow, a ConfigError names the key and the closest registered name.
    """
    tasks = plugins.specs("tasks")
    models = plugins.specs("models")
    for name in RESERVED_ROUTES:
        if name in tasks:
            what = "the ensemble" if name == ENSEMBLE_ROUTE else "batch predictions"
            raise PluginError(
                f"plugin '{plugins.owner('tasks', name)}' registers task '{name}', but /predict/{name} is the "
                f"built-in route of {what}, so the task could never be reached; rename the task, or disable the "
                "plugin in plugins.toml"
            )

    def task(key: str, name: str) -> None:
        if name not in tasks:
            raise ConfigError(f"serve.{key}: task '{name}' is not registered{did_you_mean(name, tasks)} "
                              f"(registered tasks: {', '.join(tasks) or 'none'})")

    def model(key: str, name: str, of_task: str) -> None:
        if name not in models:
            raise ConfigError(f"serve.{key}: model '{name}' is not registered{did_you_mean(name, models)} "
                              "(treum plugins list)")
        if models[name].task != of_task:
            of = [n for n, s in models.items() if s.task == of_task and not s.baseline]
            raise ConfigError(f"serve.{key}: '{name}' is a model of task '{models[name].task}', not "
                              f"'{of_task}' (models of '{of_task}': {', '.join(of) or 'none'})")

    for name, chosen in settings.tasks.items():
        task(f"tasks.{name}", name)
        if chosen.model is not None:
            model(f"tasks.{name}.model", chosen.model, name)
    routes = {spec.path for spec in plugins.specs("serve_routes").values()}
    for name, alias in settings.aliases.items():
        task(f"aliases.{name}.task", alias.task)
        if f"/predict/{name}" in routes:  # mounted ahead of /predict/{task}: the alias would never answer
            raise ConfigError(f"serve.aliases.{name}: /predict/{name} is a plugin's route; name the alias otherwise")
        if name in tasks and alias.task != name:
            raise ConfigError(f"serve.aliases.{name}: '{name}' is a task of its own; an alias of that name "
                              f"cannot answer task '{alias.task}'")
    if settings.regime is not None:
        task("regime.task", settings.regime.task)
        if settings.regime.model is not None:
            model("regime.model", settings.regime.model, settings.regime.task)
    if settings.ensemble is not None:
        task("ensemble.task", settings.ensemble.task)
        for name in settings.ensemble.members:
            model(f"ensemble.members.{name}", name, settings.ensemble.task)
