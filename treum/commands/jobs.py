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
import re
import threading
from typing import Any

from treum.core.errors import ConfigError

ALLOWED_ROOTS = ("model", "features", "task", "eval", "hpo", "seed", "zoo", "data", "experiment")
GROUPS = ("model", "data", "features", "task", "hpo", "experiment", "zoo", "eval")
REFUSED = {
    "registry": "the registry is the server's",
    "hydra": "Hydra's own settings are the server's",
    "tune": "where a search runs is the server's (its Ray cluster)",
    "version": "version= belongs to `treum evaluate` on the command line",
    "actor": "the actor is the API key's name",
    "serve": "the serving settings are the server's",
}
PATHLIKE = {"path", "paths", "file", "files", "dir", "dirs", "directory", "root", "url", "uri", "folder", "home"}
CHOICE = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")
MAX_SAMPLES = 500  # trials a search started over HTTP may ask for
_COMPOSE = threading.Lock()  # Hydra's global state: one composition at a time in a serving process


def _pathlike(names) -> bool:
    """Whether a key names a path, a file or an address (``news_path``, ``cache_url``; not ``gbm_direction``)."""
    return any(word in PATHLIKE for name in names for word in str(name).lower().split("_"))


def _check_override(o: str) -> None:
    if "=" not in o:
        raise ConfigError(f"override {o!r} is not KEY=VALUE")
    key, value = o.split("=", 1)
    if key.startswith(("+", "~")):
        raise ConfigError(f"override {o!r}: a request may change the config's keys, not add or delete them")
    if any(c in o for c in "$\\"):  # ${oc.env:...} would read the server's environment; \ escapes it past a check
        raise ConfigError(f"override {key}=...: interpolations ($...) and escapes (\\) are refused in a request; "
                          "give the value")
    root = key.split(".", 1)[0].split("/", 1)[0]
    if root in REFUSED:
        raise ConfigError(f"override {key}=... is refused: {REFUSED[root]}")
    if root not in ALLOWED_ROOTS:
        raise ConfigError(f"override {key}=...: a request may set keys of {', '.join(ALLOWED_ROOTS)}")
    if key in ("model", "data", "hpo"):
        raise ConfigError(f"override {key}=...: give {key} as its own field of the request")
    if key in GROUPS and not CHOICE.match(value):
        raise ConfigError(f"override {key}=...: a choice of the {key} group is a name (letters, digits, _ and -)")
    if key.startswith("hpo.space"):
        raise ConfigError("a request chooses a search space by name (hpo=NAME, a file in conf/hpo), it does not write one")
    if _pathlike(key.split(".")[1:]):
        raise ConfigError(f"override {key}=... is refused: a request names data sets and values, never a path or "
                          "an address on the server")


def check_request(command: str, model: str, data: str | None, hpo: str | None, overrides: list[str]) -> list[str]:
    """The run's full override list, validated and composed as the CLI would; a ConfigError names what is wrong."""
    from omegaconf.errors import OmegaConfBaseException

    from treum.commands.compose import compose_run, to_dict
    from treum.commands.hydra_app import with_hpo
    from treum.core.data import Segments
    from treum.core.plugins import create_plugin_registry

    if command != "tune" and hpo is not None:
        raise ConfigError("hpo belongs to a search (command tune, or POST /optimization/hyperparameters)")
    for o in overrides:
        _check_override(o)
    full = [f"model={model}", *([f"data={data}"] if data else []), *([f"hpo={hpo}"] if hpo else []), *overrides]
    with _COMPOSE:
        plugins = create_plugin_registry()
        if plugins.model(model).baseline:
            raise ConfigError(f"'{model}' is a baseline: it is scored beside every model of its task but never trained "
                              "on its own")
        try:
            if command == "tune":
                full = with_hpo(full, plugins)
            cfg = compose_run(full, plugins)
            data_cfg = to_dict(cfg.data)
            spec = plugins.dataset(data_cfg["name"])
            found = spec.missing is not None and spec.missing(data_cfg) is None  # a file the server finds itself
            unset = [k for k, v in data_cfg.items() if v in (None, "") and _pathlike([k]) and not found]
            if unset:
                raise ConfigError(f"data '{data_cfg['name']}' reads a file the server would have to be given "
                                  f"({', '.join(unset)}); a request can only name the server's data sets")
            if data_cfg.get("segments"):
                Segments.from_config(data_cfg["segments"])
            if command == "tune":
                from treum.commands.tune import check_space, load_hpo
                from treum.core.hpo import parse_space

                cfg, _, hpo_cfg = load_hpo(cfg, plugins, full)
                if hpo_cfg.num_samples > MAX_SAMPLES:
                    raise ConfigError(f"hpo.num_samples={hpo_cfg.num_samples}: a search started over HTTP runs at most "
                                      f"{MAX_SAMPLES} trials")
                dims = parse_space(hpo_cfg.space, to_dict(cfg))
                check_space(dims, plugins.model(model), to_dict(cfg.model), plugins, cfg)
        except (OmegaConfBaseException, ValueError, TypeError) as exc:
            raise ConfigError(f"the overrides do not compose: {type(exc).__name__}") from None
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
        from treum.core.hpo import as_override

        overrides = [*overrides, as_override("actor", actor)]  # the API key's name, in the audit log and the versions
        cfg = compose_run(overrides, plugins)
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
