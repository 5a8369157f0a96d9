"""Routes that plugins add to ``treum serve`` (the ``treum_serve_routes`` hook).

Each ``ServeRouteSpec`` is mounted under the API prefix (``/api/v1/ml`` + its
``path``) with its ``methods``, behind the API-key check of its ``scope`` as the
built-in routes are: ``read`` unless the spec says otherwise, ``predict`` as the
predict routes (``serve.require_key_for_predict``), ``None`` open. A scope that
does not exist is refused at start-up. A route that any request to a built-in
route (or to an earlier plugin route) would also match, for a method both
accept, would answer for one of them only; that is refused at start-up too,
naming the plugin route and the route it clashes with. One exception: a static
path inside a built-in template on a value that template does not answer
(``/predict/portfolio-risk`` under ``/predict/{task}``, where no task has that
name) is mounted ahead of the template and takes only its own requests.

An endpoint is a FastAPI endpoint like any other; to reach the service it takes
``request: fastapi.Request`` and calls ``request.app.state.get_service()``
(None while the service starts).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import compile_path

from treum.core.errors import PluginError, did_you_mean
from treum.registry.keys import SCOPES


def _clash(route: APIRoute, path: str, methods: set[str]) -> bool:
    if not (route.methods or set()) & methods:
        return False
    regex, _, _ = compile_path(path)
    # either path template matches the other: a request could reach both routes
    return bool(route.path_regex.match(path) or regex.match(route.path))


def _narrower(route: APIRoute, path: str, taken: Callable[[str], bool]) -> bool:
    """A static plugin path inside a built-in template, on a value the built-in route does not answer.

    ``/predict/portfolio-risk`` under ``/predict/{task}``: no task is called ``portfolio-risk``, so the
    plugin route, mounted first, takes those requests and the built-in route loses none of its own.
    """
    if "{" in path or "{" not in route.path:
        return False
    match = route.path_regex.match(path)
    return bool(match) and not any(taken(str(v)) for v in match.groupdict().values())


def mount_plugin_routes(app: FastAPI, plugins: Any, prefix: str, get_service: Callable[[], Any],
                        guard: Callable[[str], Any], taken: Callable[[str], bool] = lambda _: True) -> list[str]:
    """Mount every plugin route under ``prefix``; returns their full paths. PluginError on a clash.

    ``guard(scope)`` is the FastAPI dependency that checks a request's API key for ``scope``
    (the app's own, as its built-in routes use); a route whose scope is None gets none.
    ``taken(value)`` says whether a built-in route's path parameter answers ``value`` (a task's
    name under ``/predict/{task}``): a static plugin path on a value nobody answers is mounted
    before the built-in template instead of clashing with it.
    """
    app.state.get_service = get_service
    mounted: list[str] = []
    from_plugins: set[int] = set()
    for name, spec in plugins.specs("serve_routes").items():
        owner = plugins.owner("serve_routes", name)
        if not spec.path.startswith("/"):
            raise PluginError(f"plugin '{owner}' registers serve route '{name}' with path '{spec.path}'; a path "
                              "starts with '/' (it is mounted under " + prefix + ")")
        scope = getattr(spec, "scope", "read")
        if scope is not None and scope not in SCOPES:
            raise PluginError(
                f"plugin '{owner}' registers serve route '{name}' with scope {scope!r}, which is no API-key "
                f"scope{did_you_mean(str(scope), SCOPES)}; give one of {', '.join(SCOPES)}, or None for an open "
                "route"
            )
        path = prefix + spec.path
        methods = {m.upper() for m in spec.methods}
        before: int | None = None
        for i, route in enumerate(app.routes):
            if isinstance(route, APIRoute) and _clash(route, path, methods):
                if id(route) not in from_plugins and _narrower(route, path, taken):
                    before = i if before is None else min(before, i)
                    continue
                what = "plugin route" if id(route) in from_plugins else "built-in route"
                raise PluginError(
                    f"plugin '{owner}' registers serve route '{name}' ({', '.join(sorted(methods))} {path}), which "
                    f"clashes with the {what} {', '.join(sorted(route.methods))} {route.path}; give it another "
                    "path, or disable the plugin in plugins.toml"
                )
        dependencies = [Depends(guard(scope))] if scope is not None else []
        app.add_api_route(path, spec.endpoint, methods=sorted(methods), name=name, tags=["plugins"],
                          dependencies=dependencies)
        added = app.router.routes[-1]
        if before is not None:  # ahead of the template it narrows, which would otherwise take its requests
            app.router.routes.insert(before, app.router.routes.pop())
        from_plugins.add(id(added))
        mounted.append(path)
    return mounted
