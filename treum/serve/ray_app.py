"""Ray Serve wrappers: thin classes around ``Service`` and the FastAPI app.

- ``Router``: the ingress deployment; its replica holds a ``Service`` (registry,
  live models with ``local`` placement, cache, log writer) and serves the app,
  built in the replica (with the plugins' routes) once the service exists.
- ``ModelReplica``: one deployment per ``remote`` member; it loads the version
  the router names (verifying its artifact) with its task and answers for the last bar.

``build_app(args)`` is an application builder, so an exported config can name
it in ``import_path`` for ``serve deploy`` on a cluster.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ray import serve

log = logging.getLogger(__name__)


# the exported Serve config names the registry URL without its password; the replicas read it from here
PASSWORD_ENV = "TREUM_REGISTRY_PASSWORD"


CACHE_PASSWORD_ENV = "TREUM_CACHE_PASSWORD"  # the same for serve.cache_url (redis://:PASSWORD@host/0)


def _query_password(query) -> str | None:
    for key, value in query.items():
        if key.lower() == "password":
            return value if isinstance(value, str) else (value[0] if value else None)
    return None


def url_password(url: str | None) -> str | None:
    """The password a registry URL carries, in its user part or as a ``password=`` query parameter."""
    from sqlalchemy.engine import make_url

    if not url:
        return None
    u = make_url(url)
    return u.password or _query_password(u.query)


def without_password(url: str | None) -> str | None:
    """The registry URL with its password left out (``URL.set(password=None)`` would keep it); else unchanged."""
    from sqlalchemy.engine import URL, make_url

    if not url_password(url):
        return url
    u = make_url(url)
    query = {k: v for k, v in u.query.items() if k.lower() != "password"}
    bare = URL.create(u.drivername, u.username, None, u.host, u.port, u.database, query)
    return bare.render_as_string(hide_password=False)


def cache_url_without_password(url: str | None) -> str | None:
    """``serve.cache_url`` with the password of its user part left out."""
    from urllib.parse import urlsplit, urlunsplit

    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}@{host}" if user else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def registry_url_from_args(args: dict) -> str | None:
    """The registry URL of builder args, with the password from ``registry_password_env`` put back into it.

    Only when that variable is set and the URL has no password of its own; SQLite and None stay as they are.
    """
    from sqlalchemy.engine import make_url

    url = args.get("registry_url")
    password = os.environ.get(args.get("registry_password_env") or PASSWORD_ENV)
    if not url or not password:
        return url
    u = make_url(url)
    if u.get_backend_name() == "sqlite" or u.password:
        return url
    return u.set(password=password).render_as_string(hide_password=False)


def _registry(args: dict):
    from treum.registry.store import Registry

    return Registry(url=registry_url_from_args(args), home=Path(args["home"]) if args.get("home") else None)


def _plugins(args: dict):
    from treum.core.plugins import create_plugin_registry, load_plugin_settings

    toml = args.get("plugins_toml")
    return create_plugin_registry(load_plugin_settings(Path(toml)) if toml else None)


# per-request access logs are a file write per request on the hot path; the registry keeps the serving log
QUIET = {"enable_access_log": False, "log_level": "WARNING"}

# Shutting the router's replica down: Ray drains it (at least 1 s with direct ingress, then the requests in
# flight, each bounded by serve.request_timeout_s), then calls ``Router.__del__``, whose log writer takes up
# to its close budget (``logwriter.CLOSE_BUDGET_S``) to write what is queued; whatever it cannot write is
# already in the spool. Ray kills the replica when graceful_shutdown_timeout_s has passed since the start,
# so that timeout must cover all of it: ``shutdown_timeout_s``.
DRAIN_MARGIN_S = 5.0


def shutdown_timeout_s(request_timeout_s: float = 10.0, log_budget_s: float | None = None) -> float:
    """Ray's graceful shutdown for the router: the drain (1 s, requests in flight), the log writer's budget."""
    from treum.serve.logwriter import CLOSE_BUDGET_S

    budget = CLOSE_BUDGET_S if log_budget_s is None else float(log_budget_s)
    return 1.0 + float(request_timeout_s) + budget + DRAIN_MARGIN_S


@serve.deployment(name="member", ray_actor_options={"num_cpus": 0}, logging_config=QUIET)
class ModelReplica:
    """A remote ensemble member: loads versions by id on demand and predicts the last bar."""

    def __init__(self, args: dict):
        from treum.serve.router import tune_gc

        tune_gc(int(args["settings"].get("gc_gen0_threshold", 0)))
        self.registry = _registry(args)
        self.plugins = _plugins(args)
        self.models: dict[str, Any] = {}

    def _model(self, model_id: str, name: str, version: str):
        model = self.models.get(model_id)
        if model is None:
            from treum.serve.live import load_version, task_of

            row = self.registry.get_by_id(model_id)
            task = task_of(self.plugins, row.model_type, row.model_metadata)
            model = load_version(self.registry, self.plugins, row.artifact_sha256, task)
            self.models = {model_id: model, **{k: v for k, v in list(self.models.items())[:3]}}
        return model

    def warm(self, model_id: str, name: str, version: str) -> bool:
        """Load a version before the first request needs it (the router calls this on every deploy)."""
        self._model(model_id, name, version)
        return True

    def predict(self, model_id: str, name: str, version: str, frame, columns: tuple[str, ...]) -> dict[str, float]:
        from treum.serve.live import predict_last

        return predict_last(self._model(model_id, name, version), frame, columns)


@serve.deployment(name="router", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256, logging_config=QUIET,
                  graceful_shutdown_timeout_s=shutdown_timeout_s())
@serve.ingress()
class Router:
    def __init__(self, args: dict, members: dict):
        from treum.serve.router import Service, tune_gc
        from treum.serve.settings import ServeSettings

        tune_gc(int(args["settings"].get("gc_gen0_threshold", 0)))  # this process serves: collect rarely
        class RemoteMember:
            def __init__(self, handle):
                self.handle = handle

            def predict(self, model_id, name, version, frame, columns):
                return self.handle.predict.remote(model_id, name, version, frame, columns)

            def warm(self, model_id, name, version):
                self.handle.warm.remote(model_id, name, version)  # not awaited: loading runs on its own

        self.service = Service(
            ServeSettings.from_config(args["settings"]),
            _registry(args),
            _plugins(args),
            {name: RemoteMember(handle) for name, handle in members.items()},
        )

    def __serve_build_asgi_app__(self):
        """The app, built in the replica once the service exists: it mounts the plugins' routes."""
        from treum.serve.api import create_app

        service = self.service
        return create_app(lambda: service, service.plugins)

    def __del__(self):
        service = getattr(self, "service", None)
        if service is not None:
            service.close()


