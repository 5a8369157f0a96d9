"""``treum evaluate``: walk-forward evaluate a model beside its task's baselines; registers nothing."""

from __future__ import annotations

from collections.abc import Sequence

from treum.commands.hydra_app import run_app
from treum.commands.train import run


def main(argv: Sequence[str]) -> int:
    return run_app("evaluate", argv, lambda cfg, overrides, run_dir: run("evaluate", cfg, overrides, run_dir))
