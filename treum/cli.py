"""The ``treum`` command: a thin parser that hands each subcommand to its module in ``treum.commands``.

The run commands (train, evaluate, leaderboard, tune) are Hydra applications: every
argument after the command goes to Hydra (``--help``, ``--cfg job``,
``--multirun``, overrides). The management commands take flags. Errors treum
raises on purpose print as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from treum.core.errors import TreumError

RUN_COMMANDS = {
    "train": "walk-forward evaluate a model beside its baselines, fit it, register it",
    "evaluate": "walk-forward evaluate a model beside its baselines (registers nothing)",
    "leaderboard": "every model of a task and its baselines on one split (task=volatility data=sp500)",
    "tune": "search a model's hyper-parameters on Ray Tune (validation blocks before the test segment), "
            "then train and register the best",
}


BUILTIN_COMMANDS = ("registry", "plugins", "data", "serve", "report", "demo")


def build_parser(plugin_registry: object = None) -> argparse.ArgumentParser:
    """The parser of the management commands, and of the plugins' commands when ``plugin_registry`` is given."""
    from treum.commands import data, plugins, registry, report, serve

    p = argparse.ArgumentParser(
        prog="treum",
        description="A model zoo for financial machine learning.",
        epilog="run commands: " + "; ".join(f"treum {k}: {v}" for k, v in RUN_COMMANDS.items())
        + ". Each is a Hydra application: `treum train --help` lists its config groups.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in RUN_COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    registry.add_parser(sub)
    plugins.add_parser(sub)
    data.add_parser(sub)
    serve.add_parser(sub)
    report.add_parser(sub)
    sub.add_parser("demo", help="train and evaluate the zoo on packaged data, register, print leaderboards, serve")
    if plugin_registry is not None:
        _add_plugin_commands(sub, plugin_registry)
    return p


def _add_plugin_commands(sub: argparse._SubParsersAction, plugins: object) -> None:
    from treum.core.errors import PluginError

    for name, spec in plugins.specs("commands").items():  # type: ignore[attr-defined]
        if name in RUN_COMMANDS or name in BUILTIN_COMMANDS:
            owner = plugins.owner("commands", name)  # type: ignore[attr-defined]
            raise PluginError(f"plugin '{owner}' registers the command '{name}', which treum has built in; "
                              "rename it, or disable the plugin in plugins.toml")
        parser = sub.add_parser(name, help=spec.help, description=spec.help)
        parser.add_argument("--url", default=None,
                            help="registry database URL (default: $TREUM_REGISTRY_URL or SQLite in $TREUM_HOME)")
        spec.configure(parser)
        parser.set_defaults(plugin_command=spec)


def _run_plugin_command(args: argparse.Namespace, plugin_registry: object) -> int:
    from treum.commands.host import CommandHost

    host = CommandHost(plugin_registry, getattr(args, "url", None))
    try:
        return int(args.plugin_command.run(args, host) or 0)
    finally:
        host.close()


def _run(command: str, argv: list[str]) -> int:
    import importlib

    return importlib.import_module(f"treum.commands.{command}").main(argv)


def _complete(argv: list[str]) -> int:
    """``treum -sc query=bash``, as Hydra's completion script calls it: route to the run command being typed."""
    import os

    line = os.environ.get("COMP_LINE", "")
    words = line.split(" ")
    if len(words) > 2 and words[1] in RUN_COMMANDS:
        # Hydra completes the words after the program name; drop the subcommand from the line it reads
        os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]])
        point = int(os.environ.get("COMP_POINT", len(line)))
        os.environ["COMP_POINT"] = str(max(point - len(words[1]) - 1, 0))
        return _run(words[1], argv)
    if len(words) > 2:  # past the command name: the management commands take flags, not Hydra overrides
        return 0
    partial = words[1] if len(words) > 1 else ""
    names = [*RUN_COMMANDS, *BUILTIN_COMMANDS]
    print(" ".join(n for n in names if n.startswith(partial)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-sc"], ["--shell-completion"]) and any(a.startswith("query=") for a in argv):
        return _complete(argv)
    start = time.perf_counter()
    command = argv[0] if argv else None
    try:
        if command in RUN_COMMANDS:
            return _run(command, argv[1:])
        plugin_registry = None
        if command not in BUILTIN_COMMANDS:  # a plugin's command, or --help: the plugins' commands are listed
            from treum.core.plugins import create_plugin_registry

            plugin_registry = create_plugin_registry()
        args = build_parser(plugin_registry).parse_args(argv)
        if getattr(args, "plugin_command", None) is not None:
            return _run_plugin_command(args, plugin_registry)
        if getattr(args, "actor", "-") is None:
            from treum.commands.compose import login_name

            args.actor = login_name()
        if args.command == "demo":
            from treum.commands import demo

            return demo.run()
        import importlib

        return importlib.import_module(f"treum.commands.{args.command}").main(args)
    except TreumError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if command in (*RUN_COMMANDS, "demo") and not any(a in ("--help", "-h", "--cfg", "-c", "--info", "-i")
                                                           for a in argv):
            print(f"done in {time.perf_counter() - start:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
