"""``treum train``: walk-forward evaluate a model beside its task's baselines, fit it, register it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from treum.commands.hydra_app import run_app


def run(command: str, cfg: DictConfig, overrides: list[str], run_dir: Path) -> int:
    """One train or evaluate run (a Hydra job): the chosen model beside its baselines."""
    from treum.commands import run as stages
    from treum.commands.compose import compose_run
    from treum.commands.output import print_run
    from treum.core.plugins import create_plugin_registry

    plugins = create_plugin_registry()
    cfg = compose_run(overrides, plugins)  # the task follows the model in every combination of a sweep
    if cfg.get("version") is not None:
        from treum.core.errors import ConfigError

        if command != "evaluate":
            raise ConfigError("version= applies a registered version to other data; it belongs to `treum evaluate`, "
                              "not `treum train` (drop it, or run treum evaluate)")
        outcome = stages.apply_version(cfg, plugins, run_dir)
        print_run(outcome)
        return 0
    register = command == "train" and cfg.registry.get("register") is not False  # validated: true, false or null
    outcome = stages.run_models(cfg, plugins, [cfg.model.name], overrides, command, register, run_dir)
    print_run(outcome)
    return 1 if outcome.failures else 0


def main(argv: Sequence[str]) -> int:
    return run_app("train", argv, lambda cfg, overrides, run_dir: run("train", cfg, overrides, run_dir))
