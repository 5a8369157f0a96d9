"""The plugin manager factory and the merged registry of everything plugins register.

Nothing is loaded at import time: ``create_plugin_registry()`` registers the
``treum`` entry points (built-ins are entry points too), the local folders
named in ``plugins.toml``, applies its ``disable`` list, validates hook names,
merges every hook's specs into one dictionary per kind, and checks that the
names specs use to point at each other (a model's task, a task's baselines)
are registered.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from treum.core import hookspecs
from treum.core.errors import PluginError, did_you_mean

ENTRY_POINT_GROUP = "treum"


def hookspec_functions(spec_module: ModuleType = hookspecs) -> dict[str, Callable[..., Any]]:
    """Every hookspec function of ``spec_module`` by name, in the order the module defines them."""
    marker = f"{hookspecs.PROJECT}_spec"  # the attribute pluggy's HookspecMarker sets
    return {name: fn for name, fn in vars(spec_module).items() if callable(fn) and hasattr(fn, marker)}


def hook_kinds(spec_module: ModuleType = hookspecs) -> dict[str, str]:
    """Hook name -> the kind of spec it registers, derived from the hookspecs themselves.

    ``treum_<kind>`` registers specs of kind ``<kind>``; a hook marked with
    ``hookspecs.returns_search_path`` registers search-path strings, not specs.
    """
    prefix = f"{hookspecs.PROJECT}_"
    return {
        name: name.removeprefix(prefix)
        for name, fn in hookspec_functions(spec_module).items()
        if not getattr(fn, "returns_search_path", False)
    }


def search_path_hooks(spec_module: ModuleType = hookspecs) -> tuple[str, ...]:
    """The hooks whose results are Hydra search-path entries."""
    hooks = hookspec_functions(spec_module)
    return tuple(n for n, fn in hooks.items() if getattr(fn, "returns_search_path", False))


HOOK_KINDS = hook_kinds()
SEARCH_PATH_HOOKS = search_path_hooks()


def kind_noun(kind: str) -> str:
    """The singular noun errors use for a kind: ``fairness_checks`` -> ``fairness check``."""
    return kind.removesuffix("s").replace("_", " ")


def normalize_distribution_name(name: str) -> str:
    """PEP 503: case-insensitive, and runs of ``-``, ``_`` and ``.`` are one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class PluginSettings:
    """What ``plugins.toml`` says: which plugins are off, which must be on, local folders.

    ``disable`` and ``enable`` hold plugin names or names of installed distributions
    (which switch every plugin of that distribution).
    """

    disable: tuple[str, ...] = ()
    enable: tuple[str, ...] = ()
    paths: tuple[Path, ...] = ()
    source: Path | None = None

    @property
    def where(self) -> str:
        """How errors name these settings: ``plugins.toml (/its/path)``."""
        return f"plugins.toml ({self.source})" if self.source else "plugins.toml"


@dataclass
class PluginInfo:
    """One plugin as ``treum plugins list`` shows it."""

    name: str
    distribution: str
    version: str
    origin: str  # "entry point", "local folder" or "in process"
    enabled: bool
    registers: dict[str, list[str]] = field(default_factory=dict)
    disabled_by: str | None = None  # the plugins.toml 'disable' entry that switched it off


def find_plugins_toml() -> Path | None:
    """``$TREUM_PLUGINS_TOML`` if set, else ``./plugins.toml`` if it exists."""
    env = os.environ.get("TREUM_PLUGINS_TOML")
    if env:
        path = Path(env)
        if not path.is_file():
            raise PluginError(f"TREUM_PLUGINS_TOML points at '{path}', which is not a file")
        return path
    local = Path.cwd() / "plugins.toml"
    return local if local.is_file() else None


