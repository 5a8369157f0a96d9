"""Train, evaluate and tune runs started over HTTP (``POST /training/jobs``, ``POST /optimization/hyperparameters``).

``check_request`` validates a request's overrides and composes its config (a bad one is
a 422 before anything is queued); ``execute`` runs it in a Ray actor of the cluster that
serves (``treum.serve.job_routes``), inside the queued row the route created. The HTTP
layer reaches this module by name, as Ray Serve reaches an application by its import path.

Only what a researcher would choose is accepted from a request: the model, the data set by
name, the task and features, ``model.*``, ``features.*``, ``task.*``, ``eval.*``, ``hpo.*``,
``seed`` and ``zoo``. Paths (``data.path``), the registry, Hydra's own keys and the
cluster address stay the server's.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from treum.core.errors import ConfigError

ALLOWED_ROOTS = ("model", "features", "task", "eval", "hpo", "seed", "zoo", "data", "experiment")
REFUSED = {
    "registry": "the registry is the server's",
    "hydra": "Hydra's own settings are the server's",
    "tune": "where a search runs is the server's (its Ray cluster)",
    "version": "version= belongs to `treum evaluate` on the command line",
    "actor": "the actor is the API key's name",
    "serve": "the serving settings are the server's",
}
_COMPOSE = threading.Lock()  # Hydra's global state: one composition at a time in a serving process


def check_request(command: str, model: str, data: str | None, hpo: str | None, overrides: list[str]) -> list[str]:
    """The run's full override list, validated and composed as the CLI would; a ConfigError names what is wrong."""
    from treum.commands.compose import compose_run
    from treum.commands.hydra_app import with_hpo
    from treum.core.plugins import create_plugin_registry

    if command != "tune" and hpo is not None:
        raise ConfigError("hpo belongs to a search (command tune, or POST /optimization/hyperparameters)")
    for o in overrides:
        key = o.lstrip("+~").split("=", 1)[0]
        root = key.split(".", 1)[0].split("/", 1)[0]
        if "=" not in o:
            raise ConfigError(f"override {o!r} is not KEY=VALUE")
        if root in REFUSED:
            raise ConfigError(f"override {o!r} is refused: {REFUSED[root]}")
        if root not in ALLOWED_ROOTS:
            raise ConfigError(f"override {o!r}: a request may set keys of {', '.join(ALLOWED_ROOTS)}")
        if root == "data" and key not in ("data",) and key.split(".")[-1] in ("path", "root", "file", "directory"):
            raise ConfigError(f"override {o!r} is refused: a request names a data set, never a path on the server")
        if root in ("model", "data", "hpo") and key == root:
            raise ConfigError(f"override {o!r}: give {root} as its own field of the request")
    full = [f"model={model}", *([f"data={data}"] if data else []), *([f"hpo={hpo}"] if hpo else []), *overrides]
    with _COMPOSE:
        plugins = create_plugin_registry()
        if plugins.model(model).baseline:
            raise ConfigError(f"'{model}' is a baseline: it is scored beside every model of its task but never trained "
                              "on its own")
        if command == "tune":
            full = with_hpo(full, plugins)
        cfg = compose_run(full, plugins)
        if command == "tune":
            from treum.commands.tune import load_hpo, check_space
            from treum.commands.compose import to_dict
            from treum.core.hpo import parse_space

            cfg, _, hpo_cfg = load_hpo(cfg, plugins, full)
            dims = parse_space(hpo_cfg.space, to_dict(cfg))
            check_space(dims, plugins.model(model), to_dict(cfg.model), plugins, cfg)
    return full


def execute(job_id: str, command: str, overrides: list[str], actor: str, env: dict[str, str]) -> dict[str, Any]:
    """Run a queued job to its end (in a Ray actor); the row says how it went."""
    os.environ.update(env)
    from treum.commands.compose import compose_run
    from treum.commands.output import new_run_dir
    from treum.commands.run import run_models
    from treum.core.plugins import create_plugin_registry
    from treum.registry.store import Registry

    try:
        plugins = create_plugin_registry()
        cfg = compose_run([*overrides, f"actor={actor}"], plugins)
        name = str(cfg.model.name)
        run_dir = new_run_dir(command, f"{name}-{cfg.data.name}")
        if command == "tune":
            from treum.commands.tune import load_hpo, search

            cfg, hpo_name, hpo = load_hpo(cfg, plugins, overrides)
            out = search(cfg, plugins, overrides, run_dir, hpo_name, hpo, adopt=job_id)
            return {"registered": out.final.registered if out.final else []}
        register = command == "train" and cfg.registry.get("register") is not False
        outcome = run_models(cfg, plugins, [name], overrides, command, register, run_dir, adopt={name: job_id})
        return {"registered": outcome.registered}
    except BaseException as exc:
        reg = Registry()
        try:  # a job that failed before its run adopted it (the plugins or the config changed meanwhile)
            reg.end_unstarted(job_id, "failed" if isinstance(exc, Exception) else "cancelled",
                              f"never started: {type(exc).__name__}: {exc}")
        finally:
            reg.close()
        raise
