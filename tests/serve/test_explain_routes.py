"""The explanation routes: SHAP, LIME, counterfactuals, feature importance and a surrogate tree of deployed models,
each bounded, behind a 'read' key, and refusing what it cannot explain with a 4xx that says why."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

import treum.serve.explain_routes as routes
from treum.registry.store import Registry
from treum.serve.api import create_app
from treum.serve.router import Service

from .conftest import settings

API = "/api/v1/ml/explain"
DAY = "2016-06-30"


@pytest.fixture
def client(service):
    return TestClient(create_app(lambda: service), raise_server_exceptions=False)


@pytest.fixture
def read(service):
    return {"Authorization": f"Bearer {service.registry.create_api_key('reader', scopes=['read'])}"}


@pytest.fixture(scope="module")
def spx_features(serve_plugins):
    """The technical features of SPX on DAY, as the deployed gbm_direction reads them."""
    panel = serve_plugins.dataset("sp500").load({})
    frame = serve_plugins.feature_set("technical").compute(panel, {})
    row = frame.xs("SPX", level="entity").loc[DAY]
    return {str(k): float(v) for k, v in row.items()}


def deployed_version(service, name: str) -> str:
    return next(m.model_version for m in service.registry.list_models(name) if m.deployment_status == "deployed")


def test_shap_of_an_entitys_row_adds_up_and_names_the_deployed_version(client, service, read):
    r = client.post(f"{API}/shap", json={"model": "gbm_direction", "entity": "SPX", "end": DAY}, headers=read)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model"], body["task"], body["explainer"]) == ("gbm_direction", "direction", "shap")
    assert body["version"] == deployed_version(service, "gbm_direction")
    assert body["row"] == {"source": "data", "timestamp": f"{DAY}T00:00:00", "entity": "SPX"}
    result = body["result"]
    assert result["method"].startswith("tree") and result["values_in"] == "log-odds of p_up"
    assert result["additivity_error"] < 1e-6
    features = service.live["gbm_direction"].model.features_
    ranking = [r["mean_abs_shap"] for r in result["ranking"]]
    assert {r["feature"] for r in result["ranking"]} == set(features) and ranking == sorted(ranking, reverse=True)
    assert body["elapsed_ms"] > 0


def test_lime_of_a_given_row_answers_the_models_prediction_for_it(client, read, spx_features):
    r = client.post(f"{API}/lime", json={"model": "gbm_direction", "row": spx_features,
                                         "config": {"num_samples": 500, "num_features": 5}}, headers=read)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["row"]["source"] == "request" and body["row"]["entity"] == "request"
    (row,) = body["result"]["rows"]
    assert len(row["weights"]) == 5 and "500 samples" in body["result"]["method"]
    # the same values as SPX's row on DAY: the same prediction as when that row is named by its entity
    named = client.post(f"{API}/shap", json={"model": "gbm_direction", "entity": "SPX", "end": DAY}, headers=read)
    assert row["prediction"] == pytest.approx(named.json()["result"]["rows"][0]["prediction"], abs=1e-12)


def test_a_counterfactual_flips_the_label(client, read):
    r = client.post(f"{API}/counterfactual", json={"model": "gbm_direction", "entity": "SPX", "end": DAY},
                    headers=read)
    assert r.status_code == 200, r.text
    (row,) = r.json()["result"]["rows"]
    assert row["found"] and row["changes"]
    assert {row["original"]["label"], row["counterfactual"]["label"]} == {"up", "down"}
    assert (row["original"]["prediction"] > 0.5) != (row["counterfactual"]["prediction"] > 0.5)


def test_feature_importance_is_a_get_by_model_or_task(client, service, read):
    r = client.get(f"{API}/feature-importance", params={"model": "gbm_direction"}, headers=read)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["row"] is None and body["result"]["method"].startswith("native")
    shares = [i["share"] for i in body["result"]["importances"]]
    assert sum(shares) == pytest.approx(1.0) and shares == sorted(shares, reverse=True)
    permuted = client.get(f"{API}/feature-importance", params={"model": "logit_direction", "method": "permutation"},
                          headers=read).json()
    assert permuted["result"]["method"].startswith("permutation") and permuted["model"] == "logit_direction"
    # three direction models are deployed: the task alone does not say which (as /predict/direction)
    r = client.get(f"{API}/feature-importance", params={"task": "direction"}, headers=read)
    assert r.status_code == 409 and "serve.tasks.direction.model" in r.json()["error"]


def test_the_decision_tree_surrogate_reports_its_fidelity(client, read):
    r = client.post(f"{API}/decision-tree", json={"model": "gbm_direction", "config": {"max_depth": 2}}, headers=read)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    fidelity = result["fidelity"]
    assert fidelity["n_fit"] > 0 and fidelity["n_held_out"] > 0 and fidelity["mae"] >= 0
    assert 0.0 <= fidelity["label_agreement"] <= 1.0 and -1.0 < fidelity["r2"] <= 1.0
    assert result["tree"]["feature"].startswith("f_") and "max_depth=2" in result["method"]
    with_row = client.post(f"{API}/decision-tree", json={"model": "gbm_direction", "entity": "SPX"}, headers=read)
    assert with_row.status_code == 200 and with_row.json()["row"]["entity"] == "SPX"


@pytest.mark.parametrize("body", [{"task": "volatility", "entity": "SPX"},  # garch: no features, sequential
                                  {"model": "ts_transformer", "entity": "SPX"}])  # features, but sequential
def test_an_explainer_that_does_not_apply_is_a_422_naming_the_ones_that_do(client, read, body):
    app = client.app
    r = client.post(f"{API}/shap", json=body, headers=read)
    assert r.status_code == 422
    error = r.json()["error"]
    assert "does not apply" in error and "'sequential'" in error and "explainers that do: conformal" in error
    assert app.state.explainer.prepared == {}  # refused before any data were loaded


def test_a_row_must_carry_exactly_the_models_features(client, read, spx_features):
    partial = {k: v for k, v in spx_features.items() if k != "f_rsi_14"}
    r = client.post(f"{API}/shap", json={"model": "gbm_direction", "row": partial}, headers=read)
    assert r.status_code == 422 and "missing features ['f_rsi_14']" in r.json()["error"]
    r = client.post(f"{API}/shap", json={"model": "gbm_direction", "row": {**spx_features, "f_rsi_41": 1.0}},
                    headers=read)
    error = r.json()["error"]
    assert r.status_code == 422 and "unknown features ['f_rsi_41']" in error and "reads exactly: f_ret_1" in error
    nan = json.dumps({"model": "gbm_direction", "row": {**spx_features, "f_macd": float("nan")}})  # NaN: Python's JSON
    r = client.post(f"{API}/shap", content=nan, headers={**read, "content-type": "application/json"})
    assert r.status_code == 422 and "finite" in r.json()["error"]


@pytest.mark.parametrize("body, status, words", [
    ({"model": "gbm_direction"}, 422, "explains one row"),
    ({"model": "gbm_direction", "entity": "SPX", "row": {"f_ret_1": 1.0}}, 422, "not both"),
    ({"model": "gbm_direction", "end": DAY}, 422, "give 'entity' with it"),
    ({"model": "gbm_direction", "entity": "SPY"}, 422, "did you mean 'SPX'?"),
    ({"model": "gbm_direction", "entity": "SPX", "end": "1950-01-01"}, 422, "no row on or before 1950-01-01"),
    ({"entity": "SPX"}, 422, "name the model to explain"),
    ({"model": "gbm_direction", "task": "volatility", "entity": "SPX"}, 422, "answers task 'direction'"),
    ({"model": "gbm_dirction", "entity": "SPX"}, 404, "did you mean 'gbm_direction'?"),
    ({"task": "directon", "entity": "SPX"}, 404, "unknown task 'directon'"),
    ({"model": "../etc", "entity": "SPX"}, 422, "model"),
])
def test_bad_requests_get_a_4xx_that_says_what_to_fix(client, read, body, status, words):
    r = client.post(f"{API}/shap", json=body, headers=read)
    assert r.status_code == status and words in r.json()["error"], r.text


@pytest.mark.parametrize("route, config, words", [
    ("lime", {"num_samples": 100_000}, "config.num_samples = 100000 is outside [50, 5000]"),
    ("lime", {"background_size": 50_000}, "config.background_size = 50000 is outside [10, 5000]"),
    ("lime", {"max_rows": 1000}, "a request explains one row"),
    ("lime", {"num_sampels": 10}, "did you mean 'num_samples'?"),
    ("lime", {"num_samples": "many"}, "num_samples"),
    ("lime", {"seed": -1}, "config.seed = -1 is outside"),
    ("lime", {"seed": 2.5}, "seed"),
    ("shap", {"max_evals": 100.5}, "config.max_evals must be a whole number"),
    ("shap", {"max_evals": "all"}, "config.max_evals must be a finite number"),  # its default is None: any kind
    ("shap", {"max_evals": {"n": 1}}, "config.max_evals must be a finite number"),
    ("counterfactual", {"threshold": [0.5]}, "config.threshold must be a finite number"),
    ("counterfactual", {"immutable": [1, 2]}, "a list of at most 200 feature names"),
    ("counterfactual", {"grid": 1000}, "config.grid = 1000 is outside [2, 51]"),
])
def test_oversized_or_malformed_config_is_a_422(client, read, route, config, words):
    r = client.post(f"{API}/{route}", json={"model": "gbm_direction", "entity": "SPX", "config": config}, headers=read)
    assert r.status_code == 422 and words in r.json()["error"], r.text


def test_a_config_asking_for_too_many_predictions_is_a_422(client, read):
    config = {"algorithm": "permutation", "background_size": 5000, "max_evals": 5000}
    r = client.post(f"{API}/shap", json={"model": "gbm_direction", "entity": "SPX", "config": config}, headers=read)
    assert r.status_code == 422 and "background_size x max_evals" in r.json()["error"] and "1,000,000" in r.text


def test_every_explain_route_needs_a_key_with_the_read_scope(client, service):
    predict = {"Authorization": f"Bearer {service.registry.create_api_key('predictor', scopes=['predict'])}"}
    body = {"model": "gbm_direction", "entity": "SPX"}
    calls = [("post", f"{API}/{p}", {"json": body}) for p in ("shap", "lime", "counterfactual", "decision-tree")]
    calls.append(("get", f"{API}/feature-importance", {"params": {"model": "gbm_direction"}}))
    for method, url, kwargs in calls:
        assert getattr(client, method)(url, **kwargs).status_code == 401, url
        r = getattr(client, method)(url, headers=predict, **kwargs)
        assert r.status_code == 403 and "needs 'read'" in r.json()["error"], url


def test_a_model_without_a_deployed_version_is_a_404_saying_how_to_deploy(client, service, read):
    service.registry.retire("logit_direction", deployed_version(service, "logit_direction"), "test", "explain routes")
    service.refresh()
    r = client.get(f"{API}/feature-importance", params={"model": "logit_direction"}, headers=read)
    assert r.status_code == 404 and "`treum registry deploy logit_direction`" in r.json()["error"]


def test_a_versions_data_are_loaded_once_and_their_failure_leaks_nothing(client, read, monkeypatch):
    calls = []
    real = routes.version_frame

    def counted(plugins, meta, expected=None):
        calls.append(meta["data"])
        return real(plugins, meta, expected)

    monkeypatch.setattr(routes, "version_frame", counted)
    for _ in range(3):
        assert client.get(f"{API}/feature-importance", params={"model": "gbm_direction"},
                          headers=read).status_code == 200
    assert calls == ["sp500"]

    def broken(plugins, meta, expected=None):
        raise FileNotFoundError("/srv/secret/data/sp500.parquet")

    monkeypatch.setattr(routes, "version_frame", broken)
    r = client.get(f"{API}/feature-importance", params={"model": "logit_direction"}, headers=read)
    assert r.status_code == 503 and "could not be loaded (FileNotFoundError" in r.json()["error"]
    assert "/srv" not in r.text and "parquet" not in r.text


def test_a_slow_first_load_is_a_504_and_fills_the_cache_for_the_retry(serve_home, serve_plugins, monkeypatch):
    svc = Service(settings(request_timeout_s=0.5), Registry(home=serve_home), serve_plugins, start_refresher=False)
    real = routes.version_frame

    def slow(plugins, meta, expected=None):
        time.sleep(1.0)
        return real(plugins, meta, expected)

    monkeypatch.setattr(routes, "version_frame", slow)
    try:
        client = TestClient(create_app(lambda: svc))
        read = {"Authorization": f"Bearer {svc.registry.create_api_key('reader', scopes=['read'])}"}
        r = client.get(f"{API}/feature-importance", params={"model": "gbm_direction"}, headers=read)
        assert r.status_code == 504 and "serve.request_timeout_s" in r.json()["error"]
        deadline = time.time() + 30
        while not client.app.state.explainer.prepared and time.time() < deadline:
            time.sleep(0.1)  # the load goes on after the 504
        r = client.get(f"{API}/feature-importance", params={"model": "gbm_direction"}, headers=read)
        assert r.status_code == 200, r.text
    finally:
        svc.close()


def test_the_openapi_document_lists_the_five_routes(client):
    doc = client.get("/openapi.json").json()
    for path, method in (("shap", "post"), ("lime", "post"), ("counterfactual", "post"), ("decision-tree", "post"),
                         ("feature-importance", "get")):
        operation = doc["paths"][f"{API}/{path}"][method]
        assert "explain" in operation["tags"] and "422" in operation["responses"], path
    assert "ExplainRequest" in doc["components"]["schemas"]
