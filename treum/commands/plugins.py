"""``treum plugins list``: every plugin, its version, what it registers, whether it is on."""

from __future__ import annotations

import argparse

from treum.commands.output import console


def main(args: argparse.Namespace) -> int:
    from rich.table import Table

    from treum.core.plugins import create_plugin_registry, load_plugin_settings

    settings = load_plugin_settings()
    plugins = create_plugin_registry(settings)
    t = Table(title=f"plugins (settings: {settings.source or 'no plugins.toml'})")
    for c in ("plugin", "distribution", "version", "on", "registers"):
        t.add_column(c)
    for info in plugins.infos:
        regs = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(info.registers.items()))
        t.add_row(info.name, info.distribution, info.version, "yes" if info.enabled else "no", regs or "-")
    console.print(t)
    return 0


def add_parser(sub) -> None:
    pl = sub.add_parser("plugins", help="plugins list")
    pl.add_argument("verb", choices=["list"])
