"""The portfolio task's routes over real HTTP semantics (TestClient): risk, rebalancing, weights, errors.

A deployed 1/N portfolio on the 20 skfolio stocks answers; its weights are known (1/20), so
every figure the routes return can be checked against a direct computation.
"""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from treum.core.risk import portfolio_risk
from treum.registry.store import Registry
from treum.serve.api import create_app
from treum.serve.router import Service

from .conftest import fit_and_register, settings

API = "/api/v1/ml"


@pytest.fixture(scope="module")
def portfolio_home(tmp_path_factory, serve_plugins):
    home = tmp_path_factory.mktemp("portfolio-home")
    reg = Registry(home=home)
    m = fit_and_register(reg, serve_plugins, "equal_weight", home, end="2016-12-31")
    reg.deploy("equal_weight", m.model_version, actor="test", reason="portfolio routes")
    reg.close()
    return home


@pytest.fixture(scope="module")
def client(portfolio_home, serve_plugins):
    service = Service(settings(), Registry(home=portfolio_home), serve_plugins, start_refresher=False)
    yield TestClient(create_app(lambda: service, serve_plugins))
    service.close()


def test_weights_are_the_deployed_model_s_whole_portfolio(client):
    r = client.get(f"{API}/portfolio/weights", params={"as_of": "2020-03-18"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["weights"]) == 20 and all(w == pytest.approx(0.05) for w in body["weights"].values())
    assert body["as_of"] == "2020-03-18" and body["rebalanced_on"] == "2020-03-02"


def test_the_generic_route_answers_an_instrument_s_weight_within_the_universe(client):
    r = client.post(f"{API}/predict/portfolio", json={"instrument": "AAPL"})
    assert r.status_code == 200, r.text
    assert r.json()["weight"] == pytest.approx(0.05)  # its share among 20, not 1.0 alone
    import pandas as pd

    days = pd.bdate_range("2019-01-01", periods=300)
    sent = client.post(f"{API}/predict/portfolio", json={"instrument": "AAPL", "bars": [
        {"timestamp": d.isoformat(), "close": 100.0 + i} for i, d in enumerate(days)]})
    assert sent.status_code == 422 and "omit 'bars'" in sent.json()["error"]


def test_portfolio_risk_of_given_weights_matches_the_library_and_splits_by_factor(client, serve_plugins):
    weights = {"AAPL": 0.5, "XOM": 0.3, "JNJ": 0.2}
    r = client.post(f"{API}/predict/portfolio-risk", json={"weights": weights, "data": "sp500_stocks",
                                                           "as_of": "2018-06-29"})
    assert r.status_code == 200, r.text  # the plugin route, not /predict/{task} with task 'portfolio-risk'
    body = r.json()
    assert body["source"] == {"kind": "given"} and body["window"]["last"] == "2018-06-29"
    panel = serve_plugins.dataset("sp500_stocks").load({"end": "2018-06-29"})
    prices = panel["close"].unstack("entity")[list(weights)]
    import pandas as pd

    direct = portfolio_risk(prices, pd.Series(weights), None, window=1000)
    assert body["historical"] == direct["historical"]
    hist = body["historical"]
    assert 0 < hist["var_95_h1"] < hist["var_99_h1"] < hist["es_99_h1"] and hist["var_99_h10"] > hist["var_99_h1"]
    assert body["filtered_historical"]["var_99_h1"] > 0
    factor = body["factor"]
    assert factor["months_used"] == 60 and factor["last_month"] == "2018-06"
    assert sum(factor["risk_by_asset"].values()) == pytest.approx(1, abs=1e-6)
    assert sum(factor["risk_by_factor"].values()) == pytest.approx(1, abs=1e-6)


def test_portfolio_risk_of_the_deployed_model(client):
    r = client.post(f"{API}/predict/portfolio-risk", json={"as_of": "2015-06-30", "factors": False,
                                                           "levels": [0.99], "horizons": [1]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"]["kind"] == "model" and body["source"]["model"].startswith("equal_weight")
    assert len(body["weights"]) == 20 and body["factor"] is None
    assert set(body["historical"]) >= {"var_99_h1", "es_99_h1"}


@pytest.mark.parametrize("payload, fragment", [
    ({"weights": {"AAPL": 0.5, "NOPE": 0.5}, "data": "sp500_stocks"}, "unknown instrument"),
    ({"weights": {"AAPL": 0.5, "XOM": 0.2}, "data": "sp500_stocks"}, "sum to 0.7, not 1"),
    ({"weights": {"AAPL": 1.5, "XOM": -0.5}, "data": "sp500_stocks"}, "negative"),
    ({"weights": {"FF3": 1.0}, "data": "ff3"}, "has no close prices"),
    ({"weights": {"AAPL": 1.0}, "data": "sp500_stocks", "as_of": "1980-01-01"}, "no bars on or before"),
    ({"levels": [1.5]}, "confidence"),
    ({"horizons": [0]}, "horizon"),
    ({"window": 10}, "window"),
    ({"weights": {"AAPL": 1.0}, "data": "nope"}, "nope"),
])
def test_bad_risk_requests_are_4xx_naming_the_problem(client, payload, fragment):
    r = client.post(f"{API}/predict/portfolio-risk", json=payload)
    assert 400 <= r.status_code < 500, r.text
    assert fragment in r.json()["error"]


def test_rebalance_trades_cost_and_risk_change(client):
    r = client.post(f"{API}/portfolio/rebalance", json={"holdings": {"AAPL": 60_000, "XOM": 40_000},
                                                        "as_of": "2019-12-31"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["portfolio_value"] == pytest.approx(100_000)
    trades = {t["instrument"]: t for t in body["trades"]}
    assert trades["AAPL"]["side"] == "sell" and trades["AAPL"]["value"] == pytest.approx(-55_000)
    assert trades["KO"]["side"] == "buy" and trades["KO"]["value"] == pytest.approx(5_000)
    assert body["traded_value"] == pytest.approx(sum(abs(t["value"]) for t in body["trades"]), rel=1e-6)
    assert body["cost"] == pytest.approx(body["traded_value"] * 10 / 1e4)
    # twenty stocks are less risky than two: the recommended trade lowers the expected loss
    assert body["risk"]["change"]["historical_var_99_h1"] < 0


def test_rebalance_errors(client):
    r = client.post(f"{API}/portfolio/rebalance", json={"holdings": {"ZZZ": 1.0}})
    assert r.status_code == 422 and "unknown instrument" in r.json()["error"]
    r = client.post(f"{API}/portfolio/rebalance", json={"holdings": {}, "cash": 0})
    assert r.status_code == 422 and "empty" in r.json()["error"]
    r = client.post(f"{API}/portfolio/rebalance", json={"holdings": {"AAPL": -5}})
    assert r.status_code == 422
    r = client.post(f"{API}/portfolio/rebalance", json={"holdings": {"AAPL": 1e308, "XOM": 1e308}})
    assert r.status_code == 422 and "smaller unit" in r.json()["error"]


def test_a_request_never_adds_a_data_set_to_the_stored_bars(client):
    service = client.app.state.get_service()
    before = service.bars.instruments
    r = client.post(f"{API}/predict/portfolio-risk", json={"weights": {"VIX": 1.0}, "data": "vix", "factors": False})
    assert r.status_code == 200, r.text
    assert service.bars.instruments == before and "VIX" not in before


def test_nothing_deployed_is_a_503_that_says_how_to_deploy(serve_plugins, tmp_path):
    service = Service(settings(), Registry(home=tmp_path), serve_plugins, start_refresher=False)
    try:
        c = TestClient(create_app(lambda: service, serve_plugins))
        r = c.get(f"{API}/portfolio/weights")
        assert r.status_code == 503 and "treum registry deploy" in r.json()["error"]
        r = c.post(f"{API}/predict/portfolio-risk", json={"weights": {"AAPL": 1.0}})
        assert r.status_code == 422 and "name the data set" in r.json()["error"]
        r = c.post(f"{API}/portfolio/rebalance", json={"holdings": {"AAPL": 100.0}})
        assert r.status_code == 503
        # with a target and its data set, the task's default costs and caps answer without a model
        r = c.post(f"{API}/portfolio/rebalance", json={"holdings": {"AAPL": 100.0}, "target": {"XOM": 1.0},
                                                       "data": "sp500_stocks", "as_of": "2019-12-31"})
        assert r.status_code == 200, r.text
        assert r.json()["traded_value"] == pytest.approx(200.0) and r.json()["cost"] == pytest.approx(0.2)
    finally:
        service.close()


def test_a_turnover_cap_limits_the_recommended_trade(serve_plugins):
    from treum.core.task import build_task
    from treum.plugins.tasks.portfolio_advice import rebalance_plan
    import pandas as pd

    task = build_task(serve_plugins.task("portfolio"), {"max_turnover": 0.2})
    panel = serve_plugins.dataset("sp500_stocks").load({"start": "2015-01-01", "end": "2019-12-31"})
    target = pd.Series(0.05, index=sorted(panel.index.get_level_values("entity").unique()))
    plan = rebalance_plan(task, panel, {"AAPL": 100.0}, 0.0, target)
    assert plan["traded_value"] == pytest.approx(0.2 * 100.0)
    assert np.isclose(sum(plan["target_weights"].values()), 1.0)
