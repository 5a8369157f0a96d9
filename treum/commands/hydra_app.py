"""The run commands as real Hydra applications.

``treum train|evaluate|leaderboard [hydra flags] [overrides]`` hand their
arguments to ``@hydra.main``, so ``--help`` lists the config groups,
``--cfg job|hydra|all``, ``--info``, ``hydra.run.dir=...``, shell completion and
``--multirun`` (through Hydra's sweeper and launchers, e.g.
``hydra/launcher=joblib``) behave as Hydra users expect.

Before Hydra starts, every combination of the run is composed and validated
here, so a misspelled name, an unknown key or a wrong type stops the command
with a precise one-line error before any work. Each job (one run, or one
combination of a sweep) reports its exit status in a status file; a failing
combination is reported and the rest of the sweep still runs.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig

from treum.core.errors import TreumError

CONFIG_PATH = "../conf"
# flags that make Hydra print something instead of running: no pre-validation for them
INFO_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc",
              "--resolve", "--package", "-p", "--version")
STATUS_ENV = "TREUM_RUN_STATUS"


def _plugins():
    from treum.core.plugins import create_plugin_registry

    return create_plugin_registry()


# Hydra's flags that take a value (always, or -- for --info -- one of a few words)
VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--shell-completion", "-sc", "--config-path", "-cp",
               "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"}
INFO_VALUES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def _split(argv: Sequence[str]) -> tuple[bool, list[str], list[str], list[str]]:
    """(multirun?, flags with their values, treum overrides, hydra.* overrides).

    Hydra's parser takes its flags before the overrides; users write them in any order.
    """
    flags: list[str] = []
    overrides: list[str] = []
    hydra_overrides: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("-") and not a.startswith("--") or a.startswith("--"):
            flags.append(a)
            nxt = args[i + 1] if i + 1 < len(args) else None
            if nxt is not None and "=" not in a and (
                a in VALUE_FLAGS or (a in ("--info", "-i") and nxt in INFO_VALUES)
            ):
                flags.append(nxt)
                i += 1
        elif a.lstrip("+~").startswith(("hydra.", "hydra/")):
            hydra_overrides.append(a)
        else:
            overrides.append(a)
        i += 1
    multirun = any(a in ("-m", "--multirun") for a in flags)
    return multirun, flags, overrides, hydra_overrides


def with_hpo(overrides: list[str], plugins) -> list[str]:
    """A tune run's overrides with ``hpo=<model>`` added when they choose no search space (``hpo.*`` keys need one)."""
    if any(o.lstrip("+~").split("=")[0] == "hpo" for o in overrides):
        return overrides
    from treum.commands.compose import compose_plain

    model = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+~").split("=")[0] == "model"), None)
    if model is None:
        model = str(compose_plain([], plugins).model.name)
    try:
        if plugins.model(model).baseline:
            return overrides  # validate() says why a baseline is not tuned
        compose_plain([f"model={model}", f"hpo={model}"], plugins)
    except TreumError as exc:
        if "group 'hpo'" not in str(exc):
            return overrides  # an unknown model: validate() names it
        choices = str(exc).split("choices: ")[-1]
        raise TreumError(f"model '{model}' has no search of its own (conf/hpo/{model}.yaml); choose one with "
                         f"hpo=NAME (choices: {choices}) or write conf/hpo/{model}.yaml") from None
    return [f"hpo={model}", *overrides]


def validate(command: str, argv: Sequence[str], plugins) -> list[str]:
    """Compose every combination before any work; returns the overrides to hand to Hydra.

    For a single train/evaluate run that chose no task, the task of the chosen model is
    added, so ``--cfg job`` and the run's config agree with what runs.
    """
    from treum.commands.compose import compose_leaderboard, compose_run, expand_multirun, model_config
    from treum.commands.run import models_of_task

    multirun, flags, overrides, hydra_overrides = _split(argv)
    if command == "tune":
        overrides = with_hpo(overrides, plugins)
    combos = expand_multirun(overrides) if multirun else [overrides]
    for combo in combos:
        cfg = compose_leaderboard(combo, plugins) if command == "leaderboard" else compose_run(combo, plugins)
        if command != "leaderboard" and plugins.model(cfg.model.name).baseline:
            spec = plugins.model(cfg.model.name)
            raise TreumError(
                f"'{spec.name}' is a baseline: it is scored beside every model of its task but never registered; "
                f"run `treum leaderboard task={spec.task}`"
            )
        # every other config the run will build: the task's baselines, and a leaderboard's models
        for baseline in plugins.task(cfg.task.name).baselines:
            model_config(plugins, baseline.model, combo, dict(baseline.overrides))
        if command == "leaderboard":
            for name in models_of_task(plugins, cfg.task.name):
                model_config(plugins, name, combo)
    if not multirun and command != "leaderboard" and not any(o.lstrip("+~").startswith("task=") for o in overrides):
        overrides = [*overrides, f"task={cfg.task.name}"]
    return [*flags, *hydra_overrides, *overrides]