def load_plugin_settings(path: Path | None = None) -> PluginSettings:
    """Read ``plugins.toml`` (the ``[plugins]`` table); no file means every installed plugin is on."""
    path = path if path is not None else find_plugins_toml()
    if path is None:
        return PluginSettings()
    try:
        data = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as exc:
        raise PluginError(f"{path}: not valid TOML: {exc}") from exc
    table = data.get("plugins", {})
    unknown = set(table) - {"disable", "enable", "paths"}
    if unknown:
        key = sorted(unknown)[0]
        raise PluginError(
            f"{path}: unknown key 'plugins.{key}'{did_you_mean(key, ['disable', 'enable', 'paths'])} "
            "(allowed: disable, enable, paths)"
        )
    for key in ("disable", "enable", "paths"):
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PluginError(f"{path}: 'plugins.{key}' must be a list of strings")
    base = Path(path).resolve().parent
    return PluginSettings(
        disable=tuple(table.get("disable", [])),
        enable=tuple(table.get("enable", [])),
        paths=tuple((base / p).resolve() for p in table.get("paths", [])),
        source=Path(path),
    )


def _entry_points() -> list[md.EntryPoint]:
    return sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _load_local_module(path: Path) -> ModuleType:
    module_name = f"treum_local_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"cannot import local plugin '{path}'")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise PluginError(
            f"local plugin '{path}' failed to import: {exc!r}; fix it or add '{path.stem}' to 'disable' "
            "in plugins.toml"
        ) from exc
    return module


@dataclass
class _Candidate:
    """A plugin found by discovery, not imported yet."""

    info: PluginInfo
    load: Callable[[], object]
    distribution_key: str | None = None  # normalised distribution name, for entry points


def _load_entry_point(ep: md.EntryPoint, dist: str) -> Callable[[], object]:
    def load() -> object:
        try:
            return ep.load()
        except Exception as exc:  # a broken third-party plugin must say which one it is
            raise PluginError(
                f"plugin '{ep.name}' from distribution '{dist}' failed to import: {exc!r}; "
                f"fix it or add it to 'disable' in plugins.toml"
            ) from exc

    return load


def _discover(settings: PluginSettings, extra_plugins: Iterable[tuple[str, object]]) -> list[_Candidate]:
    """Every plugin that entry points, local folders and the caller offer, without importing one."""
    found: dict[str, _Candidate] = {}
    for ep in _entry_points():
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        if ep.name in found:
            raise PluginError(
                f"plugin name '{ep.name}' is used by two entry points (distributions "
                f"'{found[ep.name].info.distribution}' and '{dist}'); uninstall one"
            )
        info = PluginInfo(ep.name, dist, version, "entry point", True)
        key = normalize_distribution_name(dist) if ep.dist else None
        found[ep.name] = _Candidate(info, _load_entry_point(ep, dist), key)

    for folder in settings.paths:
        if not folder.is_dir():
            raise PluginError(f"plugins.toml names the local plugin folder '{folder}', which does not exist")
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            if path.stem in found:
                raise PluginError(
                    f"local plugin '{path}' has the name '{path.stem}', which an installed plugin "
                    "already uses; rename the file"
                )
            info = PluginInfo(path.stem, str(folder), "local", "local folder", True)
            found[path.stem] = _Candidate(info, lambda path=path: _load_local_module(path))

    for name, plugin in extra_plugins:
        if name in found:
            raise PluginError(
                f"in-process plugin '{name}' has the name of an installed or local plugin; rename it"
            )
        info = PluginInfo(name, "(in process)", "-", "in process", True)
        found[name] = _Candidate(info, lambda plugin=plugin: plugin)
    return list(found.values())


@dataclass
class _Policy:
    """``plugins.toml`` resolved against the discovered plugins."""

    disabled_by: dict[str, str]  # plugin -> the 'disable' entry that names it or its distribution
    required: set[str]
    unknown: list[tuple[str, str]]  # ('disable' or 'enable', a name that is no plugin or distribution)


