"""The serving logic in-process: routes, the regime router, failures, cache, A/B, logs, errors."""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import pytest
from pathlib import Path
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from treum.registry.schema import MLPrediction, ModelServingLog
from treum.registry.store import Registry
from treum.serve.ab import assign_arm, two_proportion_test
from treum.serve.api import create_app
from treum.serve.router import Service

from .conftest import fit_and_register, settings

API = "/api/v1/ml"


@pytest.fixture
def client(service):
    return TestClient(create_app(lambda: service))


@pytest.fixture
def key(service):
    return {"Authorization": f"Bearer {service.registry.create_api_key('tests', scopes=['admin'])}"}


def _bars(plugins, n=300, end="2016-06-30"):
    panel = plugins.dataset("sp500").load({"end": end}).iloc[-n:]
    return [{"timestamp": ts.isoformat(), **{c: float(panel.iloc[i][c]) for c in ("open", "high", "low", "close", "volume")}}
            for i, (ts, _) in enumerate(panel.index)]


def test_combined_signal_answers_with_members_regime_and_weights(client):
    r = client.post(f"{API}/predict/price", json={"instrument": "SPX"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["as_of"].startswith("2018-12-31")
    assert {m["name"] for m in body["members"]} == {"gbm_direction", "logit_direction", "ts_transformer"}
    assert all(m["status"] == "ok" and m["version"] == "1" for m in body["members"])
    assert body["regime"]["model"] == "markov_regime" and body["regime"]["market"] == "SP500"
    assert body["regime"]["task"] == "regime" and body["regime"]["label"] == (
        "bear" if body["regime"]["p_bear"] > 0.5 else "bull")
    expected_weights = {"bull": {"gbm_direction": 0.4, "logit_direction": 0.3, "ts_transformer": 0.3},
                        "bear": {"gbm_direction": 0.2, "logit_direction": 0.5, "ts_transformer": 0.3}}
    assert body["weights"] == pytest.approx(expected_weights[body["regime"]["label"]])
    # the members' task's columns, combined by the weighted mean; its label and extra fields
    combined = sum(body["weights"][m["name"]] * m["p_up"] for m in body["members"])
    assert body["task"] == "direction" and body["p_up"] == pytest.approx(combined)
    assert body["label"] == ("up" if body["p_up"] > 0.5 else "down") and body["horizon"] == "1 bar"
    assert body["dropped"] == [] and body["timing_ms"]["total"] > 0


def test_repeated_requests_come_from_the_cache(client, service):
    first = client.post(f"{API}/predict/price", json={"instrument": "SPX"}).json()
    second = client.post(f"{API}/predict/price", json={"instrument": "SPX"}).json()
    assert not any(m["cached"] for m in first["members"]) and all(m["cached"] for m in second["members"])
    assert second["p_up"] == first["p_up"]
    assert service.cache.hits >= 4


def test_bars_in_the_request_are_used_instead_of_stored_ones(client, serve_plugins):
    r = client.post(f"{API}/predict/price", json={"instrument": "SPX", "bars": _bars(serve_plugins)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["as_of"].startswith("2016-06-30")
    # the market regime is read as of the same day
    assert body["regime"]["as_of"].startswith("2016-06-30")


def test_bars_whose_features_are_undefined_are_a_422_that_names_the_feature(client, serve_plugins):
    """A constant volume leaves its z-score undefined: every member fails on the input, so the ensemble
    answers 422 (the request's fault), naming the feature, not a 503 that blames the service."""
    bars = [{**b, "volume": 1e9} for b in _bars(serve_plugins)]
    r = client.post(f"{API}/predict/price", json={"instrument": "SPX", "bars": bars})
    assert r.status_code == 422 and "f_volume_z_21" in r.json()["error"] and "constant volume" in r.json()["error"]


def test_a_failing_member_is_dropped_and_the_weights_renormalised(client, service):
    class Broken:
        spec = service.live["gbm_direction"].model.spec

        def predict(self, data):
            raise RuntimeError("weights corrupted in memory")

    service.live["gbm_direction"].model = Broken()
    body = client.post(f"{API}/predict/price", json={"instrument": "SPX"}).json()
    gbm = next(m for m in body["members"] if m["name"] == "gbm_direction")
    assert gbm["status"] == "failed" and gbm["error"] == "RuntimeError (details in the server log)"
    assert set(body["weights"]) == {"logit_direction", "ts_transformer"}
    assert sum(body["weights"].values()) == pytest.approx(1.0)
    assert any(d.startswith("gbm_direction: failed") for d in body["dropped"])


def test_a_slow_member_times_out_and_too_few_members_is_a_503(serve_home, serve_plugins):
    svc = Service(settings(ensemble={"member_timeout_ms": 50, "min_members": 3}), Registry(home=serve_home),
                  serve_plugins, start_refresher=False)
    try:
        class Slow:
            spec = svc.live["logit_direction"].model.spec

            def predict(self, data):
                time.sleep(0.5)
                return None

        svc.live["logit_direction"].model = Slow()
        r = TestClient(create_app(lambda: svc)).post(f"{API}/predict/price", json={"instrument": "SPX"})
        assert r.status_code == 503
        assert "only 2 ensemble member(s) answered, 3 needed" in r.json()["error"]
        assert "logit_direction: timeout (no answer within 50 ms)" in r.json()["error"]
    finally:
        svc.close()


def test_the_specifications_volatility_and_market_regime_routes(client):
    vol = client.post(f"{API}/predict/volatility", json={"instrument": "SPX"}).json()
    assert vol["model"] == "garch" and vol["task"] == "volatility" and vol["var_h21"] > vol["var_h1"] > 0
    assert vol["vol_h1_pct"] == pytest.approx(math.sqrt(vol["var_h1"]))
    assert vol["vol_annualised_pct"] == pytest.approx(math.sqrt(vol["var_h1"]) * math.sqrt(252))
    # the regime of the market (the regime model's own instrument) as of the instrument's last bar
    reg = client.post(f"{API}/predict/market-regime", json={"instrument": "SPX"}).json()
    assert reg["task"] == "regime" and reg["instrument"] == "SPX" and reg["market"] == "SP500"
    assert reg["label"] in ("bull", "bear") and reg["p_bear"] + reg["p_bull"] == pytest.approx(1)
    missing = client.post(f"{API}/predict/volatility", json={"instrument": "SP500"})
    assert missing.status_code == 422 and "fitted per instrument on SPX" in missing.json()["error"]


@pytest.mark.parametrize("payload,status,message", [
    ({"instrument": "SPY"}, 404, "unknown instrument 'SPY'; did you mean 'SPX'?"),
    ({"instrument": ""}, 422, "instrument: String should have at least 1 character"),
    ({"instrument": "SPX", "horizon": 5}, 422, "horizon: Extra inputs are not permitted"),
    ({"instrument": "SPX", "bars": [{"timestamp": "2020-01-01", "close": "NaN"}]}, 422, "must be a finite number"),
    ('{"instrument": "SPX", "bars": [{"timestamp": "2020-01-01", "close": 1e999}]}', 422, "must be a finite number"),
    ('{"instrument": "SPX", "bars": [{"timestamp": "2020-01-01", "close": NaN}]}', 422, "must be a finite number"),
    ({"instrument": "SPX", "bars": [{"timestamp": "2020-01-01", "close": 10.0}] * 5}, 422, "at least 260 are needed"),
    ({"instrument": "SPX", "bars": [{"timestamp": "2020-01-01", "close": 10.0}] * 2001}, 413, "at most 2000"),
])
def test_bad_requests_get_a_4xx_that_says_what_to_fix(client, payload, status, message):
    if isinstance(payload, str):  # raw JSON text, as a client that writes NaN or 1e999 would send it
        r = client.post(f"{API}/predict/price", content=payload.encode(), headers={"content-type": "application/json"})
    else:
        r = client.post(f"{API}/predict/price", json=payload)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_bars_that_fail_validation_name_the_bar(client, serve_plugins):
    bars = _bars(serve_plugins)
    bars[10]["close"] = -1.0
    r = client.post(f"{API}/predict/price", json={"instrument": "SPX", "bars": bars})
    assert r.status_code == 422 and "bars[10], column 'close': price -1.0 is not positive" in r.json()["error"]
    bars = _bars(serve_plugins)
    bars[20]["timestamp"] = bars[5]["timestamp"]
    r = client.post(f"{API}/predict/price", json={"instrument": "SPX", "bars": bars})
    assert r.status_code == 422 and "bars[20]" in r.json()["error"]


def test_malformed_json_is_a_400(client):
    r = client.post(f"{API}/predict/price", content=b'{"instrument": ', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]


def test_write_routes_need_a_key(client, service, key):
    live = service.live["logit_direction"]
    r = client.put(f"{API}/models/{live.id}/deploy", json={})
    assert r.status_code == 401 and "Authorization: Bearer" in r.json()["error"]
    r = client.put(f"{API}/models/{live.id}/deploy", json={}, headers={"Authorization": "Bearer trm_wrong"})
    assert r.status_code == 401
    r = client.put(f"{API}/models/{live.id}/deploy", json={}, headers=key)
    assert r.status_code == 409 and "already deployed" in r.json()["error"]


def test_predict_routes_can_require_a_key(serve_home, serve_plugins):
    svc = Service(settings(require_key_for_predict=True), Registry(home=serve_home), serve_plugins, start_refresher=False)
    try:
        c = TestClient(create_app(lambda: svc))
        assert c.post(f"{API}/predict/price", json={"instrument": "SPX"}).status_code == 401
        token = svc.registry.create_api_key("reader", scopes=["predict"])
        ok = c.post(f"{API}/predict/price", json={"instrument": "SPX"}, headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
    finally:
        svc.close()


def test_models_routes(client, service, key, serve_plugins, serve_home, tmp_path):
    models = client.get(f"{API}/models", headers=key).json()
    assert {m["name"] for m in models} == {"gbm_direction", "logit_direction", "ts_transformer", "garch", "markov_regime"}
    live = service.live["garch"]
    detail = client.get(f"{API}/models/{live.id}", headers=key).json()
    assert detail["status"] == "deployed" and detail["config"]["vol"] == "gjr"
    assert client.get(f"{API}/models/00000000-0000-0000-0000-000000000000", headers=key).status_code == 404
    assert client.get(f"{API}/models/not-a-uuid", headers=key).status_code == 422
    perf = client.get(f"{API}/models/{live.id}/performance", headers=key).json()
    assert perf["metrics"][0]["evaluation_period"] == "walk_forward"
    # register a saved model through the API, deploy it, retire it
    m = fit_and_register(Registry(home=tmp_path / "other"), serve_plugins, "logit_direction", tmp_path, c=0.5)
    import shutil

    from treum.registry.store import treum_home

    uploads = treum_home() / "uploads"  # the default serve.upload_root: artifacts are registered only from below it
    saved = Path(shutil.copytree(next((tmp_path / "other" / "artifacts").iterdir()), uploads / "logit-c05"))
    r = client.post(f"{API}/models", json={"name": "logit_direction", "artifact_path": "logit-c05"}, headers=key)
    assert r.status_code == 201 and r.json()["version"] == "2" and r.json()["status"] == "registered"
    new_id = r.json()["id"]
    r = client.put(f"{API}/models/{new_id}/deploy", json={"reason": "api"}, headers=key)
    assert r.status_code == 409 and "--force" in r.json()["error"]
    r = client.put(f"{API}/models/{new_id}/deploy", json={"reason": "api", "force": True}, headers=key)
    assert r.status_code == 200 and service.live["logit_direction"].version == "2"
    assert client.put(f"{API}/models/{new_id}/retire", json={"reason": "done"}, headers=key).status_code == 200
    assert "logit_direction" not in service.live
    bad = client.post(f"{API}/models", json={"name": "garch", "artifact_path": str(saved)}, headers=key)
    assert bad.status_code == 422 and "saved by model 'logit_direction'" in bad.json()["error"]
    assert m.model_version == "1"


def test_every_prediction_and_request_is_logged_and_none_is_lost_on_shutdown(serve_home, serve_plugins):
    svc = Service(settings(log_flush_seconds=5.0, log_batch_size=7), Registry(home=serve_home), serve_plugins,
                  start_refresher=False)
    c = TestClient(create_app(lambda: svc))
    n = 40
    for i in range(n):
        assert c.post(f"{API}/predict/price", json={"instrument": "SPX", "user_id": f"u{i}"}).status_code == 200
    svc.close()  # the clean shutdown: flushes the queue
    reg = Registry(home=serve_home)
    with reg.sessions() as s:
        predictions = s.execute(select(func.count()).select_from(MLPrediction)).scalar()
        requests = s.execute(select(func.count()).select_from(ModelServingLog)
                             .where(ModelServingLog.api_endpoint == f"{API}/predict/price")).scalar()
        served = {m.model_name: m.served_predictions for m in reg.list_models()}
    assert predictions == n * 4  # three members and the combined signal per request
    assert requests == n
    assert served["gbm_direction"] == n and served["garch"] == 0


def test_ab_split_is_sticky_and_reports_a_test(client, service, key, serve_plugins, serve_home, tmp_path):
    reg = service.registry
    treatment = fit_and_register(reg, serve_plugins, "logit_direction", tmp_path, c=5.0)
    control = service.live["logit_direction"]
    r = client.post(f"{API}/experiments", headers=key, json={
        "name": "logit c", "control_model_id": control.id, "treatment_model_id": str(treatment.id),
        "treatment_percent": 50})
    assert r.status_code == 201, r.text
    exp_id = r.json()["id"]
    again = client.post(f"{API}/experiments", headers=key, json={
        "name": "dup", "control_model_id": control.id, "treatment_model_id": str(treatment.id)})
    assert again.status_code == 409
    arms, ids = {}, {}
    for i in range(60):
        body = client.post(f"{API}/predict/price", json={"instrument": "SPX", "user_id": f"user-{i}"}).json()
        member = next(m for m in body["members"] if m["name"] == "logit_direction")
        arms[f"user-{i}"] = (member["arm"], member["version"])
        ids[f"user-{i}"] = body["prediction_id"]
    assert {a for a, _ in arms.values()} == {"control", "treatment"}
    assert all(v == ("2" if a == "treatment" else "1") for a, v in arms.values())
    repeat = client.post(f"{API}/predict/price", json={"instrument": "SPX", "user_id": "user-7"}).json()
    assert next(m["arm"] for m in repeat["members"] if m["name"] == "logit_direction") == arms["user-7"][0]
    service.log.close()  # flush so outcomes can be attached
    service.log = type(service.log)(reg.sessions)
    for i, pid in enumerate(ids.values()):
        out = client.post(f"{API}/predictions/{pid}/outcome", json={"actual_value": 1.0 if i % 3 else -1.0}, headers=key)
        assert out.status_code == 200 and out.json()["updated"] == 4
    res = client.get(f"{API}/experiments/{exp_id}/results", headers=key).json()
    assert res["arms"]["control"]["outcomes"] + res["arms"]["treatment"]["outcomes"] == 60
    assert 0 <= res["test"]["p_value"] <= 1
    assert client.put(f"{API}/experiments/{exp_id}/stop", headers=key).status_code == 200
    assert service.experiments == {}


def test_assignment_is_stable_and_close_to_the_split():
    arms = [assign_arm("exp-1", f"u{i}", 30) for i in range(5000)]
    assert abs(arms.count("treatment") / 5000 - 0.30) < 0.03
    assert arms == [assign_arm("exp-1", f"u{i}", 30) for i in range(5000)]
    assert assign_arm("exp-1", None, 99) == "control"


def test_two_proportion_test_detects_a_real_difference():
    assert two_proportion_test(500, 1000, 600, 1000)["p_value"] < 1e-4
    assert two_proportion_test(500, 1000, 505, 1000)["p_value"] > 0.5


def test_a_deploy_elsewhere_is_picked_up_by_refresh(service, serve_plugins, tmp_path):
    new = fit_and_register(Registry(home=service.registry.home, url=service.registry.url), serve_plugins,
                           "gbm_direction", tmp_path, num_leaves=4)
    Registry(home=service.registry.home, url=service.registry.url).deploy("gbm_direction", new.model_version, force=True,
                                                                          reason="refresh test")
    assert service.refresh() is True
    assert service.live["gbm_direction"].version == "2"
    assert service.refresh() is False


def test_openapi_document_lists_every_route(client):
    doc = client.get("/openapi.json").json()
    paths = set(doc["paths"])
    for route in ("/models", "/models/{model_id}", "/models/{model_id}/deploy", "/models/{model_id}/retire",
                  "/models/{model_id}/performance", "/models/{model_id}/predictions", "/predict/price",
                  "/predict/{task}", "/predict/batch", "/monitoring/performance",
                  "/health", "/experiments", "/experiments/{experiment_id}/results"):
        assert f"{API}{route}" in paths, route
    price = doc["paths"][f"{API}/predict/price"]["post"]
    assert "EnsembleOut" in str(price["responses"]["200"]) and "503" in price["responses"]
    task = doc["paths"][f"{API}/predict/{{task}}"]["post"]
    assert "TaskOut" in str(task["responses"]["200"]) and "409" in task["responses"]


def test_monitoring_reports_live_models(client, key):
    client.post(f"{API}/predict/price", json={"instrument": "SPX"})
    body = client.get(f"{API}/monitoring/performance", headers=key).json()
    assert set(body["models"]) == {"gbm_direction", "logit_direction", "ts_transformer", "garch", "markov_regime"}
    assert body["models"]["garch"]["task"] == "volatility"
    assert client.get(f"{API}/health").json() == {"status": "ok", "live_models": 5, "tasks_answered": 2}
    assert client.get(f"{API}/health?detail=true").status_code == 401  # the detailed view needs a key
    health = client.get(f"{API}/health?detail=true", headers=key).json()
    assert health["live"]["gbm_direction"]["loaded"] and health["state"] == {"task": "regime", "model": None}
    assert health["tasks"]["regime"] == {"model": "markov_regime", "version": "1", "instruments": ["SP500"]}
    assert health["tasks"]["direction"]["status"] == 409


def test_concurrent_requests_share_one_service(service):
    async def many():
        return await asyncio.gather(*[service.predict_ensemble("SPX", None, f"u{i}") for i in range(20)])

    answers = asyncio.run(many())
    assert len({a["prediction_id"] for a in answers}) == 20
    assert np.allclose([a["p_up"] for a in answers], answers[0]["p_up"])


def test_export_writes_a_config_that_serve_deploy_accepts(tmp_path):
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from treum.serve.ray_app import export_config

    path = export_config(settings(), "postgresql+psycopg://reg@db:5432/treum", tmp_path / "home", tmp_path / "serve.yaml")
    config = yaml.safe_load(path.read_text())
    schema = ServeDeploySchema.model_validate(config)
    app = schema.applications[0]
    assert app.import_path == "treum.serve.ray_app:build_app"
    assert app.args["registry_url"] == "postgresql+psycopg://reg@db:5432/treum"
    assert app.args["settings"]["ensemble"]["weights"]["bear"]["logit_direction"] == 0.5
    # the builder turns those args back into the application
    from treum.serve.ray_app import build_app

    assert build_app(app.args) is not None
