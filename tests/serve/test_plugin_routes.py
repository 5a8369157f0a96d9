"""Routes that plugins register with ``treum_serve_routes``: mounted under the API prefix, clashes refused."""

from __future__ import annotations

import os
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


def bearer(svc: Service, *scopes: str) -> dict:
    token = svc.registry.create_api_key(f"k-{'-'.join(scopes)}-{os.urandom(3).hex()}", scopes=list(scopes))
    return {"Authorization": f"Bearer {token}"}


def test_plugin_routes_are_mounted_under_the_api_prefix(serve_home):
    plugins = _plugins(ServeRouteSpec("live_models", "/plugins/live", live_models),
                       ServeRouteSpec("echo", "/plugins/echo", echo, ("POST",)))
    svc = Service(settings(), Registry(home=serve_home), plugins, start_refresher=False)
    try:
        client = TestClient(create_app(lambda: svc, plugins), headers=bearer(svc, "read"))
        r = client.get(f"{API}/plugins/live")
        assert r.status_code == 200 and "garch" in r.json()["live"]
        assert client.post(f"{API}/plugins/echo", json={"a": 1}).json() == {"echo": {"a": 1}}
        assert client.get(f"{API}/plugins/echo").status_code == 405
        assert f"{API}/plugins/live" in client.get("/openapi.json").json()["paths"]
        # built-in routes still answer
        assert client.post(f"{API}/predict/volatility", json={"instrument": "SPX"}).status_code == 200
    finally:
        svc.close()


def test_a_plugin_route_needs_a_key_with_its_scope_as_the_built_in_routes_do(serve_home):
    plugins = _plugins(ServeRouteSpec("report", "/plugins/report", echo, ("POST",)),  # default scope: read
                       ServeRouteSpec("peek", "/plugins/peek", echo, ("POST",), scope="predict"),
                       ServeRouteSpec("retrain", "/plugins/retrain", echo, ("POST",), scope="train"),
                       ServeRouteSpec("ping", "/plugins/ping", echo, ("POST",), scope=None))
    svc = Service(settings(), Registry(home=serve_home), plugins, start_refresher=False)
    try:
        client = TestClient(create_app(lambda: svc, plugins))

        def post(route: str, *scopes: str):
            return client.post(f"{API}/plugins/{route}", json={"a": 1}, headers=bearer(svc, *scopes) if scopes else {})

        assert post("report").status_code == 401
        r = post("report", "predict")
        assert r.status_code == 403 and "this route needs 'read'" in r.json()["error"]
        assert post("report", "read").json() == {"echo": {"a": 1}}
        assert post("report", "admin").status_code == 200
        assert (post("retrain", "read").status_code, post("retrain", "train").status_code) == (403, 200)
        assert client.post(f"{API}/plugins/report", json={"a": 1},
                           headers={"Authorization": "Bearer trm_not-a-key"}).status_code == 401
        # open: only when the plugin asks for it; 'predict' is open while serve.require_key_for_predict is false
        assert post("ping").json() == {"echo": {"a": 1}}
        assert post("peek").status_code == 200
    finally:
        svc.close()


def test_a_predict_scoped_plugin_route_follows_require_key_for_predict(serve_home):
    plugins = _plugins(ServeRouteSpec("peek", "/plugins/peek", echo, ("POST",), scope="predict"))
    assert plugins.owner("serve_routes", "tasks") == "serve_discovery"  # the built-in plugin, beside this one
    svc = Service(settings(require_key_for_predict=True), Registry(home=serve_home), plugins, start_refresher=False)
    try:
        client = TestClient(create_app(lambda: svc, plugins))
        assert client.post(f"{API}/plugins/peek", json={}).status_code == 401
        assert client.post(f"{API}/plugins/peek", json={}, headers=bearer(svc, "read")).status_code == 403
        assert client.post(f"{API}/plugins/peek", json={}, headers=bearer(svc, "predict")).status_code == 200
        # the built-in GET /tasks is scoped 'predict': a predicting client discovers what it can ask
        assert client.get(f"{API}/tasks").status_code == 401
        assert client.get(f"{API}/tasks", headers=bearer(svc, "predict")).status_code == 200
    finally:
        svc.close()


def test_an_unknown_scope_is_refused_at_start_up():
    with pytest.raises(PluginError) as err:
        create_app(lambda: None, _plugins(ServeRouteSpec("report", "/plugins/report", echo, scope="raed")))
    message = str(err.value)
    assert "plugin 'route_plugin' registers serve route 'report' with scope 'raed'" in message
    assert "did you mean 'read'?" in message
    assert "give one of predict, read, experiments, train, deploy, admin, or None for an open route" in message


@pytest.mark.parametrize("path,methods,clashes_with", [
    ("/health", ("GET",), "GET /api/v1/ml/health"),
    ("/predict/{what}", ("POST",), "POST /api/v1/ml/predict/price"),
    ("/predict/direction", ("POST",), "POST /api/v1/ml/predict/{task}"),  # a task's own route
    ("/predict/batch", ("POST",), "POST /api/v1/ml/predict/batch"),
    ("/models/{model_id}", ("GET",), "GET /api/v1/ml/models/{model_id}"),
])
def test_a_plugin_route_that_clashes_with_a_built_in_one_is_refused_at_start_up(path, methods, clashes_with):
    plugins = _plugins(ServeRouteSpec("shadow", path, echo, methods))
    with pytest.raises(PluginError) as err:
        create_app(lambda: None, plugins)
    message = str(err.value)
    assert "plugin 'route_plugin' registers serve route 'shadow'" in message
    assert f"clashes with the built-in route {clashes_with}" in message


def test_a_static_path_no_task_answers_is_mounted_ahead_of_the_predict_template(serve_home):
    app = create_app(lambda: None, _plugins(ServeRouteSpec("risk", "/predict/some-risk", echo, ("POST",), scope=None)))
    paths = [getattr(r, "path", "") for r in app.routes]
    assert paths.index("/api/v1/ml/predict/some-risk") < paths.index("/api/v1/ml/predict/{task}")
    client = TestClient(app)
    assert client.post(f"{API}/predict/some-risk", json={"a": 1}).json() == {"echo": {"a": 1}}


def test_an_alias_that_a_plugin_route_hides_is_refused(serve_home):
    from treum.core.errors import ConfigError

    plugins = _plugins(ServeRouteSpec("risk", "/predict/some-risk", echo, ("POST",)))
    with pytest.raises(ConfigError, match="serve.aliases.some-risk: /predict/some-risk is a plugin's route"):
        Service(settings(aliases={"some-risk": {"task": "volatility"}}), Registry(home=serve_home), plugins,
                start_refresher=False)


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
