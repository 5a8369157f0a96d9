"""``treum serve``: the deployed models over HTTP with Ray Serve (or ``--export`` a Serve config)."""

from __future__ import annotations

import argparse

from treum.commands.output import console


def main(args: argparse.Namespace) -> int:
    import signal
    import threading

    from treum.commands.compose import compose_plain, to_dict
    from treum.core.plugins import create_plugin_registry
    from treum.registry.store import treum_home
    from treum.serve.settings import ServeSettings

    plugins = create_plugin_registry()
    cfg = compose_plain(args.overrides, plugins)
    settings = ServeSettings.from_config(to_dict(cfg.serve), plugins)
    url = cfg.registry.get("url")
    if settings.engine == "uvicorn":
        from treum.serve import standalone

        if args.export:
            console.print("--export writes a Ray Serve config; serve.engine=uvicorn has none (run it as it is)")
            return 2
        standalone.check(settings)
        console.print(f"serving on http://{settings.host}:{settings.port}/api/v1/ml/ (one process, no Ray); "
                      f"OpenAPI: http://{settings.host}:{settings.port}/docs; Ctrl-C stops")
        standalone.run(settings, url, plugins)
        console.print("stopped: logs flushed")
        return 0
    from treum.serve import ray_app

    if args.export:
        path = ray_app.export_config(settings, url, treum_home(), args.export)
        console.print(f"wrote {path}; deploy it on a Ray cluster with `serve deploy {path}`")
        if settings.cache_url and ray_app.cache_url_without_password(settings.cache_url) != settings.cache_url:
            console.print(f"the cache password is not in {path}: set {ray_app.CACHE_PASSWORD_ENV} on every node")
        if ray_app.url_password(url):  # say where the password must go; never print it
            console.print(f"the registry password is not in {path}: set {ray_app.PASSWORD_ENV} to it on every node "
                          "of the Ray cluster (in the environment `ray start` runs in) before `serve deploy`; the "
                          "replicas put it back into registry.url")
        return 0
    done = threading.Event()
    # handlers first: a Ctrl-C while Serve is still starting must stop it cleanly too, not raise mid-deploy
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    console.print("starting Ray Serve ...")
    ray_app.start(settings, url, treum_home())
    console.print(f"serving on http://{settings.host}:{settings.port}/api/v1/ml/ (Ray Serve proxy)")
    if settings.direct_ingress:
        console.print(f"direct ingress on http://{settings.host}:{settings.direct_port}/api/v1/ml/ (the router replica's own port)")
    console.print(f"OpenAPI: http://{settings.host}:{settings.port}/docs; Ctrl-C stops")
    done.wait()
    console.print("stopping: flushing logs ...")
    ray_app.stop()
    return 0


def add_parser(sub) -> None:
    sv = sub.add_parser("serve", help="serve the deployed models over HTTP with Ray Serve, or in one process with serve.engine=uvicorn")
    sv.add_argument("--export", metavar="FILE", help="write a Serve config file for `serve deploy` instead of serving")
    sv.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. serve.port=9000 serve.ensemble.members.ts_transformer.placement=remote")
