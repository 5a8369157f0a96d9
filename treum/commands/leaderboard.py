"""``treum leaderboard``: every model of a task and its baselines on one split; registers only when asked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from treum.commands.hydra_app import run_app
from treum.core.errors import TreumError


def run(cfg: DictConfig, overrides: list[str], run_dir: Path) -> int:
    from treum.commands import run as stages
    from treum.commands.compose import compose_leaderboard
    from treum.commands.output import print_run
    from treum.core.plugins import create_plugin_registry

    plugins = create_plugin_registry()
    cfg = compose_leaderboard(overrides, plugins)
    names = stages.models_of_task(plugins, cfg.task.name)
    if not names:
        raise TreumError(f"no enabled model has task '{cfg.task.name}' (treum plugins list)")
    register = cfg.registry.get("register") is True  # registry.register=true registers every model
    outcome = stages.run_models(cfg, plugins, names, overrides, "leaderboard", register, run_dir)
    print_run(outcome)
    return 1 if outcome.failures else 0


def main(argv: Sequence[str]) -> int:
    return run_app("leaderboard", argv, run)
