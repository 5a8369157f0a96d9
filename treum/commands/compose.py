"""Composing the Hydra config of a run, with errors that say what to fix.

Plugins add their config packages to the search path (``treum_config_searchpath``),
so ``model=<their model>`` works once they are installed. When a run does not
choose ``task=``, the task follows the chosen model's spec.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Sequence

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dataclasses import dataclass
from typing import Any

from treum.core.config import build_config, build_spec_config
from treum.core.errors import ConfigError, PluginError, did_you_mean
from treum.core.evaluation import WalkForwardConfig
from treum.core.plugins import PluginRegistry

GROUP_KIND = {"model": "models", "data": "datasets", "features": "features", "task": "tasks"}


def login_name() -> str:
    """Who is acting, for the audit log: the login name, as ``getpass`` finds it."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no USER, LOGNAME or passwd entry (some containers)
        return "unknown"


def register_resolvers() -> None:
    """``${treum_home:}`` and ``${login:}`` for the configs (idempotent)."""
    from treum.registry.store import treum_home

    if not OmegaConf.has_resolver("treum_home"):
        OmegaConf.register_new_resolver("treum_home", lambda: str(treum_home()))
    if not OmegaConf.has_resolver("login"):
        OmegaConf.register_new_resolver("login", login_name)


register_resolvers()


