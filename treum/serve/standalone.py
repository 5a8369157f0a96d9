"""``treum serve serve.engine=uvicorn``: the same service in one process, without Ray.

For one machine: no proxy, no controller, no replica bookkeeping, so more of its cores
answer requests (the 10,000-connection bench meets its target here, and not on Ray's
direct-ingress port on the same 2 cores). What it gives up: remote members (every member
is local here), replicas that Ray restarts, and more than one machine. Logs are flushed on
SIGINT/SIGTERM through the app's lifespan, within ``serve.log_close_budget_s``.
"""

from __future__ import annotations

from typing import Any

from treum.core.errors import ConfigError


def check(settings: Any) -> None:
    """What the one-process engine cannot do, refused before it starts."""
    remote = [n for n, m in (settings.ensemble.members if settings.ensemble else {}).items() if m.placement == "remote"]
    if remote:
        raise ConfigError(f"serve.engine=uvicorn runs every member in its one process; serve.ensemble.members "
                          f"{remote} ask for placement 'remote' (Ray only): set them to 'local' or use serve.engine=ray")
    if settings.router_replicas != 1:
        raise ConfigError("serve.engine=uvicorn is one process; serve.router_replicas > 1 needs serve.engine=ray")


def run(settings: Any, registry_url: str | None, plugins: Any) -> None:
    """Serve until SIGINT or SIGTERM; returns after the logs are flushed."""
    import uvicorn

    from treum.registry.store import Registry
    from treum.serve.api import create_app
    from treum.serve.router import Service, tune_gc

    check(settings)
    tune_gc(settings.gc_gen0_threshold)  # before the models load, as a Ray replica does
    service = Service(settings, Registry(url=registry_url), plugins)
    app = create_app(lambda: service, plugins, close_on_shutdown=True)
    uvicorn.run(app, host=settings.host, port=settings.port, timeout_keep_alive=settings.keep_alive_s,
                backlog=16384, log_level="warning", access_log=False)
