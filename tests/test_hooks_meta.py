"""Meta-tests over the hooks themselves, after datasette's tests/test_plugins.py and test_docs.py.

Parametrised over the hookspecs found in ``treum.core.hookspecs`` (not a list kept
here), so a new hook is checked the moment it is written: it states its contract,
the host collects it, code outside the plugin machinery consumes it (or
``hookspecs.WAITING`` names the feature that will), a built-in plugin implements
it, README.md documents it, and a test exercises it.
"""

from __future__ import annotations

import importlib.metadata as md
import inspect
import re
import types
from functools import cache
from pathlib import Path

import pytest

from treum.core import hookspecs
from treum.core.plugins import (
    ENTRY_POINT_GROUP,
    HOOK_KINDS,
    SEARCH_PATH_HOOKS,
    PluginRegistry,
    PluginSettings,
    create_plugin_registry,
    hookspec_functions,
)

ROOT = Path(__file__).resolve().parents[1]
HOST = {ROOT / "treum" / "core" / "hookspecs.py", ROOT / "treum" / "core" / "plugins.py"}
HOOKS = list(hookspec_functions())

# Hooks whose consumer or built-in implementation is being written right now. Each
# check below skips only while it would fail, so it guards the hook from the day
# the work lands; unlike hookspecs.WAITING, nothing here needs removing then.


@cache
def _readme() -> str:
    return (ROOT / "README.md").read_text()


@cache
def _sources(folder: str) -> dict[Path, str]:
    return {p: p.read_text() for p in sorted((ROOT / folder).rglob("*.py")) if "__pycache__" not in p.parts}


@cache
def _accessors() -> dict[str, tuple[str, ...]]:
    """Kind -> the PluginRegistry methods that look up one spec of it (``models`` -> ``model``)."""
    found: dict[str, list[str]] = {}
    for name, fn in inspect.getmembers(PluginRegistry, inspect.isfunction):
        match = re.search(r"""return self\.get\(["'](\w+)["'], name\)""", inspect.getsource(fn))
        if match and not name.startswith("_"):
            found.setdefault(match.group(1), []).append(name)
    return {kind: tuple(names) for kind, names in found.items()}


def _reads(hook: str, registry: str) -> re.Pattern[str]:
    """Code that reads what ``hook`` collects from a registry reached through ``registry``."""
    if hook in SEARCH_PATH_HOOKS:
        return re.compile(rf"{registry}\.searchpath\b")
    kind = HOOK_KINDS[hook]
    lookups = "|".join(map(re.escape, _accessors().get(kind, ())))
    alternatives = [rf"""specs\(\s*["']{kind}["']\s*\)""", rf"""get\(\s*["']{kind}["']"""]
    if lookups:
        alternatives.append(rf"(?:{lookups})\(")
    return re.compile(rf"{registry}\.(?:{'|'.join(alternatives)})")


def _consumers(hook: str) -> list[str]:
    pattern = _reads(hook, r"plugins")
    return [
        str(path.relative_to(ROOT))
        for path, text in _sources("treum").items()
        if path not in HOST and pattern.search(text)
    ]


def _implementers(hook: str, distribution: str) -> list[str]:
    """Plugins of ``distribution`` that implement ``hook``, read from its entry points' modules."""
    names = []
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        if ep.dist is not None and ep.dist.name == distribution and hasattr(
            getattr(ep.load(), hook, None), f"{hookspecs.PROJECT}_impl"
        ):
            names.append(ep.name)
    return names


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_contract_docstring(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert len(doc) > 40, f"{hook} needs a docstring that states its contract"
    assert doc.startswith("Return "), f"{hook}'s docstring should say what it returns first"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_collected_by_the_host(hook):
    assert (hook in HOOK_KINDS) != (hook in SEARCH_PATH_HOOKS), f"{hook} is neither a kind nor the search path"
    probe = types.SimpleNamespace(name="meta_probe", baselines=(), task="meta_probe")
    value = "pkg://meta_probe.conf" if hook in SEARCH_PATH_HOOKS else probe
    plugin = types.SimpleNamespace(**{hook: hookspecs.hookimpl(lambda: [value])})
    # only the probe is on: every installed distribution of plugins is switched off by name
    off = tuple(sorted({ep.dist.name for ep in md.entry_points(group=ENTRY_POINT_GROUP) if ep.dist}))
    reg = create_plugin_registry(PluginSettings(disable=off), extra_plugins=[("meta_probe_plugin", plugin)])
    if hook in SEARCH_PATH_HOOKS:
        assert reg.searchpath == [value]
    else:
        kind = HOOK_KINDS[hook]
        assert reg.specs(kind) == {"meta_probe": probe}
        assert reg.get(kind, "meta_probe") is probe and reg.owner(kind, "meta_probe") == "meta_probe_plugin"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_consumed_or_waiting_for_a_named_feature(hook):
    consumers = _consumers(hook)
    if hook in hookspecs.WAITING:
        return  # test_waiting_lists_only_hooks_without_a_consumer keeps this honest
    assert consumers, (
        f"nothing outside the plugin machinery reads what {hook} collects; consume it "
        f"(plugins.specs(...), an accessor) or add it to hookspecs.WAITING with the feature that will"
    )


@pytest.mark.parametrize("hook", sorted(hookspecs.WAITING))
def test_waiting_lists_only_hooks_without_a_consumer(hook):
    assert hook in HOOKS, f"hookspecs.WAITING names '{hook}', which is not a hook"
    assert hookspecs.WAITING[hook].strip(), f"hookspecs.WAITING['{hook}'] must name the feature that will consume it"
    consumers = _consumers(hook)
    assert not consumers, f"{hook} is consumed by {consumers}; remove it from hookspecs.WAITING"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_implemented_by_a_builtin_plugin(hook):
    if hook in SEARCH_PATH_HOOKS:
        # built-in YAML lives on the primary config path (treum/conf); the reference
        # implementation is the example third-party plugin that the test environment installs
        assert _implementers(hook, "treum-example-plugin"), f"tests/example_plugin must implement {hook}"
        return
    if hook in hookspecs.WAITING:
        return
    implementers = _implementers(hook, "treum")
    assert implementers, f"no built-in plugin (entry point of the treum distribution) implements {hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_in_the_readme(hook):
    assert f"`{hook}`" in _readme(), f"README.md does not document the hook {hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_exercised_by_a_test(hook):
    name = re.compile(rf"\b{hook}\b")
    reads = _reads(hook, r"\w+")
    tests = [
        str(path.relative_to(ROOT))
        for path, text in _sources("tests").items()
        if path != Path(__file__).resolve()
        and (path.name.startswith("test_") or path.name == "conftest.py")
        and (name.search(text) or reads.search(text))
    ]
    assert tests, f"no test under tests/ names {hook} or reads what it collects"
