"""The plugin manager factory and the merged registry of everything plugins register.

Nothing is loaded at import time: ``create_plugin_registry()`` registers the
``treum`` entry points (built-ins are entry points too), the local folders
named in ``plugins.toml``, applies its ``disable`` list, validates hook names,
and merges every hook's specs into one dictionary per kind.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from treum.core import hookspecs
from treum.core.errors import PluginError, did_you_mean

ENTRY_POINT_GROUP = "treum"

# hook name -> the kind it registers
HOOK_KINDS = {
    "treum_datasets": "datasets",
    "treum_features": "features",
    "treum_models": "models",
    "treum_explainers": "explainers",
    "treum_fairness_checks": "fairness_checks",
    "treum_monitors": "monitors",
    "treum_serve_routes": "serve_routes",
}


@dataclass(frozen=True)
class PluginSettings:
    """What ``plugins.toml`` says: which plugins are off, which must be on, local folders."""

    disable: tuple[str, ...] = ()
    enable: tuple[str, ...] = ()
    paths: tuple[Path, ...] = ()
    source: Path | None = None


@dataclass
class PluginInfo:
    """One plugin as ``treum plugins list`` shows it."""

    name: str
    distribution: str
    version: str
    origin: str  # "entry point" or "local folder"
    enabled: bool
    registers: dict[str, list[str]] = field(default_factory=dict)


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
        if not isinstance(table.get(key, []), list):
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
    spec.loader.exec_module(module)
    return module


class PluginRegistry:
    """Every spec that the enabled plugins register, merged by name, plus the plugin table."""

    def __init__(self, pm: pluggy.PluginManager, infos: list[PluginInfo]):
        self.pm = pm
        self.infos = infos
        self._kinds: dict[str, dict[str, Any]] = {}
        self._owner: dict[tuple[str, str], str] = {}
        self._searchpath: list[str] = []
        self._collect()

    def _collect(self) -> None:
        by_name = {info.name: info for info in self.infos}
        for hook_name, kind in HOOK_KINDS.items():
            merged: dict[str, Any] = {}
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                specs = impl.function() or []
                for spec in specs:
                    other = self._owner.get((kind, spec.name))
                    if other is not None:
                        raise PluginError(
                            f"{kind[:-1].replace('_', ' ')} '{spec.name}' is registered by two plugins: "
                            f"'{other}' and '{impl.plugin_name}'; disable one of them in plugins.toml"
                        )
                    self._owner[(kind, spec.name)] = impl.plugin_name
                    merged[spec.name] = spec
                    if impl.plugin_name in by_name:
                        by_name[impl.plugin_name].registers.setdefault(kind, []).append(spec.name)
            self._kinds[kind] = dict(sorted(merged.items()))
        for impl in self.pm.hook.treum_config_searchpath.get_hookimpls():
            self._searchpath.extend(impl.function() or [])

    def specs(self, kind: str) -> dict[str, Any]:
        """All specs of one kind (``models``, ``datasets``, ...), sorted by name."""
        return self._kinds[kind]

    def get(self, kind: str, name: str) -> Any:
        """One spec by name, or an error that names the closest registered one."""
        specs = self._kinds[kind]
        if name not in specs:
            noun = kind[:-1].replace("_", " ")
            raise PluginError(
                f"{noun} '{name}' is not registered{did_you_mean(name, specs)} "
                f"(registered: {', '.join(specs) or 'none'}; see `treum plugins list`)"
            )
        return specs[name]

    def model(self, name: str) -> Any:
        return self.get("models", name)

    def dataset(self, name: str) -> Any:
        return self.get("datasets", name)

    def feature_set(self, name: str) -> Any:
        return self.get("features", name)

    def owner(self, kind: str, name: str) -> str:
        return self._owner[(kind, name)]

    @property
    def searchpath(self) -> list[str]:
        """Hydra search-path entries that plugins add (``pkg://...``, ``file://...``)."""
        return list(self._searchpath)


def create_plugin_registry(
    settings: PluginSettings | None = None, extra_plugins: Iterable[tuple[str, object]] = ()
) -> PluginRegistry:
    """Build a fresh plugin manager and registry.

    ``extra_plugins`` are (name, module-or-object) pairs registered after the
    entry points; tests use it to add a plugin without installing one.
    """
    settings = settings if settings is not None else load_plugin_settings()
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    known: set[str] = set()

    for ep in _entry_points():
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        enabled = ep.name not in settings.disable
        infos.append(PluginInfo(ep.name, dist, version, "entry point", enabled))
        known.add(ep.name)
        if not enabled:
            continue
        if pm.get_plugin(ep.name) is not None:
            raise PluginError(
                f"plugin name '{ep.name}' is used by two entry points (distributions "
                f"'{pm.get_plugin(ep.name).__name__}' and '{dist}'); uninstall one"
            )
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party plugin must say which one it is
            raise PluginError(
                f"plugin '{ep.name}' from distribution '{dist}' failed to import: {exc!r}; "
                f"fix it or add it to 'disable' in plugins.toml"
            ) from exc
        pm.register(plugin, name=ep.name)

    for folder in settings.paths:
        if not folder.is_dir():
            raise PluginError(f"plugins.toml names the local plugin folder '{folder}', which does not exist")
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            name = path.stem
            if name in known:
                raise PluginError(
                    f"local plugin '{path}' has the name '{name}', which an installed plugin already uses; rename the file"
                )
            enabled = name not in settings.disable
            infos.append(PluginInfo(name, str(folder), "local", "local folder", enabled))
            known.add(name)
            if enabled:
                pm.register(_load_local_module(path), name=name)

    for name, plugin in extra_plugins:
        infos.append(PluginInfo(name, "(in process)", "-", "in process", True))
        known.add(name)
        pm.register(plugin, name=name)

    missing = [name for name in settings.enable if name not in known]
    if missing:
        raise PluginError(
            f"plugins.toml enables {missing}, which no installed distribution or local folder provides "
            f"(installed: {', '.join(sorted(known))})"
        )
    disabled_required = [name for name in settings.enable if name in settings.disable]
    if disabled_required:
        raise PluginError(f"plugins.toml both enables and disables {disabled_required}; keep one")

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        hook = getattr(exc, "plugin", None)
        known_hooks = [n for n in dir(hookspecs) if n.startswith("treum_")]
        bad = [
            name
            for name in pm.hook.__dict__
            if name.startswith("treum_") and name not in known_hooks
        ]
        hint = did_you_mean(bad[0], known_hooks) if bad else ""
        raise PluginError(f"{exc}{hint} (plugin: {pm.get_name(hook) if hook else '?'}; hooks: {', '.join(known_hooks)})") from exc
    return PluginRegistry(pm, infos)
