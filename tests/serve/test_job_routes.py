"""Training jobs and searches over HTTP: validated before they are queued, run as Ray actors, listed, cancelled."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from treum.registry.store import Registry
from treum.serve.api import create_app

from .conftest import settings

pytestmark = [pytest.mark.integration, pytest.mark.ray]
API = "/api/v1/ml"


@pytest.fixture(scope="module")
def ray_here():
    """One Ray on this machine for the module (the routes start it as plain uvicorn would); stopped after."""
    import ray

    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def svc(treum_home, serve_plugins, ray_here):
    from treum.serve.router import Service

    service = Service(settings(), Registry(), serve_plugins, start_refresher=False)
    yield service
    service.close()


@pytest.fixture
def client(svc):
    return TestClient(create_app(lambda: svc))


@pytest.fixture
def key(svc):
    return {"Authorization": f"Bearer {svc.registry.create_api_key('trainer', scopes=['train'])}"}


def _wait_for(client, key, job_id: str, done=("completed", "failed", "cancelled"), timeout: float = 300) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        body = client.get(f"{API}/training/jobs/{job_id}", headers=key).json()
        if body["status"] in done:
            return body
        time.sleep(1)
    raise AssertionError(f"job {job_id} still {body['status']} after {timeout}s")


def test_every_job_route_needs_a_key_with_the_train_scope(client, svc):
    reader = {"Authorization": f"Bearer {svc.registry.create_api_key('reader', scopes=['read', 'predict'])}"}
    routes = [("post", "/training/jobs", {"model": "logit_direction"}), ("get", "/training/jobs", None),
              ("get", "/training/jobs/00000000-0000-0000-0000-000000000000", None),
              ("post", "/training/jobs/00000000-0000-0000-0000-000000000000/cancel", {}),
              ("post", "/optimization/hyperparameters", {"model": "logit_direction"}), ("get", "/optimization/results", None)]
    for method, path, body in routes:
        kwargs = {"json": body} if body is not None else {}
        assert getattr(client, method)(f"{API}{path}", **kwargs).status_code == 401, path
        r = getattr(client, method)(f"{API}{path}", headers=reader, **kwargs)
        assert r.status_code == 403 and "needs 'train'" in r.json()["error"], path
    assert svc.registry.jobs() == []


@pytest.mark.parametrize("body, words", [
    ({"model": "logit_direction", "overrides": ["registry.url=sqlite:////tmp/other.db"]}, "the registry is the server's"),
    ({"model": "logit_direction", "overrides": ["data.path=/etc/passwd"]}, "never a path or an address"),
    ({"model": "logit_direction", "overrides": ["hydra.run.dir=/tmp/x"]}, "Hydra's own settings"),
    ({"model": "logit_direction", "overrides": ["tune.address=10.0.0.1:6379"]}, "its Ray cluster"),
    ({"model": "logit_direction", "overrides": ["model.cc=1"]}, "did you mean 'c'"),
    ({"model": "logit_direction", "overrides": ["model.c=abc"]}, "model.c: expected a number"),
    ({"model": "logit_direction", "overrides": ["model=gbm_direction"]}, "give model as its own field"),
    ({"model": "logit_dir"}, "did you mean 'logit_direction'"),
    ({"model": "lagged_logit"}, "is a baseline"),
    ({"model": "logit_direction", "hpo": "gbm_direction"}, "hpo belongs to a search"),
    ({"command": "tune", "model": "garch"}, "has no search of its own"),
    ({"command": "tune", "model": "logit_direction", "overrides": ["hpo.num_sample=3"]}, "did you mean 'num_samples'"),
    ({"command": "tune", "model": "logit_direction", "hpo": "gbm_direction"}, "'model.learning_rate' is not a key"),
    ({"model": "logit_direction", "overrides": ["x" * 20]}, "not KEY=VALUE"),
    # nothing of the server leaks through a value, and nothing outside the allowed keys is read
    ({"model": "logit_direction", "overrides": ["model.c=${oc.env:TREUM_HOME}"]}, "interpolations"),
    ({"model": "logit_direction", "overrides": ["seed=${oc.env:HOME,0}"]}, "interpolations"),
    ({"model": "logit_direction", "overrides": ["data.start=${hydra:runtime.cwd}"]}, "interpolations"),
    ({"model": "logit_direction", "overrides": ["seed=$\\{oc.env:TREUM_HOME\\}"]}, "escapes"),
    ({"model": "logit_direction", "overrides": ["features.name=$\\{oc.env:TREUM_HOME\\}"]}, "interpolations"),
    ({"model": "logit_direction", "overrides": ["features=multimodal", "features.news_path=/etc/passwd"]},
     "never a path or an address"),
    ({"command": "tune", "model": "logit_direction",
      "overrides": ["hpo.space={features.news_path: {choice: [/etc/passwd, /etc/hosts]}}"]}, "does not write one"),
    ({"model": "logit_direction", "overrides": ["+data.anything=1"]}, "not add or delete"),
    ({"model": "logit_direction", "overrides": ["experiment=../registry/postgres"]}, "is a name"),
    ({"model": "logit_direction", "data": "csv"}, "reads a file the server would have to be given"),
    ({"model": "logit_direction", "overrides": ["data.segments.test=[2020-01-01,2019-01-01]"]}, "is after end"),
    ({"command": "tune", "model": "logit_direction", "overrides": ["hpo.num_samples=100000"]}, "at most 500"),
    ({"model": "logit_direction", "overrides": ["features.cache_url=redis://x"]}, "never a path or an address"),
])
def test_a_bad_request_is_a_422_that_names_the_problem_and_queues_nothing(client, key, svc, body, words):
    r = client.post(f"{API}/training/jobs", json=body, headers=key)
    assert r.status_code == 422 and words in r.json()["error"], r.text
    assert svc.registry.jobs() == []


def test_a_train_job_runs_on_ray_in_the_row_the_route_created(client, key, svc):
    r = client.post(f"{API}/training/jobs", json={"model": "logit_direction", "data": "sp500",
                                                  "overrides": ["eval.bootstrap=0", "model.c=0.1"]}, headers=key)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert r.json()["status_url"].endswith(job_id)
    body = _wait_for(client, key, job_id)
    assert body["status"] == "completed", body["error_message"]
    assert body["type"] == "training" and body["training_config"]["requested_by"] == "trainer"
    assert [j["id"] for j in client.get(f"{API}/training/jobs", headers=key).json()] == [job_id]  # one row, adopted
    (model,) = svc.registry.list_models()
    assert body["model_id"] == str(model.id) and model.model_config["c"] == 0.1
    r = client.post(f"{API}/training/jobs/{job_id}/cancel", json={}, headers=key)
    assert r.status_code == 409 and "already 'completed'" in r.json()["error"]
    assert client.get(f"{API}/training/jobs/7c0d0b0e-1111-4222-8333-944445555666", headers=key).status_code == 404


def test_a_search_over_http_lists_its_trials_and_its_best(client, key, svc):
    r = client.post(f"{API}/optimization/hyperparameters",
                    json={"model": "logit_direction", "overrides": ["hpo.num_samples=2", "hpo.max_concurrent=1",
                                                                    "eval.bootstrap=0"]}, headers=key)
    assert r.status_code == 202, r.text
    body = _wait_for(client, key, r.json()["id"])
    assert body["status"] == "completed", body["error_message"]
    assert body["type"] == "tuning" and len(body["trials"]) == 2
    (result,) = client.get(f"{API}/optimization/results", headers=key).json()
    assert result["search"]["id"] == body["id"] and result["trials"] == 2 and result["hpo"] == "logit_direction"
    assert result["best_trial"]["params"].keys() == {"model.c"} and 0 < result["best_trial"]["metrics"]["auc"] < 1
    (model,) = svc.registry.list_models()
    assert result["registered"][0]["id"] == str(model.id)
    assert model.model_metadata["tuning"]["search_job"] == body["id"]
    trials = client.get(f"{API}/training/jobs", params={"search": body["id"]}, headers=key).json()
    assert len(trials) == 2 and all(t["search"] == body["id"] for t in trials)


def _long_search_with_a_running_trial(client, key, svc) -> str:
    """Start a search of 40 gbm trials (seconds each, one at a time) and return its id once a trial runs."""
    r = client.post(f"{API}/optimization/hyperparameters",
                    json={"model": "gbm_direction", "overrides": ["hpo.num_samples=40", "hpo.max_concurrent=1",
                                                                    "hpo.scheduler.name=fifo"]}, headers=key)
    search_id = r.json()["id"]
    end = time.time() + 240
    while not any(t.status == "running" for t in svc.registry.jobs(100, search=search_id)):
        assert time.time() < end, "no trial started"
        assert svc.registry.job(search_id).status in ("queued", "running"), svc.registry.job(search_id).error_message
        time.sleep(0.5)
    return search_id


def test_cancelling_a_search_cancels_its_trials_and_kills_its_actor(client, key, svc):
    import ray

    search_id = _long_search_with_a_running_trial(client, key, svc)
    r = client.post(f"{API}/training/jobs/{search_id}/cancel", json={"reason": "enough"}, headers=key)
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["actor_killed"] is True
    assert svc.registry.job(search_id).error_message == "cancelled by trainer: enough"
    assert not [t for t in svc.registry.jobs(100, search=search_id) if t.status in ("queued", "running")]
    time.sleep(3)
    with pytest.raises(ValueError):
        ray.get_actor(f"treum-job-{search_id}", namespace="treum-jobs")
    assert svc.registry.list_models() == []
    time.sleep(3)  # a trial reporting after the kill changes nothing: its row stays cancelled
    assert not [t for t in svc.registry.jobs(100, search=search_id) if t.status in ("queued", "running")]


def test_a_job_whose_actor_died_reads_back_failed_not_running(client, key, svc):
    import ray

    job_id = _long_search_with_a_running_trial(client, key, svc)
    ray.kill(ray.get_actor(f"treum-job-{job_id}", namespace="treum-jobs"), no_restart=True)  # as if its node died
    time.sleep(2)
    body = client.get(f"{API}/training/jobs/{job_id}", headers=key).json()
    assert body["status"] == "failed" and "its Ray actor is gone" in body["error_message"]
    assert not [t for t in body["trials"] if t["status"] in ("queued", "running")]
