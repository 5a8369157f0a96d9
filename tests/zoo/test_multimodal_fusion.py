"""The multimodal fusion model: masked branches, the ablation's ``drop``, its specs and its config errors.

Three stocks, 2010-2015, the multimodal features of the packaged data; news columns are made up
here (random unit vectors on a few stock-days) so that no sentence encoder runs. The contract
tests (tests/zoo/test_contract.py) cover fit/predict/save/load/look-ahead for every variant.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from treum.core.config import build_spec_config
from treum.core.data import slice_time
from treum.core.errors import ConfigError, TreumError
from treum.core.evaluation import without_labels
from treum.core.model import build_model
from treum.core.task import build_task
from treum.plugins.features import multimodal
from treum.zoo import multimodal_fusion as mf

FAST = {"max_epochs": 2, "hidden": 8, "d_model": 8, "text_hidden": 8, "macro_hidden": 8, "head_hidden": 8,
        "window": 10}
SPECS = {s.name: s for s in mf.SPECS}


@pytest.fixture(scope="module")
def task(plugins):
    return build_task(plugins.task("direction"), {})


@pytest.fixture(scope="module")
def frame(plugins, task):
    """Prices, multimodal features (no news file), labels; 2013-06..2015 (the VIX starts 2014)."""
    data = plugins.dataset("sp500_stocks").load({"start": "2012-06-01", "end": "2015-12-31"})
    data = data[data.index.get_level_values("entity").isin(["AAPL", "JNJ", "XOM"])]
    out = data.join(multimodal.compute(data, {})).join(task.make_targets(data))
    return slice_time(out, start=pd.Timestamp("2013-06-01"))


@pytest.fixture(scope="module")
def with_news(frame):
    """The frame with made-up news embeddings on about a fifth of the stock-days."""
    rng = np.random.default_rng(7)
    emb = rng.normal(size=(len(frame), mf.TEXT_DIM)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    mask = rng.random(len(frame)) < 0.2
    emb[~mask] = 0.0
    news = pd.DataFrame(emb, index=frame.index, columns=multimodal.news_columns(mf.TEXT_DIM))
    return frame.drop(columns=["f_news_mask"]).join(news).assign(f_news_mask=mask.astype(np.float32))


def _split(frame):
    ts = frame.index.get_level_values("timestamp")
    return frame[ts < "2015-01-01"], frame[(ts >= "2015-01-01") & (ts < "2015-06-01")]


def _fit(name, task, frame, **overrides):
    config = build_spec_config(SPECS[name], {**FAST, **overrides})
    train, valid = _split(frame)
    return build_model(SPECS[name], config, task).fit(train, valid)


def _predict(model, frame):
    return model.predict_from(without_labels(frame), pd.Timestamp("2015-06-01"))["p_up"].dropna()


def test_with_no_news_the_text_branch_is_masked_and_the_model_says_so_once(task, frame, caplog):
    mf._SAID.clear()
    with caplog.at_level(logging.WARNING, logger=mf.__name__):
        model = _fit("multimodal_fusion", task, frame)
        assert model.text_branch_masked_ and not model.macro_branch_masked_
        said = [r.getMessage() for r in caplog.records if "text branch is masked" in r.getMessage()]
        assert len(said) == 1 and "features.news_path" in said[0]
        _fit("multimodal_fusion", task, frame, seed=1)  # a second fit (the next fold) says nothing more
        assert len([r for r in caplog.records if "text branch is masked" in r.getMessage()]) == 1
    p = _predict(model, frame)
    assert len(p) > 300 and p.between(0, 1).all() and p.nunique() > 1
    # with no news, the fusion and its no-text ablation are the same model
    same = _predict(_fit("multimodal_fusion_no_text", task, frame), frame)
    np.testing.assert_allclose(same.to_numpy(), p.to_numpy(), rtol=1e-6)


def test_with_technical_features_only_the_macro_branch_is_masked_too(task, frame):
    technical = frame.drop(columns=[c for c in frame.columns if c.startswith(("f_macro_", "f_news_"))])
    model = _fit("multimodal_fusion", task, technical)
    assert model.text_branch_masked_ and model.macro_branch_masked_
    assert _predict(model, technical).nunique() > 1


def test_news_opens_the_text_branch_and_the_model_reads_it(task, with_news):
    model = _fit("multimodal_fusion", task, with_news)
    assert not model.text_branch_masked_
    noisy = with_news.copy()
    news = [c for c in noisy.columns if c.startswith("f_news_") and c != "f_news_mask"]
    noisy[news] = noisy[news].to_numpy()[::-1]  # other days' headlines
    assert not np.allclose(_predict(model, noisy).to_numpy(), _predict(model, with_news).to_numpy())
    weights = model.attention(without_labels(with_news))
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    no_news = with_news["f_news_mask"].reindex(weights.index) == 0
    assert (weights.loc[no_news, "text"] == 0).all() and (weights.loc[~no_news, "text"] > 0).all()


@pytest.mark.parametrize("branch,columns", [
    ("text", lambda c: c.startswith("f_news_") and c != "f_news_mask"),
    ("macro", lambda c: c.startswith("f_macro_")),
    ("price", lambda c: c.startswith("f_") and not c.startswith(("f_macro_", "f_news_"))),
])
def test_drop_removes_a_branch_its_inputs_change_nothing(task, with_news, branch, columns):
    cols = [c for c in with_news.columns if columns(c)]
    rng = np.random.default_rng(0)
    changed = with_news.copy()
    values = changed[cols].to_numpy(dtype=float)
    changed[cols] = values + rng.normal(scale=3.0, size=values.shape) * np.isfinite(values)
    dropped = _fit("multimodal_fusion", task, with_news, drop=[branch])
    np.testing.assert_array_equal(_predict(dropped, changed).to_numpy(), _predict(dropped, with_news).to_numpy())
    weights = dropped.attention(without_labels(with_news))
    assert (weights[branch] == 0).all()
    kept = _fit("multimodal_fusion", task, with_news)  # the same change moves the full model: the test can fail
    assert not np.allclose(_predict(kept, changed).to_numpy(), _predict(kept, with_news).to_numpy())


def test_the_ablation_specs_force_their_branch_out(task):
    for name, branch in (("multimodal_fusion_no_price", "price"), ("multimodal_fusion_no_text", "text"),
                         ("multimodal_fusion_no_macro", "macro")):
        spec = SPECS[name]
        model = build_model(spec, build_spec_config(spec, {"drop": []}), task)
        assert branch in model.config.drop and model.spec is spec
        both = build_model(spec, build_spec_config(spec, {"drop": ["text" if branch != "text" else "macro"]}), task)
        assert len(both.config.drop) == 2
    with pytest.raises(TreumError, match="drop removes every branch"):
        build_model(SPECS["multimodal_fusion_no_text"],
                    build_spec_config(SPECS["multimodal_fusion_no_text"], {"drop": ["price", "macro"]}), task)
    assert SPECS["multimodal_fusion"].capabilities == {"multi_asset", "sequential", "uses_features", "gpu",
                                                       "probabilistic"}


def test_save_and_load_give_the_same_predictions_and_keep_the_masks(plugins, task, with_news, tmp_path):
    from treum.core.model import load_model

    model = _fit("multimodal_fusion_no_macro", task, with_news)
    path = model.save(tmp_path / "m")
    specs = {**plugins.specs("models"), **SPECS}
    loaded = load_model(path, specs, plugins.specs("tasks"))
    assert loaded.spec.name == "multimodal_fusion_no_macro" and loaded.config.drop == ["macro"]
    assert loaded.text_branch_masked_ is False
    np.testing.assert_allclose(_predict(loaded, with_news).to_numpy(), _predict(model, with_news).to_numpy(),
                               rtol=1e-6)


def test_bad_configs_and_inputs_are_refused(task, frame):
    spec = SPECS["multimodal_fusion"]
    with pytest.raises(ConfigError, match="drop"):
        build_spec_config(spec, {"drop": ["prices"]})
    with pytest.raises(ConfigError, match="divisible"):
        build_spec_config(spec, {"d_model": 10, "n_heads": 4})
    with pytest.raises(ConfigError, match="every branch"):
        build_spec_config(spec, {"drop": ["price", "text", "macro"]})
    with pytest.raises(ConfigError, match="twice"):
        build_spec_config(spec, {"drop": ["text", "text"]})
    with pytest.raises(ConfigError, match="window"):
        build_spec_config(spec, {"window": 1})
    with pytest.raises(ConfigError, match="hiden"):
        build_spec_config(spec, {"hiden": 8})
    only_macro = frame.drop(columns=[c for c in frame.columns
                                     if c.startswith("f_") and not c.startswith(("f_macro_", "f_news_"))])
    with pytest.raises(TreumError, match="price features"):
        _fit("multimodal_fusion", task, only_macro)
    model = _fit("multimodal_fusion", task, frame)
    with pytest.raises(TreumError, match="same feature set"):
        model.predict(without_labels(frame).drop(columns=["f_rsi_14"]))
