"""POST /predict/sentiment, `treum sentiment` and the cross-domain `treum evaluate ... version=`, on a real MiniLM model.

A frozen-MiniLM sentiment model is fitted on the project's own template sentences, registered and
deployed; the route, the CLI and the cross-domain evaluation answer with it.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from treum.commands import run as stages
from treum.commands.compose import compose_run, to_dict
from treum.core.config import build_spec_config, config_dict
from treum.core.model import build_model
from treum.core.task import build_task
from treum.registry.store import Registry
from treum.serve.api import create_app
from treum.serve.router import Service

from .conftest import settings

API = "/api/v1/ml"


@pytest.fixture(scope="module")
def sentiment_home(tmp_path_factory, serve_plugins):
    home = tmp_path_factory.mktemp("sentiment-home")
    spec = serve_plugins.model("minilm_lr")
    task = build_task(serve_plugins.task("sentiment"))
    corpus = serve_plugins.dataset("sentiment_sample").load({})
    frame = corpus.join(task.make_targets(corpus))
    config = build_spec_config(spec, {"c_grid": [4.0]})
    model = build_model(spec, config, task).fit(frame)
    path = model.save(home / "artifact")
    reg = Registry(home=home)
    m = reg.register(name="minilm_lr", task="sentiment", family=spec.family, config=config_dict(config),
                     artifact_dir=path, metrics={"accuracy": 0.9, "n": 240.0}, baselines={}, validated=True,
                     data_version=stages.data_version(corpus), performance=task.performance_row({"accuracy": 0.9, "n": 240.0}),
                     metadata={"data": "sentiment_sample", "features": "none", "task_config": task.config_dict()})
    reg.deploy("minilm_lr", m.model_version, actor="test", reason="sentiment route")
    reg.close()
    return home


@pytest.fixture(scope="module")
def client(sentiment_home, serve_plugins):
    service = Service(settings(), Registry(home=sentiment_home), serve_plugins, start_refresher=False)
    yield TestClient(create_app(lambda: service, serve_plugins))
    service.close()


def test_texts_are_answered_in_order_with_class_probabilities_and_the_version(client):
    texts = ["Aldena said its operating profit rose to EUR 40 mn from EUR 12 mn a year earlier .",
             "Lumora swung to an operating loss of EUR 30 mn from a profit of EUR 9 mn .",
             "Fjordline will publish its interim report on 12 October ."]
    r = client.post(f"{API}/predict/sentiment", json={"texts": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "minilm_lr" and body["version"] == "1"
    assert [x["text"] for x in body["results"]] == texts
    assert [x["label"] for x in body["results"]] == ["positive", "negative", "neutral"]
    for x in body["results"]:
        assert sum(x["probabilities"].values()) == pytest.approx(1, abs=1e-3)
        assert x["tone"] == pytest.approx(x["probabilities"]["positive"] - x["probabilities"]["negative"], abs=1e-3)
    one = client.post(f"{API}/predict/sentiment", json={"text": texts[1]}).json()
    assert one["results"][0]["probabilities"] == body["results"][1]["probabilities"]  # alone as in a batch
    ids = [x["prediction_id"] for x in body["results"]]
    assert len(set(ids)) == 3 and all(i.startswith(body["request_id"] + ":") for i in ids)


def test_the_generic_and_batch_routes_send_text_tasks_to_their_route(client):
    r = client.post(f"{API}/predict/batch", json={"requests": [{"task": "sentiment", "instrument": "SPX"}]})
    assert r.status_code == 200, r.text
    item = r.json()["results"][0]
    assert item["status"] == 422 and "reads text" in item["error"]


def test_a_document_gets_its_tone_and_its_driving_sentences(client):
    doc = ("Castelle Oyj raised its full-year outlook after net sales grew by 20 % . "
           "Net profit at Castelle Oyj increased to EUR 50 mn , beating analysts ' forecasts .\n\n"
           "The annual general meeting of Castelle Oyj will be held on 4 May .")
    r = client.post(f"{API}/predict/sentiment", json={"document": doc, "top": 1})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["sentences"]) == 3 and body["document"]["tone"] > 0
    assert len(body["document"]["drivers"]) == 1 and body["document"]["drivers"][0]["sentence"] in (1, 2)


@pytest.mark.parametrize("payload, message", [
    ({"text": "a", "texts": ["b"]}, "exactly one of text, texts or document"),
    ({}, "exactly one of text, texts or document"),
    ({"texts": ["fine", "  "]}, "texts[1] is empty"),
    ({"texts": ["x"] * 300}, "at most 256"),
    ({"text": "fine", "language": "fi"}, "language"),
    ({"document": "   "}, "the document is empty"),
])
def test_bad_requests_are_422_with_what_is_wrong(client, payload, message):
    r = client.post(f"{API}/predict/sentiment", json=payload)
    assert r.status_code == 422, r.text
    assert message in json.dumps(r.json())


def test_the_task_listing_says_sentiment_reads_text(client):
    listing = client.get(f"{API}/tasks").json()["tasks"]
    assert listing["sentiment"]["input"] == "text" and listing["sentiment"]["model"] == "minilm_lr"
    assert listing["direction"]["input"] == "bars"


def test_with_nothing_deployed_the_route_is_503_saying_how_to_deploy(tmp_path, serve_plugins):
    service = Service(settings(), Registry(home=tmp_path), serve_plugins, start_refresher=False)
    try:
        r = TestClient(create_app(lambda: service, serve_plugins)).post(f"{API}/predict/sentiment", json={"text": "x"})
        assert r.status_code == 503 and "treum registry deploy" in r.json()["error"]
    finally:
        service.close()


def test_the_cli_scores_a_document_and_lines(sentiment_home, tmp_path, monkeypatch, capsys):
    from treum.cli import main

    monkeypatch.setenv("TREUM_HOME", str(sentiment_home))
    monkeypatch.delenv("TREUM_REGISTRY_URL", raising=False)
    doc = tmp_path / "call.txt"
    doc.write_text("Operator:\nNet sales at Eskola Foods decreased by 30 % as demand weakened .\n"
                   "Eskola Foods will lay off 900 employees after orders collapsed .\n")
    assert main(["sentiment", str(doc), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    answer = out["answers"][0]
    assert out["model"] == "minilm_lr" and answer["sentences"] == 2 and answer["label"] == "negative"
    assert main(["sentiment", str(doc), "--lines", "--json"]) == 0
    lines = json.loads(capsys.readouterr().out)["answers"][0]["results"]
    assert [r["text"] for r in lines][0] == "Operator:" and len(lines) == 3
    assert main(["sentiment", str(tmp_path / "nope.txt")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_registered_version_is_applied_unchanged_to_another_labelled_file(sentiment_home, tmp_path, monkeypatch,
                                                                             serve_plugins):
    monkeypatch.setenv("TREUM_HOME", str(sentiment_home))
    monkeypatch.delenv("TREUM_REGISTRY_URL", raising=False)
    other = tmp_path / "other.csv"
    pd.DataFrame({"text": ["Granmark won a EUR 80 mn order that will lift its order book .",
                           "Isomet cut its guidance and warned that sales would fall by 10 % .",
                           "Isomet operates 40 stores in the Nordic countries .",
                           "Shares in Borvik Group jumped 12 % after the company reported record quarterly earnings ."],
                  "label": ["positive", "negative", "neutral", "positive"]}).to_csv(other, index=False)
    cfg = compose_run(["model=minilm_lr", "data=text_file", f"data.path={other}", "version=latest"], serve_plugins)
    outcome = stages.apply_version(cfg, serve_plugins, tmp_path / "run")
    table = outcome.table.set_index("model")
    assert list(table.index) == ["minilm_lr v1", "always_positive"]
    assert table.loc["minilm_lr v1", "accuracy"] == 1.0 and table.loc["minilm_lr v1", "n"] == 4
    assert table.loc["always_positive", "accuracy"] == 0.5
    assert table.loc["always_positive", "polarity_accuracy"] == pytest.approx(2 / 3)
    assert "applied unchanged" in outcome.caveat and (tmp_path / "run" / "leaderboard.csv").is_file()
    reg = Registry(home=sentiment_home)
    try:
        job = reg.job(outcome.job_ids[0])
        assert job.status == "completed" and job.final_metrics["accuracy"] == 1.0
    finally:
        reg.close()
    bad = compose_run(["model=minilm_lr", "data=sentiment_sample", "version=7"], serve_plugins)
    with pytest.raises(Exception, match="version"):
        stages.apply_version(bad, serve_plugins, tmp_path / "run2")
    same = compose_run(["model=minilm_lr", "data=sentiment_sample", "version=latest"], serve_plugins)
    with pytest.raises(Exception, match="fitted on this very data.*in-sample"):
        stages.apply_version(same, serve_plugins, tmp_path / "run4")
    panel = compose_run(["model=minilm_lr", "data=sp500", "version=latest"], serve_plugins)
    with pytest.raises(Exception, match="is a panel"):
        stages.apply_version(panel, serve_plugins, tmp_path / "run3")
    assert to_dict(cfg.data)["path"] == str(other)
