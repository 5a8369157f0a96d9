"""MarketGNN: the correlation graph comes from the fit's own returns, top-k gives k neighbours,
each day's graph holds only the stocks present, and a lone stock gets the documented degraded answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from treum.commands.compose import model_config
from treum.core.model import build_model
from treum.core.task import build_task
from treum.zoo.market_gnn import MarketGNNConfig, correlation_graph


@pytest.fixture(scope="module")
def frame(plugins):
    """Eight stocks, 2009-2013, with technical features and cross-section labels."""
    data = plugins.dataset("sp500_stocks").load({"start": "2009-01-01", "end": "2013-12-31"})
    data = data[data.index.get_level_values("entity").isin(["AAPL", "BAC", "JNJ", "JPM", "KO", "MSFT", "WMT", "XOM"])]
    task = build_task(plugins.task("cross_section"), {})
    return data.join(plugins.feature_set("technical").compute(data, {})).join(task.make_targets(data)), task


def _gnn(plugins, task, **over):
    cfg = model_config(plugins, "market_gnn", [], {"max_epochs": 2, "hidden": 8, **over})
    return build_model(plugins.model("market_gnn"), cfg, task)


def _split(data):
    ts = data.index.get_level_values("timestamp")
    return data[ts < "2011-12-01"], data[(ts >= "2012-01-01") & (ts < "2012-12-01")], data[ts >= "2013-01-01"]


def test_topk_gives_each_stock_k_neighbours_and_threshold_follows_the_correlations(frame):
    data, _ = frame
    entities, edges = correlation_graph(data, MarketGNNConfig(graph="topk", k=3))
    dst = np.array([e[1] for e in edges], dtype=int)
    assert len(entities) == 8 and (np.bincount(dst, minlength=8) == 3).all()
    assert all(e[0] != e[1] for e in edges)  # self-loops are GCNConv's own, not in the graph
    close = data["close"].unstack("entity")
    corr = np.log(close).diff().iloc[-252:].corr().abs().to_numpy()
    _, strong = correlation_graph(data, MarketGNNConfig(graph="threshold", threshold=0.5))
    expected = {(i, j) for i in range(8) for j in range(8) if i != j and corr[i, j] >= 0.5}
    assert {(int(s), int(d)) for s, d, _ in strong} == expected
    for s, d, w in strong:
        assert w == pytest.approx(corr[int(s), int(d)])


def test_the_graph_is_built_from_training_returns_only(plugins, frame):
    data, task = frame
    train, valid, test = _split(data)
    a = _gnn(plugins, task).fit(train, valid)
    ts = data.index.get_level_values("timestamp")
    shocked = data.copy()
    rng = np.random.default_rng(0)
    shocked.loc[ts >= "2013-01-01", "close"] *= np.exp(rng.normal(0, 0.05, int((ts >= "2013-01-01").sum())))
    b = _gnn(plugins, task).fit(*_split(shocked)[:2])
    pd.testing.assert_frame_equal(a.graph(), b.graph())
    # and the graph is that of the last 252 bars the fit saw (training and validation closes)
    _, edges = correlation_graph(pd.concat([train, valid]).sort_index(), a.config)
    np.testing.assert_allclose(a.edges_, np.asarray(edges))


def test_each_day_is_one_snapshot_of_the_stocks_present(plugins, frame):
    data, task = frame
    train, valid, test = _split(data)
    model = _gnn(plugins, task).fit(train, valid)
    s = model._snapshots(test.drop(columns=[c for c in test.columns if c.startswith("target")]))
    assert (s.day[s.edge_src] == s.edge_day).all() and (s.day[s.edge_dst] == s.edge_day).all()
    full = model.predict(test)
    # a stock's answer depends on its neighbours that day: dropping one stock changes the others' scores
    without = model.predict(test[test.index.get_level_values("entity") != "JPM"])
    joined = full.loc[without.index, "score"]
    assert not np.allclose(joined.to_numpy(), without["score"].to_numpy())
    assert full["score"].between(0, 1).all()


def test_a_lone_stock_gets_the_degraded_answer_of_its_self_loop(plugins, frame):
    data, task = frame
    train, valid, test = _split(data)
    model = _gnn(plugins, task).fit(train, valid)
    one = test[test.index.get_level_values("entity") == "AAPL"]
    last = model.predict_last(one.iloc[[-1]])
    assert 0 < last["score"] < 1
    assert last["score"] == pytest.approx(model.predict(one)["score"].iloc[-1])
    # an instrument outside the graph is answered the same way (its own features, no neighbours)
    other = one.rename(index={"AAPL": "SPX"}, level="entity")
    assert model.predict(other)["score"].iloc[-1] == pytest.approx(last["score"])


def test_bad_configs_are_refused(plugins):
    from treum.core.errors import ConfigError

    with pytest.raises(ConfigError, match="threshold"):
        model_config(plugins, "market_gnn", [], {"graph": "threshold", "threshold": 1.5})
    with pytest.raises(ConfigError, match="k must be"):
        model_config(plugins, "market_gnn", [], {"k": 0})
