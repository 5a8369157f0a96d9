"""``/predict/<task>`` for every registered task, the aliases, batches of mixed tasks, and outcomes scored per task."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from treum.core.plugins import PluginSettings, create_plugin_registry
from treum.registry.schema import MLPrediction
from treum.registry.store import Registry
from treum.serve.api import create_app
from treum.serve.live import task_of
from treum.serve.router import Service

from .conftest import TRAIN, fit_and_register, settings

API = "/api/v1/ml"
# tasks answered from an instrument's bars; a task that reads text has its own route (test_sentiment_route.py)
ALL_TASKS = create_plugin_registry(PluginSettings()).specs("tasks")
TASKS = [n for n, s in ALL_TASKS.items() if s.data_kind == "panel"]


def _service(serve_home, serve_plugins, **overrides) -> Service:
    return Service(settings(**overrides), Registry(home=serve_home), serve_plugins, start_refresher=False)


@pytest.fixture
def service(serve_home, serve_plugins):
    svc = _service(serve_home, serve_plugins)
    yield svc
    svc.close()


@pytest.fixture
def client(service):
    return TestClient(create_app(lambda: service, service.plugins))


@pytest.fixture
def key(service):
    return {"Authorization": f"Bearer {service.registry.create_api_key('tests', scopes=['admin'])}"}


class Fixed:
    """A stand-in for a loaded model that answers the same values on every bar."""

    def __init__(self, spec, task=None, **values: float):
        self.spec, self.task, self.values = spec, task, values

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({c: np.full(len(data), v) for c, v in self.values.items()}, index=data.index)


def _fix(service: Service, name: str, **values: float) -> None:
    live = service.live[name]
    live.model = Fixed(live.model.spec, getattr(live.model, "task", None), **values)


def _rows(service: Service, prediction_id: str) -> dict[str, MLPrediction]:
    """The logged rows of an answer (the answer's own and its members'), after flushing the log."""
    service.log.close()
    service.log = type(service.log)(service.registry.sessions)
    with service.registry.sessions() as s:
        rows = s.execute(select(MLPrediction).where(MLPrediction.prediction_id.startswith(prediction_id))).scalars()
        return {r.prediction_id: r for r in rows}


@pytest.mark.parametrize("task", TASKS)
def test_every_registered_task_answers_in_its_own_columns(task, serve_home, serve_plugins, tmp_path):
    models = [name for name in TRAIN if serve_plugins.model(name).task == task]
    if not models:  # a task of another plugin: fit one of its models on the task's example, and deploy it
        spec = serve_plugins.task(task)
        of_task = sorted(serve_plugins.specs("models").values(), key=lambda m: (m.baseline, m.name))
        name = next(m.name for m in of_task if m.task == task)
        reg = Registry(home=serve_home)
        m = fit_and_register(reg, serve_plugins, name, tmp_path, end=spec.example.end)
        reg.deploy(name, m.model_version, actor="test", reason="serving test of a plugin's task")
        reg.close()
        models = [name]
    svc = _service(serve_home, serve_plugins, tasks={task: {"model": models[0]}})
    try:
        live = svc.live[models[0]]
        instrument = live.entities[0]
        client = TestClient(create_app(lambda: svc))
        r = client.post(f"{API}/predict/{task}", json={"instrument": instrument})
        assert r.status_code == 200, r.text
        body = r.json()
        version_task = task_of(serve_plugins, task, svc.registry.get_by_id(live.id).model_metadata)
        values = {c: body[c] for c in version_task.prediction_columns()}
        assert version_task.check_predictions(pd.DataFrame([values])) == []
        assert body["label"] == version_task.label(values)
        for field, value in version_task.describe(values).items():  # numbers, lists of numbers (intervals), words
            assert body[field] == (value if isinstance(value, str) else pytest.approx(value)), field
        assert (body["task"], body["instrument"], body["model"], body["model_id"]) == (task, instrument, live.name,
                                                                                        live.id)
        assert body["cached"] is False and client.post(f"{API}/predict/{task}",
                                                       json={"instrument": instrument}).json()["cached"] is True
        (row,) = _rows(svc, body["prediction_id"]).values()
        assert row.input_features["task"] == task and str(row.model_id) == live.id
        logged = version_task.log_fields(values)
        assert row.prediction_class == logged["prediction_class"]
        # the outcome is scored by this task's rule (1.0 is a valid outcome of every task here)
        key = {"Authorization": f"Bearer {svc.registry.create_api_key(f'outcome-{task}', scopes=['experiments'])}"}
        r = client.post(f"{API}/predictions/{body['prediction_id']}/outcome", json={"actual_value": 1.0}, headers=key)
        assert r.status_code == 200 and r.json()["updated"] == 1, r.text
        (row,) = _rows(svc, body["prediction_id"]).values()
        expected_correct, expected_error = version_task.score_outcome(logged, 1.0)
        assert row.is_correct == expected_correct
        assert row.prediction_error == (pytest.approx(expected_error) if expected_error is not None else None)
    finally:
        svc.close()


def test_the_columns_come_from_the_versions_task_config(service, serve_plugins, tmp_path, client):
    """GARCH fitted for task.horizons=[1,5] answers var_h1 and var_h5, and nothing named for 21 bars."""
    new = fit_and_register(service.registry, serve_plugins, "garch", tmp_path, task_config={"horizons": [1, 5]})
    service.registry.deploy("garch", new.model_version, actor="test", reason="other horizons")
    service.refresh()
    body = client.post(f"{API}/predict/volatility", json={"instrument": "SPX"}).json()
    assert body["version"] == new.model_version
    assert body["var_h5"] > body["var_h1"] > 0 and "var_h21" not in body and "vol_h21_pct" not in body
    assert body["vol_h5_pct"] == pytest.approx(math.sqrt(body["var_h5"]))
    assert body["vol_annualised_pct"] == pytest.approx(math.sqrt(body["var_h1"] * 252))


def test_an_alias_answers_as_its_task(serve_home, serve_plugins):
    svc = _service(serve_home, serve_plugins, aliases={"vol": {"task": "volatility"}})
    try:
        client = TestClient(create_app(lambda: svc))
        generic = client.post(f"{API}/predict/volatility", json={"instrument": "SPX"}).json()
        alias = client.post(f"{API}/predict/vol", json={"instrument": "SPX"}).json()
        same = {k: v for k, v in alias.items() if k not in ("prediction_id", "cached")}
        assert same == {k: v for k, v in generic.items() if k not in ("prediction_id", "cached")}
        # the specification's market-regime reads the regime model's own market
        market = client.post(f"{API}/predict/market-regime", json={"instrument": "SP500"}).json()
        regime = client.post(f"{API}/predict/regime", json={"instrument": "SP500"}).json()
        assert market["market"] == "SP500" and market["p_bear"] == regime["p_bear"]
        assert market["label"] == regime["label"] and market["as_of"] == regime["as_of"]
    finally:
        svc.close()


def test_several_deployed_models_of_a_task_need_the_config_to_choose(client, serve_home, serve_plugins):
    r = client.post(f"{API}/predict/direction", json={"instrument": "SPX"})
    assert r.status_code == 409
    message = r.json()["error"]
    assert "3 deployed models answer task 'direction': gbm_direction v1, logit_direction v1, ts_transformer v1" in message
    assert "set serve.tasks.direction.model" in message
    svc = _service(serve_home, serve_plugins, tasks={"direction": {"model": "logit_direction"}})
    try:
        body = TestClient(create_app(lambda: svc)).post(f"{API}/predict/direction", json={"instrument": "SPX"}).json()
        assert body["model"] == "logit_direction" and 0 < body["p_up"] < 1 and body["horizon"] == "1 bar"
        assert body["label"] == ("up" if body["p_up"] > 0.5 else "down")
    finally:
        svc.close()


def test_an_unknown_task_is_a_404_with_a_suggestion(client):
    r = client.post(f"{API}/predict/volatilty", json={"instrument": "SPX"})
    assert r.status_code == 404
    message = r.json()["error"]
    assert "unknown task 'volatilty'; did you mean 'volatility'?" in message
    assert f"registered tasks: {', '.join(ALL_TASKS)}" in message


def test_a_task_with_nothing_deployed_is_a_503_saying_how_to_deploy(service, client, serve_home, serve_plugins):
    service.registry.retire("garch", "1", actor="test", reason="nothing deployed")
    service.refresh()
    r = client.post(f"{API}/predict/volatility", json={"instrument": "SPX"})
    assert r.status_code == 503
    assert "no model of task 'volatility' is deployed" in r.json()["error"]
    assert "treum registry deploy" in r.json()["error"] and "models of task 'volatility': garch" in r.json()["error"]
    svc = _service(serve_home, serve_plugins, tasks={"volatility": {"model": "garch"}})
    try:
        r = TestClient(create_app(lambda: svc)).post(f"{API}/predict/volatility", json={"instrument": "SPX"})
        assert r.status_code == 503
        assert "serve.tasks.volatility.model is 'garch', which has no deployed version" in r.json()["error"]
    finally:
        svc.close()


def test_a_batch_of_mixed_tasks_gives_each_item_its_status(client):
    items = [("price", "SPX"), ("volatility", "SPX"), ("market-regime", "SPX"), ("regime", "SP500"),
             ("volatilty", "SPX"), ("direction", "SPX"), ("volatility", "NOPE"), ("regime", "SPX")]
    r = client.post(f"{API}/predict/batch", json={"requests": [{"task": t, "instrument": i} for t, i in items]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [(x["task"], x["status"]) for x in results] == [
        ("price", 200), ("volatility", 200), ("market-regime", 200), ("regime", 200),
        ("volatilty", 404), ("direction", 409), ("volatility", 404), ("regime", 422)]
    assert "p_up" in results[0]["result"] and "var_h1" in results[1]["result"] and "p_bear" in results[3]["result"]
    assert "did you mean 'volatility'" in results[4]["error"]
    assert "fitted per instrument on SP500" in results[7]["error"]
    bad = client.post(f"{API}/predict/batch", json={"requests": [{"kind": "price", "instrument": "SPX"}]})
    assert bad.status_code == 422 and "task" in bad.json()["error"]


def test_a_correct_bear_call_counts_as_correct_and_an_impossible_regime_outcome_is_a_422(service, client, key):
    _fix(service, "markov_regime", p_bear=0.9)
    body = client.post(f"{API}/predict/market-regime", json={"instrument": "SPX"}).json()
    assert body["label"] == "bear"
    _rows(service, body["prediction_id"])  # flushed
    r = client.post(f"{API}/predictions/{body['prediction_id']}/outcome", json={"actual_value": 0.5}, headers=key)
    assert r.status_code == 422
    assert "'regime' prediction" in r.json()["error"] and "1 (bear) or 0 (bull)" in r.json()["error"]
    r = client.post(f"{API}/predictions/{body['prediction_id']}/outcome", json={"actual_value": 1}, headers=key)
    assert r.status_code == 200 and r.json()["updated"] == 1
    (row,) = _rows(service, body["prediction_id"]).values()
    assert row.is_correct is True and row.prediction_error == pytest.approx(-0.1)


def test_the_ensemble_and_its_members_are_scored_by_the_members_task(service, client, key):
    """A bear regime picks the weights; a 'down' call on a falling day is correct for every row."""
    _fix(service, "markov_regime", p_bear=0.9)
    for name in ("gbm_direction", "logit_direction", "ts_transformer"):
        _fix(service, name, p_up=0.3)
    body = client.post(f"{API}/predict/price", json={"instrument": "SPX"}).json()
    assert body["regime"]["label"] == "bear" and body["label"] == "down" and body["p_up"] == pytest.approx(0.3)
    rows = _rows(service, body["prediction_id"])
    assert rows[body["prediction_id"]].model_id is None
    assert rows[body["prediction_id"]].input_features["task"] == "direction"
    r = client.post(f"{API}/predictions/{body['prediction_id']}/outcome", json={"actual_value": -0.01}, headers=key)
    assert r.status_code == 200 and r.json()["updated"] == 4
    rows = _rows(service, body["prediction_id"])
    assert all(row.is_correct is True for row in rows.values())
    assert all(row.prediction_error == pytest.approx(0.3) for row in rows.values())
    # the same outcome again changes nothing; another one is refused
    again = client.post(f"{API}/predictions/{body['prediction_id']}/outcome", json={"actual_value": -0.01}, headers=key)
    assert again.status_code == 200 and again.json()["updated"] == 0
    other = client.post(f"{API}/predictions/{body['prediction_id']}/outcome", json={"actual_value": 0.02}, headers=key)
    assert other.status_code == 409 and "never overwritten" in other.json()["error"]


def test_a_volatility_outcome_stores_its_error(client, service, key):
    body = client.post(f"{API}/predict/volatility", json={"instrument": "SPX"}).json()
    _rows(service, body["prediction_id"])
    r = client.post(f"{API}/predictions/{body['prediction_id']}/outcome", json={"actual_value": -1.0}, headers=key)
    assert r.status_code == 422 and "'volatility'" in r.json()["error"] and "cannot be negative" in r.json()["error"]
    r = client.post(f"{API}/predictions/{body['prediction_id']}/outcome", json={"actual_value": 1.5}, headers=key)
    assert r.status_code == 200 and r.json()["updated"] == 1
    (row,) = _rows(service, body["prediction_id"]).values()
    assert row.actual_value == pytest.approx(1.5) and row.is_correct is None
    assert row.prediction_error == pytest.approx(body["var_h1"] - 1.5, abs=1e-6)


def test_an_answer_outside_the_tasks_range_is_withheld(service, client):
    _fix(service, "markov_regime", p_bear=1.3)
    r = client.post(f"{API}/predict/market-regime", json={"instrument": "SPX"})
    assert r.status_code == 503 and "p_bear=1.3 outside [0.0, 1.0]" in r.json()["error"]


def test_outcome_errors_say_what_to_fix(client, key):
    missing = client.post(f"{API}/predictions/abc123/outcome", json={"actual_value": 1.0}, headers=key)
    assert missing.status_code == 404 and "retry" in missing.json()["error"]
    wildcard = client.post(f"{API}/predictions/abc%25/outcome", json={"actual_value": 1.0}, headers=key)
    assert wildcard.status_code == 422 and "letters, digits" in wildcard.json()["error"]
    huge = client.post(f"{API}/predictions/abc123/outcome", json={"actual_value": 1e12}, headers=key)
    assert huge.status_code == 422 and "smaller than 1e10" in huge.json()["error"]  # not a database overflow (500)


def test_weights_missing_for_the_regimes_label_is_a_503(serve_home, serve_plugins):
    from .conftest import serve_values
    from treum.serve.settings import ServeSettings

    values = serve_values()
    values["ensemble"]["weights"] = {"bull": {"gbm_direction": 1.0}}
    svc = Service(ServeSettings.from_config(values), Registry(home=serve_home), serve_plugins, start_refresher=False)
    try:
        _fix(svc, "markov_regime", p_bear=0.9)
        r = TestClient(create_app(lambda: svc)).post(f"{API}/predict/price", json={"instrument": "SPX"})
        assert r.status_code == 503
        assert "says 'bear', and serve.ensemble.weights has no entry for it (entries: bull)" in r.json()["error"]
    finally:
        svc.close()


class _Raising(Fixed):
    """A stand-in that refuses its input the way a model does (a TreumError naming what is wrong)."""

    error: Exception = RuntimeError()

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        raise self.error


@pytest.mark.parametrize("error,status", [
    ("treum", 422), ("integrity", 503),
])
def test_a_models_own_error_on_its_input_is_a_422_and_a_broken_artifact_a_503(service, client, error, status):
    from treum.core.errors import ArtifactIntegrityError, TreumError

    live = service.live["markov_regime"]
    model = _Raising(live.model.spec, getattr(live.model, "task", None))
    model.error = (TreumError("it has no parameters for 'SP500'") if error == "treum"
                   else ArtifactIntegrityError("/secret/path/model.txt changed"))
    live.model = model
    r = client.post(f"{API}/predict/regime", json={"instrument": "SP500"})
    assert r.status_code == status, r.text
    message = r.json()["error"]
    if status == 422:
        assert "no parameters for 'SP500'" in message
    else:
        assert "/secret/path" not in message and "ArtifactIntegrityError" in message