def _resolve_policy(settings: PluginSettings, candidates: list[_Candidate]) -> _Policy:
    by_distribution: dict[str, list[str]] = {}
    for c in candidates:
        if c.distribution_key:
            by_distribution.setdefault(c.distribution_key, []).append(c.info.name)
    names = {c.info.name for c in candidates}

    def resolve(entry: str) -> list[str] | None:
        if entry in names:
            return [entry]
        return by_distribution.get(normalize_distribution_name(entry))

    policy = _Policy({}, set(), [])
    for key, entries in (("disable", settings.disable), ("enable", settings.enable)):
        for entry in entries:
            plugins = resolve(entry)
            if plugins is None:
                policy.unknown.append((key, entry))
            elif key == "disable":
                for plugin in plugins:
                    policy.disabled_by.setdefault(plugin, entry)
            else:
                policy.required.update(plugins)
    return policy


def _registrations(plugin: object, name: str) -> dict[str, list[str]]:
    """What ``plugin`` would register, read through a throwaway manager (it is not registered)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin, name=name)
    out: dict[str, list[str]] = {}
    for hook_name, kind in HOOK_KINDS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            names = sorted(spec.name for spec in impl.function() or [])
            if names:
                out[kind] = names
    return out


def _describe(registers: Mapping[str, list[str]]) -> str:
    return "; ".join(f"{kind}: {', '.join(names)}" for kind, names in registers.items() if names)


class PluginRegistry:
    """Every spec that the enabled plugins register, merged by name, plus the plugin table."""

    def __init__(
        self,
        pm: pluggy.PluginManager,
        infos: list[PluginInfo],
        *,
        disabled: Mapping[str, Callable[[], object]] | None = None,
        settings: PluginSettings | None = None,
    ):
        self.pm = pm
        self.infos = infos
        self.settings = settings if settings is not None else PluginSettings()
        self._disabled_loaders = dict(disabled or {})
        self._disabled_registrations: dict[str, dict[str, list[str]]] | None = None
        self._kinds: dict[str, dict[str, Any]] = {}
        self._owner: dict[tuple[str, str], str] = {}
        self._searchpath: list[str] = []
        self._collect()
        self._check_references()

    def _collect(self) -> None:
        by_name = {info.name: info for info in self.infos}
        for hook_name, kind in HOOK_KINDS.items():
            merged: dict[str, Any] = {}
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                for spec in impl.function() or []:
                    other = self._owner.get((kind, spec.name))
                    if other is not None:
                        raise PluginError(
                            f"{kind_noun(kind)} '{spec.name}' is registered by two plugins: "
                            f"'{other}' and '{impl.plugin_name}'; disable one of them in plugins.toml"
                        )
                    self._owner[(kind, spec.name)] = impl.plugin_name
                    merged[spec.name] = spec
                    if impl.plugin_name in by_name:
                        by_name[impl.plugin_name].registers.setdefault(kind, []).append(spec.name)
            self._kinds[kind] = dict(sorted(merged.items()))
        for hook_name in SEARCH_PATH_HOOKS:
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                self._searchpath.extend(impl.function() or [])

    def _check_references(self) -> None:
        """A model's task and a task's baselines must name registered specs.

        While no plugin registers a task, models are not checked: tasks are
        optional until the task plugins exist.
        """
        tasks = self._kinds.get("tasks", {})
        models = self._kinds.get("models", {})
        if not tasks:
            return
        for name, spec in models.items():
            if spec.task not in tasks:
                raise PluginError(
                    f"plugin '{self.owner('models', name)}' registers model '{name}' for task "
                    f"'{spec.task}', {self._missing('tasks', spec.task)}"
                )
        for name, task in tasks.items():
            for baseline in task.baselines:
                if baseline.model not in models:
                    raise PluginError(
                        f"plugin '{self.owner('tasks', name)}' registers task '{name}' whose baseline "
                        f"'{baseline.label}' uses model '{baseline.model}', "
                        f"{self._missing('models', baseline.model)}"
                    )

    def _missing(self, kind: str, name: str) -> str:
        """The end of an error about a reference to an unregistered spec: why, and the closest name."""
        specs = self._kinds.get(kind, {})
        provider = self.disabled_provider(kind, name)
        if provider is not None:
            return (
                f"which plugin '{provider}' provides but {self.settings.where} disables; "
                f"{self._remove_hint(provider)} to use it"
            )
        return (
            f"which no enabled plugin registers{did_you_mean(name, specs)} "
            f"(registered {kind.replace('_', ' ')}: {', '.join(specs) or 'none'})"
        )

    def _remove_hint(self, plugin: str) -> str:
        entry = next((i.disabled_by for i in self.infos if i.name == plugin), None) or plugin
        return "remove it from 'disable'" if entry == plugin else f"remove '{entry}' from 'disable'"

    def specs(self, kind: str) -> dict[str, Any]:
        """All specs of one kind (``models``, ``tasks``, ``datasets``, ...), sorted by name."""
        return self._kinds[kind]

    def get(self, kind: str, name: str) -> Any:
        """One spec by name, or an error that says why it is missing or names the closest one."""
        specs = self._kinds[kind]
        if name in specs:
            return specs[name]
        noun = kind_noun(kind)
        provider = self.disabled_provider(kind, name)
        if provider is not None:
            entry = next(i.disabled_by for i in self.infos if i.name == provider)
            via = f" (through its distribution '{entry}')" if entry != provider else ""
            raise PluginError(
                f"{noun} '{name}' is not registered: it is provided by plugin '{provider}', which "
                f"{self.settings.where} disables{via}; {self._remove_hint(provider)} to use it"
            )
        raise PluginError(
            f"{noun} '{name}' is not registered{did_you_mean(name, specs)} "
            f"(registered: {', '.join(specs) or 'none'}; see `treum plugins list`)"
        )

    def model(self, name: str) -> Any:
        """The ``ModelSpec`` named ``name``."""
        return self.get("models", name)

    def task(self, name: str) -> Any:
        """The ``TaskSpec`` named ``name``."""
        return self.get("tasks", name)

    def dataset(self, name: str) -> Any:
        """The ``DatasetSpec`` named ``name``."""
        return self.get("datasets", name)

    def feature_set(self, name: str) -> Any:
        """The ``FeatureSetSpec`` named ``name``."""
        return self.get("features", name)

    def owner(self, kind: str, name: str) -> str:
        """The plugin that registered ``name`` of ``kind``."""
        return self._owner[(kind, name)]

    @property
    def searchpath(self) -> list[str]:
        """Hydra search-path entries that plugins add (``pkg://...``, ``file://...``)."""
        return list(self._searchpath)

    def disabled_registrations(self) -> dict[str, dict[str, list[str]]]:
        """Disabled plugin -> kind -> the names it would register if it were on.

        The plugins are imported and their hooks called without registering them,
        the first time this is asked (errors ask it, start-up does not). A disabled
        plugin that fails to import or to answer is left out: it is off, so it
        must not break anything.
        """
        if self._disabled_registrations is None:
            found: dict[str, dict[str, list[str]]] = {}
            for name, load in self._disabled_loaders.items():
                try:
                    found[name] = _registrations(load(), name)
                except Exception:  # noqa: BLE001 - a broken plugin that is off stays silent
                    continue
            self._disabled_registrations = found
        return self._disabled_registrations

    def disabled_provider(self, kind: str, name: str) -> str | None:
        """The disabled plugin that would register ``name`` of ``kind``, if one would."""
        if not self._disabled_loaders:
            return None
        for plugin, registers in self.disabled_registrations().items():
            if name in registers.get(kind, ()):
                return plugin
        return None

    def _policy_error(self, key: str, entry: str) -> PluginError:
        """The error for a ``plugins.toml`` ``disable``/``enable`` entry that names no plugin.

        When a plugin registers something of that name (a model, a task, ...), the
        error names that plugin as the entry to write instead.
        """
        for kind in self._kinds:
            owner = self._owner.get((kind, entry))
            disabled = False
            if owner is None:
                owner, disabled = self.disabled_provider(kind, entry), True
            if owner is None:
                continue
            info = next(i for i in self.infos if i.name == owner)
            registers = info.registers if not disabled else self.disabled_registrations()[owner]
            rest = {k: [n for n in names if (k, n) != (kind, entry)] for k, names in registers.items()}
            also = f" (it also registers: {_describe(rest)})" if _describe(rest) else ""
            head = (
                f"{self.settings.where} {key}s '{entry}', which is a {kind_noun(kind)} "
                f"registered by plugin '{owner}', not a plugin"
            )
            if disabled and key == "disable":
                return PluginError(
                    f"{head}; '{owner}' is already disabled, so remove '{entry}' from 'disable'"
                )
            return PluginError(f"{head}; {key} '{owner}'{also}")
        return _not_a_plugin_error(key, entry, self.settings, self.infos)


def _not_a_plugin_error(
    key: str, entry: str, settings: PluginSettings, infos: list[PluginInfo]
) -> PluginError:
    plugins = sorted(i.name for i in infos)
    distributions = sorted({i.distribution for i in infos if i.origin == "entry point"})
    try:
        md.distribution(entry)
        what = "an installed distribution that provides no treum plugin"
    except md.PackageNotFoundError:
        what = "neither a plugin nor an installed distribution"
    return PluginError(
        f"{settings.where} {key}s '{entry}', which is {what}{did_you_mean(entry, plugins + distributions)} "
        f"(plugins: {', '.join(plugins) or 'none'}; distributions: {', '.join(distributions) or 'none'}; "
        "see `treum plugins list`)"
    )


def _register_and_collect(
    candidates: list[_Candidate], policy: _Policy, settings: PluginSettings
) -> PluginRegistry:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    disabled: dict[str, Callable[[], object]] = {}
    for c in candidates:
        c.info.disabled_by = policy.disabled_by.get(c.info.name)
        c.info.enabled = c.info.disabled_by is None
        if c.info.enabled:
            pm.register(c.load(), name=c.info.name)
        else:
            disabled[c.info.name] = c.load
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin = getattr(exc, "plugin", None)
        known_hooks = list(hookspec_functions())
        bad = [name for name in pm.hook.__dict__ if name.startswith("treum_") and name not in known_hooks]
        hint = did_you_mean(bad[0], known_hooks) if bad else ""
        raise PluginError(
            f"{exc}{hint} (plugin: {pm.get_name(plugin) if plugin else '?'}; hooks: {', '.join(known_hooks)})"
        ) from exc
    return PluginRegistry(pm, [c.info for c in candidates], disabled=disabled, settings=settings)


def create_plugin_registry(
    settings: PluginSettings | None = None, extra_plugins: Iterable[tuple[str, object]] = ()
) -> PluginRegistry:
    """Build a fresh plugin manager and registry.

    ``extra_plugins`` are (name, module-or-object) pairs registered after the
    entry points, under the same ``disable`` policy; tests use it to add a
    plugin without installing one.
    """
    settings = settings if settings is not None else load_plugin_settings()
    candidates = _discover(settings, extra_plugins)
    policy = _resolve_policy(settings, candidates)
    both = sorted(policy.required & set(policy.disabled_by))
    if both:
        raise PluginError(f"{settings.where} both enables and disables {both}; keep one")
    if not policy.unknown:
        return _register_and_collect(candidates, policy, settings)
    key, entry = policy.unknown[0]
    try:
        registry = _register_and_collect(candidates, policy, settings)
    except PluginError as exc:
        infos = [c.info for c in candidates]
        names = [i.name for i in infos] + [i.distribution for i in infos if i.origin == "entry point"]
        if did_you_mean(entry, names):  # a misspelt plugin, likely the broken one it meant to disable
            raise _not_a_plugin_error(key, entry, settings, infos) from exc
        raise
    raise registry._policy_error(key, entry)