def build_app(args: dict):
    """The Serve application from builder args: ``settings`` (the serve config), ``registry_url``, ``home``
    (and ``registry_password_env``: where the replicas find the password an exported ``registry_url`` leaves out)."""
    ensemble = args["settings"].get("ensemble") or {}
    members = {
        name: ModelReplica.options(name=f"member-{name}").bind(args)
        for name, spec in (ensemble.get("members") or {}).items()
        if (spec or {}).get("placement") == "remote"
    }
    serve_settings = args["settings"]
    grace = shutdown_timeout_s(serve_settings.get("request_timeout_s", 10.0), serve_settings.get("log_close_budget_s"))
    return Router.options(graceful_shutdown_timeout_s=grace,
                          num_replicas=int(serve_settings.get("router_replicas", 1))).bind(args, members)


def check_start(settings, plugins_toml: Path | None = None) -> None:
    """What the replicas would refuse, refused here first: config names and plugin routes that clash."""
    from treum.serve.api import create_app
    from treum.serve.settings import check_plugins

    plugins = _plugins({"plugins_toml": str(plugins_toml) if plugins_toml else None})
    check_plugins(settings, plugins)
    create_app(lambda: None, plugins)


def serve_env(settings) -> dict[str, str]:
    """Environment for Ray's processes: direct ingress on the router replica's own port."""
    env = {"RAY_SERVE_LOG_TO_STDERR": "0"}
    if settings.direct_ingress:
        env.update({
            "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(settings.direct_port),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(settings.direct_port + 10),
            # one machine: no load balancer to drain from, so do not hold a stopping replica for 30 s
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
        })
    return env


def builder_args(settings, registry_url: str | None, home: Path | None, plugins_toml: Path | None = None,
                 keep_password: bool = True) -> dict:
    """The args of ``build_app``; ``keep_password=False`` (an exported file) leaves the registry password out.

    The replicas then read it from the environment variable that ``registry_password_env`` names.
    """
    values = settings.as_dict()
    if not keep_password:
        values["cache_url"] = cache_url_without_password(values.get("cache_url"))
    return {
        "settings": values,
        "registry_url": registry_url if keep_password else without_password(registry_url),
        "registry_password_env": PASSWORD_ENV,
        "home": str(home) if home else None,
        "plugins_toml": str(plugins_toml) if plugins_toml else None,
    }


def start(settings, registry_url: str | None, home: Path | None, plugins_toml: Path | None = None) -> None:
    """Start Ray (or join ``settings.address``) and run the application; returns once it is healthy."""
    import ray

    check_start(settings, plugins_toml)
    env = serve_env(settings)
    os.environ.update(env)  # Ray's local processes inherit it
    if not ray.is_initialized():
        ray.init(
            address=settings.address,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
            runtime_env={"env_vars": env},
        )
    # the proxy and the direct-ingress replicas both take their keep-alive from these options
    serve.start(http_options={"host": settings.host, "port": settings.port,
                              "keep_alive_timeout_s": settings.keep_alive_s})
    serve.run(build_app(builder_args(settings, registry_url, home, plugins_toml)), name="treum", route_prefix="/",
              blocking=False)


def stop() -> None:
    """Shut the application down cleanly (replicas flush their logs), then Ray."""
    import ray

    if not ray.is_initialized():
        return  # stopped already; serve.shutdown() would start a Ray just to find nothing
    try:
        serve.shutdown()
    finally:
        ray.shutdown()


def export_config(settings, registry_url: str | None, home: Path | None, path: Path) -> Path:
    """Write a Serve config file that ``serve deploy`` accepts on a Ray cluster.

    The registry URL goes in without its password: the cluster's nodes must set ``PASSWORD_ENV`` to it.
    """
    import yaml
    from ray.serve.schema import ServeDeploySchema

    check_start(settings)
    args = builder_args(settings, registry_url, home, keep_password=False)
    config = {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": settings.port, "keep_alive_timeout_s": settings.keep_alive_s},
        "applications": [
            {
                "name": "treum",
                "route_prefix": "/",
                "import_path": "treum.serve.ray_app:build_app",
                "args": args,
                "runtime_env": {"env_vars": serve_env(settings)},
            }
        ],
    }
    ServeDeploySchema.model_validate(config)  # refuse to write what `serve deploy` would refuse
    path = Path(path)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
