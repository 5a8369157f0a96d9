"""Routes that plugins register with ``treum_serve_routes``: mounted under the API prefix, clashes refused."""

from __future__ import annotations

import types

import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from treum.core.errors import PluginError
from treum.core.hookspecs import hookimpl
from treum.core.plugins import PluginSettings, create_plugin_registry
from treum.core.specs import ServeRouteSpec
from treum.registry.store import Registry
from treum.serve.api import create_app
from treum.serve.router import Service

from .conftest import settings

API = "/api/v1/ml"


def _plugins(*routes: ServeRouteSpec):
    plugin = types.SimpleNamespace(treum_serve_routes=hookimpl(lambda: list(routes)))
    return create_plugin_registry(PluginSettings(), extra_plugins=[("route_plugin", plugin)])


def live_models(request: Request) -> dict:
    """A plugin endpoint that reads the service."""
    service = request.app.state.get_service()
    return {"live": sorted(service.live)}


def echo(body: dict) -> dict:
    return {"echo": body}


def test_plugin_routes_are_mounted_under_the_api_prefix(serve_home):
    plugins = _plugins(ServeRouteSpec("live_models", "/plugins/live", live_models),
                       ServeRouteSpec("echo", "/plugins/echo", echo, ("POST",)))
    svc = Service(settings(), Registry(home=serve_home), plugins, start_refresher=False)
    try:
        client = TestClient(create_app(lambda: svc, plugins))
        r = client.get(f"{API}/plugins/live")
        assert r.status_code == 200 and "garch" in r.json()["live"]
        assert client.post(f"{API}/plugins/echo", json={"a": 1}).json() == {"echo": {"a": 1}}
        assert client.get(f"{API}/plugins/echo").status_code == 405
        assert f"{API}/plugins/live" in client.get("/openapi.json").json()["paths"]
        # built-in routes still answer
        assert client.post(f"{API}/predict/volatility", json={"instrument": "SPX"}).status_code == 200
    finally:
        svc.close()


@pytest.mark.parametrize("path,methods,clashes_with", [
    ("/health", ("GET",), "GET /api/v1/ml/health"),
    ("/predict/{what}", ("POST",), "POST /api/v1/ml/predict/price"),
    ("/predict/sentiment", ("POST",), "POST /api/v1/ml/predict/{task}"),
    ("/models/{model_id}", ("GET",), "GET /api/v1/ml/models/{model_id}"),
])
def test_a_plugin_route_that_clashes_with_a_built_in_one_is_refused_at_start_up(path, methods, clashes_with):
    plugins = _plugins(ServeRouteSpec("shadow", path, echo, methods))
    with pytest.raises(PluginError) as err:
        create_app(lambda: None, plugins)
    message = str(err.value)
    assert "plugin 'route_plugin' registers serve route 'shadow'" in message
    assert f"clashes with the built-in route {clashes_with}" in message


def test_a_route_on_another_method_or_a_path_without_a_slash(serve_home):
    # GET on a path whose built-in route takes POST only is no clash
    create_app(lambda: None, _plugins(ServeRouteSpec("peek", "/predict/sentiment", echo, ("GET",))))
    with pytest.raises(PluginError, match="path 'ping'; a path starts with '/'"):
        create_app(lambda: None, _plugins(ServeRouteSpec("ping", "ping", echo)))


def test_the_built_in_tasks_route_says_what_each_task_answers_with(serve_home):
    from treum.serve import discovery_routes

    plugins = create_plugin_registry(PluginSettings())
    if "tasks" not in plugins.specs("serve_routes"):  # until its entry point is installed
        plugins = create_plugin_registry(PluginSettings(), extra_plugins=[("serve_discovery", discovery_routes)])
    svc = Service(settings(), Registry(home=serve_home), plugins, start_refresher=False)
    try:
        body = TestClient(create_app(lambda: svc, plugins)).get(f"{API}/tasks").json()
        vol, direction, regime = body["tasks"]["volatility"], body["tasks"]["direction"], body["tasks"]["regime"]
        assert (vol["model"], vol["prediction_columns"], vol["aliases"]) == ("garch", ["var_h1", "var_h21"],
                                                                             ["volatility"])
        assert direction["model"] is None and direction["status"] == 409 and direction["prediction_columns"] == ["p_up"]
        assert regime["model"] == "markov_regime" and regime["aliases"] == ["market-regime"]
        assert body["ensemble"] == {"route": "price", "task": "direction"}
    finally:
        svc.close()
