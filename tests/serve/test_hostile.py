"""Hostile requests, one per finding of issue 7: each failed (a 500, a leak, an unbounded wait, a key that could
do everything) before the service was hardened."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from treum.registry.store import Registry, treum_home
from treum.serve.api import create_app
from treum.serve.guards import RateLimiter
from treum.serve.router import Service

from .conftest import fit_and_register, settings

API = "/api/v1/ml"


@pytest.fixture
def client(service):
    return TestClient(create_app(lambda: service), raise_server_exceptions=False)


def bearer(service, *scopes: str, name: str | None = None) -> dict:
    token = service.registry.create_api_key(name or f"k-{'-'.join(scopes)}-{os.urandom(3).hex()}", scopes=list(scopes))
    return {"Authorization": f"Bearer {token}"}


# keys and roles ----------------------------------------------------------------------------
def test_a_predict_key_cannot_retire_or_deploy(client, service):
    live = service.live["markov_regime"]
    predict = bearer(service, "predict")
    r = client.put(f"{API}/models/{live.id}/retire", json={"reason": "x"}, headers=predict)
    assert r.status_code == 403 and "needs 'deploy'" in r.json()["error"]
    assert service.registry.get_by_id(live.id).deployment_status == "deployed"  # nothing happened
    r = client.put(f"{API}/models/{live.id}/deploy", json={"force": True, "reason": "x"}, headers=predict)
    assert r.status_code == 403
    assert client.get(f"{API}/models", headers=predict).status_code == 403  # reading needs 'read'
    assert client.get(f"{API}/models", headers=bearer(service, "read")).status_code == 200
    assert client.get(f"{API}/models").status_code == 401


def test_the_bearer_scheme_is_case_insensitive_and_admin_can_do_everything(client, service):
    token = service.registry.create_api_key("ops", scopes=["admin"])
    for scheme in ("bearer", "BEARER", "Bearer"):
        assert client.get(f"{API}/models", headers={"Authorization": f"{scheme} {token}"}).status_code == 200
    assert client.get(f"{API}/models", headers={"Authorization": f"Basic {token}"}).status_code == 401


# bounded work ------------------------------------------------------------------------------
def test_a_body_above_the_limit_is_refused_before_it_is_read(serve_home, serve_plugins):
    svc = Service(settings(max_body_bytes=4096), Registry(home=serve_home), serve_plugins, start_refresher=False)
    try:
        c = TestClient(create_app(lambda: svc))
        big = json.dumps({"instrument": "SPX", "user_id": "u", "bars": [{"timestamp": "2020-01-01", "close": 1.0}] * 400})
        r = c.post(f"{API}/predict/price", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "serve.max_body_bytes" in r.json()["error"] and r.json()["request_id"]

        def chunks():  # no Content-Length: counted as it streams in
            for _ in range(20):
                yield b" " * 1024

        r = c.post(f"{API}/predict/price", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
    finally:
        svc.close()


def test_a_batch_may_not_carry_unbounded_bars(client, serve_plugins):
    panel = serve_plugins.dataset("sp500").load({"end": "2016-06-30"}).iloc[-2000:]
    bars = [{"timestamp": ts.isoformat(), "close": float(c)} for (ts, _), c in panel["close"].items()]
    body = {"requests": [{"task": "price", "instrument": "SPX", "bars": bars} for _ in range(11)]}
    r = client.post(f"{API}/predict/batch", json=body)
    assert r.status_code == 413 and "serve.max_batch_bars" in r.json()["error"]


def test_a_slow_answer_times_out_with_504(serve_home, serve_plugins, monkeypatch):
    svc = Service(settings(request_timeout_s=0.2), Registry(home=serve_home), serve_plugins, start_refresher=False)
    try:
        async def slow(*args, **kwargs):
            await asyncio.sleep(2)

        monkeypatch.setattr(svc, "predict", slow)
        r = TestClient(create_app(lambda: svc)).post(f"{API}/predict/volatility", json={"instrument": "SPX"})
        assert r.status_code == 504 and "serve.request_timeout_s" in r.json()["error"]
    finally:
        svc.close()


def test_clients_are_rate_limited_with_retry_after(client, service):
    service.limiter = RateLimiter(per_minute=60, burst=3)
    codes = [client.post(f"{API}/predict/volatility", json={"instrument": "SPX"}).status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    r = client.post(f"{API}/predict/volatility", json={"instrument": "SPX"})
    assert int(r.headers["retry-after"]) >= 1 and "rate_limit" in r.json()["error"]
    # another client (an API key) has its own bucket
    assert client.post(f"{API}/predict/volatility", json={"instrument": "SPX"},
                       headers=bearer(service, "predict")).status_code == 200


def test_the_key_check_writes_nothing_on_the_request_path(client, service):
    headers = bearer(service, "read", name="quiet")
    calls = []
    original = service.registry.transaction

    def watched(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    service.registry.transaction = watched
    try:
        for _ in range(5):
            assert client.get(f"{API}/models", headers=headers).status_code == 200
    finally:
        service.registry.transaction = original
    assert calls == []  # no write transaction per keyed request (last use is written later, in batches)


# no 500, no leak ---------------------------------------------------------------------------
@pytest.mark.parametrize("stamp", ["1600-01-01", "2300-06-30"])
def test_a_timestamp_outside_what_pandas_holds_is_a_422(client, stamp):
    bars = [{"timestamp": stamp, "close": 1.0}] * 300
    r = client.post(f"{API}/predict/price", json={"instrument": "SPX", "bars": bars})
    assert r.status_code == 422 and "1678..2261" in r.json()["error"]
    batch = client.post(f"{API}/predict/batch", json={"requests": [{"task": "price", "instrument": "SPX", "bars": bars}]})
    assert batch.status_code == 422


def test_anything_unexpected_is_a_500_with_only_a_request_id(client, service, monkeypatch):
    async def broken(*args, **kwargs):
        raise RuntimeError("secret at /srv/treum/registry.db")

    monkeypatch.setattr(service, "predict", broken)
    r = client.post(f"{API}/predict/volatility", json={"instrument": "SPX"})
    assert r.status_code == 500 and "secret" not in r.text and "/srv" not in r.text
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_every_error_carries_a_request_id(client):
    r = client.post(f"{API}/predict/forcast", json={"instrument": "SPX"})
    assert r.status_code == 404 and len(r.json()["request_id"]) == 32 and r.headers["x-request-id"] == r.json()["request_id"]


def test_a_well_formed_client_request_id_is_kept_and_logged_and_any_other_replaced(client, service):
    """A client finds its request in model_serving_logs by its own X-Request-ID; a malformed one (too short,
    too long, odd characters) is replaced by a fresh id, never logged as sent."""
    from sqlalchemy import select

    from treum.registry.schema import ModelServingLog

    r = client.post(f"{API}/predict/volatility", json={"instrument": "SPX"}, headers={"X-Request-ID": "client-run.7:0042"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "client-run.7:0042"
    for bad in ("short", "x" * 65, "drop table;--x"):
        r = client.post(f"{API}/predict/forcast", json={"instrument": "SPX"}, headers={"X-Request-ID": bad})
        assert r.headers["x-request-id"] != bad and len(r.json()["request_id"]) == 32
    service.log.close()
    with service.registry.sessions() as s:
        logged = set(s.execute(select(ModelServingLog.request_id)).scalars())
    assert "client-run.7:0042" in logged and not logged & {"short", "x" * 65, "drop table;--x"}


def test_the_open_health_view_shows_no_internals(client, service):
    body = client.get(f"{API}/health").text
    assert "/" not in body.replace("\\/", "") and "sha" not in body and "error" not in body
    assert client.get(f"{API}/health?detail=true", headers=bearer(service, "read")).status_code == 200


# artifacts from the register route -----------------------------------------------------------
@pytest.fixture
def saved(service, serve_plugins, tmp_path) -> Path:
    fit_and_register(Registry(home=tmp_path / "other"), serve_plugins, "logit_direction", tmp_path, c=0.5)
    return next((tmp_path / "other" / "artifacts").iterdir())


def test_artifacts_are_registered_only_from_the_upload_folder(client, service, saved):
    key = bearer(service, "train")
    outside = client.post(f"{API}/models", json={"name": "logit_direction", "artifact_path": str(saved)}, headers=key)
    missing = client.post(f"{API}/models", json={"name": "logit_direction", "artifact_path": "/etc/nothing"}, headers=key)
    escape = client.post(f"{API}/models", json={"name": "logit_direction", "artifact_path": "../../etc"}, headers=key)
    # no existence oracle: a folder that exists and one that does not get the same answer
    assert outside.status_code == missing.status_code == escape.status_code == 422
    assert outside.json()["error"] == missing.json()["error"] == escape.json()["error"]
    assert str(saved) not in outside.text


def test_manifest_names_outside_the_folder_symlinks_and_bad_json_are_refused_without_hashes(client, service, saved):
    key = bearer(service, "train")
    uploads = treum_home() / "uploads"
    evil = Path(shutil.copytree(saved, uploads / "evil"))
    manifest = json.loads((evil / "manifest.json").read_text())
    manifest["files"]["../../../../etc/hostname"] = "0" * 64
    (evil / "manifest.json").write_text(json.dumps(manifest))
    r = client.post(f"{API}/models", json={"name": "logit_direction", "artifact_path": "evil"}, headers=key)
    assert r.status_code == 422 and "0000" not in r.text and "hostname" not in r.text

    linked = Path(shutil.copytree(saved, uploads / "linked"))
    (linked / "elsewhere").symlink_to("/etc")
    r = client.post(f"{API}/models", json={"name": "logit_direction", "artifact_path": "linked"}, headers=key)
    assert r.status_code == 422 and "symbolic link" in r.json()["error"]

    broken = Path(shutil.copytree(saved, uploads / "broken"))
    (broken / "manifest.json").write_text("{not json")
    r = client.post(f"{API}/models", json={"name": "logit_direction", "artifact_path": "broken"}, headers=key)
    assert r.status_code == 422 and "malformed" in r.json()["error"]

    changed = Path(shutil.copytree(saved, uploads / "changed"))
    victim = changed / "coefficients.json"
    victim.write_text(victim.read_text() + " ")
    r = client.post(f"{API}/models", json={"name": "logit_direction", "artifact_path": "changed"}, headers=key)
    assert r.status_code == 422 and "coefficients.json" in r.json()["error"]
    digest = json.loads((changed / "manifest.json").read_text())["files"]["coefficients.json"]
    assert digest[:8] not in r.text and str(uploads) not in r.text


def test_an_overlong_reason_is_a_422_not_a_database_error(client, service):
    live = service.live["garch"]
    r = client.put(f"{API}/models/{live.id}/retire", json={"reason": "x" * 5000}, headers=bearer(service, "deploy"))
    assert r.status_code == 422


def test_an_answer_is_held_until_its_rows_are_on_disk_and_is_a_503_when_they_cannot_be(client, service, monkeypatch):
    """serve.durable_ack: the status line and body go out only once the request's rows are fsynced to the
    spool; a spool that cannot confirm them in time turns the answer into a 503 (retry), never a 200 whose
    record could be lost."""
    calls = []
    real = service.log.durable

    async def watched():
        ok = await real()
        calls.append((ok, service.log.spool._synced >= service.log.spool.added))
        return ok

    monkeypatch.setattr(service.log, "durable", watched)
    r = client.post(f"{API}/predict/volatility", json={"instrument": "SPX"})
    assert r.status_code == 200 and calls == [(True, True)]  # waited, and everything added was on disk

    async def never():
        await asyncio.sleep(3600)

    monkeypatch.setattr(service.log, "durable", never)
    monkeypatch.setattr(service, "settings", dataclasses.replace(service.settings, durable_ack_timeout_s=0.2))
    r = client.post(f"{API}/predict/volatility", json={"instrument": "SPX"})
    assert r.status_code == 503 and "durably" in r.json()["error"] and r.json()["request_id"] == r.headers["x-request-id"]

    monkeypatch.setattr(service, "settings", dataclasses.replace(service.settings, durable_ack=False))
    r = client.post(f"{API}/predict/volatility", json={"instrument": "SPX"})
    assert r.status_code == 200  # without durable acknowledgements nothing waits on the spool