def run_app(command: str, argv: Sequence[str], job: Callable[[DictConfig, list[str], Path], int]) -> int:
    """Run ``job`` as the Hydra application ``treum <command>``; returns the exit status."""
    import hydra
    from hydra.core.global_hydra import GlobalHydra

    from treum.commands.compose import use_plugin_searchpath  # also registers the config resolvers

    plugins = _plugins()
    args = list(argv)
    expected = None  # how many jobs must report, when the command runs jobs
    if any(a.split("=")[0] in INFO_FLAGS for a in args):
        try:  # --cfg job should show the config that would run, but Hydra reports bad overrides itself
            args = validate(command, args, plugins)
        except TreumError:
            _, flags, overrides, hydra_overrides = _split(args)
            args = [*flags, *hydra_overrides, *overrides]
    else:
        args = validate(command, args, plugins)
        from treum.commands.compose import expand_multirun

        multirun, _, overrides, _ = _split(args)
        expected = len(expand_multirun(overrides)) if multirun else 1
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()

    @hydra.main(config_path=CONFIG_PATH, config_name="config", version_base=None)
    def app(cfg: DictConfig) -> int:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        overrides = list(hc.overrides.task)
        rc, error = 0, None
        try:
            rc = job(cfg, overrides, Path(hc.runtime.output_dir))
        except TreumError as exc:
            rc, error = 2, str(exc)
            print(f"error: {exc}", file=sys.stderr, flush=True)
        except Exception as exc:  # a bug, not a bad input: keep the traceback, and let the sweep go on
            rc, error = 1, f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        status = os.environ.get(STATUS_ENV)
        if status:
            with open(status, "a") as fh:
                fh.write(json.dumps({"overrides": overrides, "rc": rc, "error": error}) + "\n")
        return rc

    with tempfile.NamedTemporaryFile("w+", suffix=".jsonl", delete=False) as fh:
        status_path = fh.name
    old_env, old_argv = os.environ.get(STATUS_ENV), sys.argv
    os.environ[STATUS_ENV] = status_path
    # Hydra would name the job after this module; the job is the command
    use_plugin_searchpath(plugins)
    _, flags, overrides, hydra_overrides = _split(args)
    # shell completion installs itself for the program name: `treum`, whose -sc queries cli.py routes back here
    prog = "treum" if any(a.startswith("install=") or a.startswith("uninstall=") for a in flags) else f"treum {command}"
    sys.argv = [prog, *flags, f"hydra.job.name={command}", *hydra_overrides, *overrides]
    try:
        app()
        code = 0
    except SystemExit as exc:  # --help, --info, Hydra's own errors
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:  # Hydra refusing its arguments (jobs catch their own errors)
        raise TreumError(f"hydra: {exc}") from None
    finally:
        sys.argv = old_argv
        if old_env is None:
            os.environ.pop(STATUS_ENV, None)
        else:
            os.environ[STATUS_ENV] = old_env
    lines = [json.loads(line) for line in Path(status_path).read_text().splitlines() if line.strip()]
    Path(status_path).unlink(missing_ok=True)
    failed = [r for r in lines if r["rc"]]
    silent = max((expected or 0) - len(lines), 0)  # jobs killed before they could report (OOM, a signal)
    if len(lines) > 1 or silent:
        total = len(lines) + silent
        print(f"\nmultirun: {len(lines) - len(failed)} of {total} runs succeeded", file=sys.stderr)
        for r in failed:
            print(f"  failed ({r['rc']}): {' '.join(r['overrides'])}: {r['error']}", file=sys.stderr)
        if silent:
            print(f"  {silent} run(s) ended without reporting (killed?); see the sweep folder's logs", file=sys.stderr)
    return max([code, *(r["rc"] for r in lines), 1 if silent else 0])