def to_dict(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def _explain_missing(exc: MissingConfigException, plugins: PluginRegistry) -> ConfigError:
    message = str(exc)
    m = re.search(r"Could not find '([\w/]+)/([\w.\-]+)'", message)
    if m:
        group, choice = m.group(1), m.group(2)
        kind = GROUP_KIND.get(group)
        if kind:
            try:  # the registry's error names the closest name, or the plugin that plugins.toml switched off
                plugins.get(kind, choice)
            except PluginError as err:
                return ConfigError(str(err))
            return ConfigError(
                f"{group} '{choice}' is registered but has no conf/{group}/{choice}.yaml on the config "
                "search path; its plugin must return its conf package from treum_config_searchpath"
            )
        options = getattr(exc, "options", None) or []
        return ConfigError(f"no config '{choice}' in group '{group}'{did_you_mean(choice, options)}; choices: {', '.join(options)}")
    return ConfigError(message.splitlines()[0])


def _explain_composition(exc: Exception, cfg_hint: dict[str, list[str]]) -> ConfigError:
    message = str(exc)
    m = re.search(r"Could not override '([^']+)'", message) or re.search(r"Key '([^']+)' is not in struct", message)
    if m:
        key = m.group(1)
        group, _, leaf = key.partition(".")
        if key.startswith("hpo.space"):
            return ConfigError(f"{key}: a search space's keys come from its file; add a key (or merge into one) with "
                               "'++hpo.space={model.KEY: {loguniform: [LOW, HIGH]}}', or write conf/hpo/NAME.yaml")
        fields = cfg_hint.get(group, [])
        if group == "hpo" and not fields:
            import dataclasses

            from treum.core.hpo import HpoConfig

            fields = [f.name for f in dataclasses.fields(HpoConfig)]
        return ConfigError(
            f"{key}: unknown key{did_you_mean(leaf, fields)} (known keys of '{group}': {', '.join(fields) or 'none'})"
        )
    first = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
    return ConfigError(f"bad override: {first}")


SEARCHPATH_ENV = "TREUM_HYDRA_SEARCHPATH"  # read by hydra_plugins.treum_searchpath


def use_plugin_searchpath(plugins: PluginRegistry) -> None:
    """Put the enabled plugins' config packages on Hydra's search path (for this process and its children)."""
    os.environ[SEARCHPATH_ENV] = ";".join(plugins.searchpath)


def _compose_once(overrides: list[str], plugins: PluginRegistry, hint: dict[str, list[str]]) -> DictConfig:
    use_plugin_searchpath(plugins)
    full = list(overrides)
    try:
        if GlobalHydra.instance().is_initialized():
            # inside a Hydra application (treum train ...): compose with its config loader
            return compose(config_name="config", overrides=full)
        with initialize_config_module(config_module="treum.conf", version_base=None):
            return compose(config_name="config", overrides=full)
    except MissingConfigException as exc:
        raise _explain_missing(exc, plugins) from None
    except (ConfigCompositionException, HydraException, OmegaConfBaseException, ValueError) as exc:
        raise _explain_composition(exc, hint) from None


def _fields(plugins: PluginRegistry, kind: str, name: str) -> list[str]:
    import dataclasses

    try:
        return [f.name for f in dataclasses.fields(plugins.get(kind, name).config_cls)]
    except Exception:
        return []


def model_fields(plugins: PluginRegistry, name: str) -> list[str]:
    import dataclasses

    try:
        return [f.name for f in dataclasses.fields(plugins.model(name).config_cls)]
    except Exception:
        return []


def compose_run(overrides: Sequence[str], plugins: PluginRegistry) -> DictConfig:
    """Compose and validate the config of one run; the model's config is checked before any work."""
    overrides = list(overrides)
    chosen_model = next((o.split("=", 1)[1] for o in overrides if o.startswith("model=")), None)
    if chosen_model is None:  # the root config's default model, for the hint of the first composition
        chosen_model = str(_compose_once([], plugins, {}).model.name)
    hint = {"model": model_fields(plugins, chosen_model)}
    if not any(o.split("=", 1)[0].lstrip("+~") == "task" for o in overrides):
        try:  # the task follows the model from the start, so that task.* overrides name its keys
            overrides = [f"task={plugins.model(chosen_model).task}", *overrides]
        except PluginError:
            pass  # an unknown model: the composition below names it with a suggestion
    cfg = _compose_once(overrides, plugins, hint)
    hint = {k: list(v.keys()) for k, v in cfg.items() if isinstance(v, DictConfig)}
    hint["model"] = model_fields(plugins, cfg.model.name)
    spec = plugins.model(cfg.model.name)
    if not any(o.split("=", 1)[0].lstrip("+~") == "task" for o in overrides) and cfg.task.name != spec.task:
        cfg = _compose_once(overrides + [f"task={spec.task}"], plugins, hint)
    if cfg.task.name != spec.task:
        raise ConfigError(
            f"model '{spec.name}' is a {spec.task} model but the run chose task={cfg.task.name}; "
            f"drop the task override or choose a {cfg.task.name} model"
        )
    build_spec_config(spec, to_dict(cfg.model))
    validate_run_config(cfg, plugins)
    return cfg


@dataclass
class RegistryConfig:
    """``conf/registry/*.yaml``."""

    url: str | None = None  # null: $TREUM_REGISTRY_URL, else SQLite in $TREUM_HOME
    register: bool | None = None  # null: train registers, leaderboard does not


def validate_run_config(cfg: DictConfig, plugins: PluginRegistry) -> None:
    """Validate the task's and the walk-forward's configs (the model's is checked by compose_run)."""
    from treum.core.task import build_task

    task = build_task(plugins.task(cfg.task.name), to_dict(cfg.task))
    eval_cfg = build_config(WalkForwardConfig, to_dict(cfg.eval), "eval")
    build_config(RegistryConfig, to_dict(cfg.registry), "registry")
    horizon = task.label_horizon()
    if eval_cfg.purge is not None and horizon and eval_cfg.purge < horizon:
        raise ConfigError(
            f"eval.purge={eval_cfg.purge} is shorter than task '{task.name}''s labels, which look {horizon} bars "
            f"ahead: training labels would reach into the test block; use eval.purge={horizon} or more (or null)"
        )


def compose_plain(overrides: Sequence[str], plugins: PluginRegistry) -> DictConfig:
    """Compose without tying the task to the model (leaderboards pick every model of the task)."""
    return _compose_once(list(overrides), plugins, {})


def compose_leaderboard(overrides: Sequence[str], plugins: PluginRegistry) -> DictConfig:
    """A leaderboard's config: every model of the chosen task, each with its own YAML."""
    chosen = [o for o in overrides if o.lstrip("+~").split("=")[0].split(".")[0] == "model"]
    if chosen:
        raise ConfigError(
            f"a leaderboard runs every model of its task with its own config, so {chosen[0]!r} would be ignored; "
            "drop it, or use `treum evaluate model=NAME ...` for one model with overrides"
        )
    cfg = _compose_once(list(overrides), plugins, {})
    plugins.task(cfg.task.name)  # a clear error for an unknown task
    validate_run_config(cfg, plugins)
    return cfg


def model_config(plugins: PluginRegistry, name: str, base_overrides: list[str], extra: dict | None = None,
                 own: bool = False) -> Any:
    """The validated config of a model from its YAML.

    ``own``: the model is the run's chosen model, so the run's ``model.*`` overrides apply.
    A baseline (or every model of a leaderboard) gets its YAML plus ``extra``, the task's
    fixed overrides, never the run's ``model.*`` ones.
    """
    if own:
        keep = [o for o in base_overrides if not o.lstrip("+~").startswith("model=")]
    else:  # its own YAML: an experiment bundle's or the command line's model.* belong to the run's model only
        keep = [o for o in base_overrides if o.lstrip("+~").split("=")[0] == "seed"]
    if not any(o.lstrip("+~").split("=")[0] == "task" for o in keep):  # task.* overrides name the model's task's keys
        keep = [f"task={plugins.model(name).task}", *keep]
    cfg = _compose_once(keep + [f"model={name}"], plugins, {"model": model_fields(plugins, name)})
    # the zoo size's settings of this model (``experiment=full_zoo``), under what the command line set itself
    explicit = {o.lstrip("+~").split("=", 1)[0][len("model."):] for o in keep if o.lstrip("+~").startswith("model.")}
    sized = {k: v for k, v in zoo_settings(plugins, base_overrides, plugins.model(name).task).get(name, {}).items()
             if k not in explicit}
    values = {**to_dict(cfg.model), **sized, **(extra or {})}
    return build_spec_config(plugins.model(name), values)


def zoo_settings(plugins: PluginRegistry, overrides: Sequence[str], task: str | None = None) -> dict[str, dict[str, Any]]:
    """Per-model settings of the run's zoo size (``conf/zoo/``: ``demo``, the small default, or ``full``,
    which ``experiment=full_zoo`` chooses): ``{model name: {key: value}}``. ``task`` is the run's task
    when the overrides do not choose one (their ``task.*`` keys are that task's)."""
    if not any(o.lstrip("+~").split("=")[0] in ("zoo", "experiment") for o in overrides):
        return {}
    kept = [o for o in overrides if o.lstrip("+~").split("=")[0].split(".")[0] != "model"]
    if task and not any(o.lstrip("+~").split("=")[0] == "task" for o in kept):
        kept = [f"task={task}", *kept]
    return to_dict(_compose_once(kept, plugins, {}).get("zoo")) or {}


def expand_multirun(overrides: Sequence[str]) -> list[list[str]]:
    """``a=1,2 b=x,y`` -> the four override lists of the sweep, in order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise ConfigError(f"bad override: {exc}") from None
    choices = []
    for o in parsed:
        if o.is_sweep_override():
            key = o.get_key_element()
            try:
                choices.append([f"{key}={v}" for v in o.sweep_string_iterator()])
            except HydraException:
                raise ConfigError(
                    f"{o.input_line}: treum checks every combination of a sweep before it starts, so write the "
                    f"choices out (e.g. {key}=a,b,c or range(1,5)); glob() and interval() are not expanded here"
                ) from None
        else:
            choices.append([o.input_line])
    return [list(c) for c in itertools.product(*choices)]
