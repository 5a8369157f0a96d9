"""The service's writes and queries on both registry databases (SQLite here, PostgreSQL in CI)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from treum.registry.schema import MLPrediction, ModelServingLog
from treum.registry.store import Registry
from treum.serve.api import create_app
from treum.serve.router import Service

from .conftest import fit_and_register, settings

API = "/api/v1/ml"


def test_logs_outcomes_and_reports_on_either_database(registry_url, treum_home, serve_plugins, tmp_path):
    reg = Registry(url=registry_url, home=treum_home)
    for name in ("gbm_direction", "logit_direction", "markov_regime"):
        m = fit_and_register(reg, serve_plugins, name, tmp_path)
        reg.deploy(name, m.model_version, reason="database test")
    token = reg.create_api_key("db", scopes=["admin"])
    svc = Service(settings(), Registry(url=registry_url, home=treum_home), serve_plugins, start_refresher=False)
    client = TestClient(create_app(lambda: svc))
    ids = []
    for i in range(5):
        body = client.post(f"{API}/predict/price", json={"instrument": "SPX", "user_id": f"u{i}"}).json()
        # the transformer is not deployed here: dropped, and the other two carry the signal
        assert body["dropped"] == ["ts_transformer: not deployed (no deployed version of 'ts_transformer')"]
        ids.append(body["prediction_id"])
    svc.log.close()
    svc.log = type(svc.log)(svc.registry.sessions)
    out = client.post(f"{API}/predictions/{ids[0]}/outcome", json={"actual_value": 0.8},
                      headers={"Authorization": f"Bearer {token}"})
    assert out.status_code == 200 and out.json()["updated"] == 3
    perf = client.get(f"{API}/monitoring/performance", headers={"Authorization": f"Bearer {token}"}).json()["models"]
    assert perf["gbm_direction"]["predictions"] == 5 and perf["gbm_direction"]["outcomes"] == 1
    svc.close()
    with reg.sessions() as s:
        assert s.execute(select(func.count()).select_from(MLPrediction)).scalar() == 15
        assert s.execute(select(func.count()).select_from(ModelServingLog)).scalar() == 7
    reg.close()
