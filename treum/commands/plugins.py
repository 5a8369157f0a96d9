"""``treum plugins list``: every plugin, its version, what it registers, whether it is on."""

from __future__ import annotations

import argparse

from treum.commands.output import console
from treum.core.errors import TreumError


def check(plugins, names: list[str]) -> int:
    """Run the model contract on each named model; 1 if any check fails."""
    from treum.commands.contract import run_contract

    failed = 0
    for name in names:
        spec = plugins.model(name)  # a clear error for an unknown or disabled name
        ex = plugins.task(spec.task).example
        console.print(f"[bold]{name}[/] (task {spec.task}, plugin {plugins.owner('models', name)}): contract on "
                      f"{ex.data} {ex.start}..{ex.end}" + (f", panel {ex.panel} {list(ex.entities)}" if ex.panel else ""))
        for label, problem in run_contract(plugins, name):
            if problem is None:
                console.print(f"  [green]ok[/]    {label}")
            else:
                failed += 1
                console.print(f"  [red]FAIL[/]  {label}: {problem}")
    console.print(f"{failed} check(s) failed" if failed else "every check passed")
    return 1 if failed else 0


def main(args: argparse.Namespace) -> int:
    from rich.table import Table

    from treum.core.plugins import create_plugin_registry, load_plugin_settings

    settings = load_plugin_settings()
    plugins = create_plugin_registry(settings)
    if args.verb == "check":
        if not args.names:
            raise TreumError("name the models to check: treum plugins check MODEL [MODEL ...]")
        return check(plugins, args.names)
    t = Table(title=f"plugins (settings: {settings.source or 'no plugins.toml'})")
    for c in ("plugin", "distribution", "version", "on", "registers"):
        t.add_column(c)
    for info in plugins.infos:
        regs = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(info.registers.items()))
        t.add_row(info.name, info.distribution, info.version, "yes" if info.enabled else "no", regs or "-")
    console.print(t)
    return 0


def add_parser(sub) -> None:
    pl = sub.add_parser("plugins", help="plugins list | plugins check MODEL ...")
    pl.add_argument("verb", choices=["list", "check"])
    pl.add_argument("names", nargs="*", help="check: the models to run treum's model contract on")
