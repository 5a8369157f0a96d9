"""The contract every model keeps, as checks that tests and ``treum plugins check NAME`` share.

Data, label columns and range checks come from the model's task spec (its
``example``), so a third-party model of a third-party task is checked the same
way as a built-in one:

- fit returns the fitted model; predict answers every row of its input, in order;
- predictions have the task's columns, finite and in range on the test rows;
- a save/load round trip gives the same predictions; a changed artifact is refused;
- two fits with one seed agree;
- a model that is not ``sequential`` gives the same answers without the earlier rows;
- declared capabilities hold (``native_importance``, ``multi_horizon``, ``probabilistic``,
  ``multi_asset`` on the task's example panel);
- predictions at t do not change when the data after t is removed (no look-ahead).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from treum.commands.compose import model_config
from treum.core.data import slice_time
from treum.core.errors import ArtifactIntegrityError
from treum.core.evaluation import Fold, fit_rows, without_labels
from treum.core.model import build_model, load_model
from treum.core.task import Task, build_task

# smaller settings so that the contract runs in seconds; quality floors use the shipped configs
FAST = {"ts_transformer": {"max_epochs": 2, "d_model": 16, "window": 16}, "markov_regime": {"search_reps": 1},
        "rl_portfolio": {"total_timesteps": 1000},
        "minilm_finetuned": {"max_epochs": 1, "max_length": 32, "evals_per_epoch": 1, "batch_size": 16},
        "chart_cnn": {"window": 10, "height": 16, "max_epochs": 2, "max_train_images": 1000, "max_valid_images": 300},
        "chart_cnn_rank": {"window": 10, "height": 16, "max_epochs": 2, "max_train_images": 1000,
                           "max_valid_images": 300},
        **{name: {"max_epochs": 2, "hidden": 8, "d_model": 8} for name in (
            "multimodal_fusion", "multimodal_fusion_no_price", "multimodal_fusion_no_text", "multimodal_fusion_no_macro")}}


def task_of(plugins: Any, spec: Any) -> Task:
    task_spec = plugins.task(spec.task)
    return build_task(task_spec, dict(task_spec.example.config))


def is_corpus(plugins: Any, spec: Any) -> bool:
    """The model's task reads labelled text (rows without time order): the checks over time become checks over rows."""
    return plugins.task(spec.task).data_kind == "corpus"


def example_frame(plugins: Any, spec: Any, panel: bool = False) -> pd.DataFrame:
    """The task's example data (or its multi-entity panel) with features and the task's labels."""
    ex = plugins.task(spec.task).example
    if is_corpus(plugins, spec):
        from treum.core.corpus import corpus_inputs

        corpus = plugins.dataset(ex.data).load({})
        return corpus_inputs(corpus).join(task_of(plugins, spec).make_targets(corpus))
    data = plugins.dataset(ex.panel if panel else ex.data).load(ex.load_config())
    if panel and ex.entities:
        data = data[data.index.get_level_values("entity").isin(ex.entities)]
    feats = plugins.feature_set(ex.features).compute(data, {})
    return data.join(feats).join(task_of(plugins, spec).make_targets(data))


def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """(train, valid, start of the test year): the last year is tested, the year before validates."""
    ts = frame.index.get_level_values("timestamp")
    end = ts.max()
    train = frame[ts < end - pd.DateOffset(years=2, days=40)]
    valid = frame[(ts >= end - pd.DateOffset(years=2)) & (ts < end - pd.DateOffset(years=1, days=40))]
    return train, valid, end - pd.DateOffset(years=1)


def fit_predict(plugins: Any, spec: Any, frame: pd.DataFrame, overrides: dict | None = None) -> tuple[Any, pd.DataFrame]:
    """Fit on the example's train/valid split and predict the test year (labels as known at the fit's end).

    For a corpus task: fit on the first cross-validation fold's training rows and predict its test rows.
    """
    task = task_of(plugins, spec)
    config = model_config(plugins, spec.name, [], {**FAST.get(spec.name, {}), **(overrides or {})})
    if is_corpus(plugins, spec):
        fold = task.row_folds(frame, 0)[0]
        model = build_model(spec, config, task)
        fitted = model.fit(frame.iloc[fold.train], frame.iloc[fold.valid])
        assert fitted is model and model.fitted, "fit must return the fitted model (the Model base class does)"
        return model, model.predict(without_labels(frame)).iloc[np.sort(fold.test)]
    train, valid, test_start = split(frame)
    if task.label_horizon() is None:  # as the walk-forward does: labels as known at each block's last bar
        train_end = train.index.get_level_values("timestamp").max()
        valid_end = valid.index.get_level_values("timestamp").max()
        fold = Fold(0, (train.index.get_level_values("timestamp").min(), train_end),
                    (valid.index.get_level_values("timestamp").min(), valid_end), (test_start, test_start))
        train, valid = fit_rows(frame, fold, lambda end: task.labels_as_of(frame, end))
    model = build_model(spec, config, task)
    fitted = model.fit(train, valid)
    assert fitted is model and model.fitted, "fit must return the fitted model (the Model base class does)"
    return model, slice_time(model.predict(without_labels(frame)), start=test_start)


@dataclass
class Fitted:
    plugins: Any
    spec: Any
    model: Any
    pred: pd.DataFrame
    labelled: pd.DataFrame  # the example data with its labels (what fit sees)
    frame: pd.DataFrame = field(init=False)  # the same without labels: what predict sees
    task: Task = field(init=False)
    corpus: bool = field(init=False)  # rows without time order (texts)

    def __post_init__(self) -> None:
        self.task = task_of(self.plugins, self.spec)
        self.frame = without_labels(self.labelled)
        self.corpus = is_corpus(self.plugins, self.spec)

    def tested(self, pred: pd.DataFrame) -> pd.DataFrame:
        """The rows of a full prediction that ``pred`` holds: the test year, or a corpus's test texts."""
        if self.corpus:
            return pred.loc[self.pred.index]
        return slice_time(pred, start=self.pred.index.get_level_values("timestamp").min())


def fit_example(plugins: Any, name: str) -> Fitted:
    spec = plugins.model(name)
    frame = example_frame(plugins, spec)
    model, pred = fit_predict(plugins, spec, frame)
    return Fitted(plugins, spec, model, pred, frame)


def _close(a: pd.DataFrame, b: pd.DataFrame, what: str) -> None:
    assert a.shape == b.shape, f"{what}: shapes differ {a.shape} vs {b.shape}"
    np.testing.assert_allclose(a.to_numpy(dtype=float), b.to_numpy(dtype=float), rtol=1e-6, atol=1e-9, err_msg=what)


def check_columns_and_ranges(f: Fitted) -> None:
    full = f.model.predict(f.frame)
    assert full.index.equals(f.frame.index), "predict must answer every row of its input, in order"
    problems = f.task.check_predictions(f.pred)
    assert not problems, "; ".join(problems)


def check_round_trip(f: Fitted) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = f.model.save(Path(tmp) / "m")
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["model"] == f.spec.name and manifest["files"], "the manifest names the model and its files"
        loaded = load_model(path, f.plugins.specs("models"), f.plugins.specs("tasks"))
        assert loaded.task is not None and loaded.task.config_dict() == f.model.task.config_dict()
        again = f.tested(loaded.predict(f.frame))
        _close(again, f.pred, "predictions after save/load differ")


def check_tamper_refused(f: Fitted) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = f.model.save(Path(tmp) / "m")
        victim = sorted(p for p in path.iterdir() if p.name != "manifest.json")[0]
        victim.write_bytes(victim.read_bytes() + b" ")
        try:
            load_model(path, f.plugins.specs("models"), f.plugins.specs("tasks"))
        except ArtifactIntegrityError as exc:
            assert victim.name in str(exc), f"the error names the changed file: {exc}"
        else:
            raise AssertionError(f"a changed {victim.name} was loaded without complaint")


def check_seeded_fits_agree(f: Fitted) -> None:
    _, pred2 = fit_predict(f.plugins, f.spec, f.labelled)
    _close(pred2, f.pred, "two fits with one seed disagree")


def check_context(f: Fitted) -> None:
    if "sequential" in f.spec.capabilities:
        return  # it reads the rows before each prediction by declaration
    if f.corpus:  # a text's answer is its own: the test texts alone, in reverse order, answer as in the full frame
        alone = f.model.predict(f.frame.loc[f.pred.index[::-1]]).loc[f.pred.index]
        _close(alone, f.pred, "a text's answer changed with the other texts predicted beside it")
        return
    only_test = f.model.predict(slice_time(f.frame, start=f.pred.index.get_level_values("timestamp").min()))
    _close(only_test, f.pred, "a model that is not 'sequential' changed its answers without the earlier rows")


def check_capabilities(f: Fitted) -> None:
    caps = f.spec.capabilities
    if "native_importance" in caps:
        imp = f.model.feature_importance()
        assert np.isclose(imp.sum(), 1.0) and (imp >= 0).all() and imp.index.str.startswith("f_").all()
    else:
        try:
            f.model.feature_importance()
        except NotImplementedError:
            pass
        else:
            raise AssertionError("feature_importance answers but 'native_importance' is not declared")
    if "multi_horizon" in caps:
        assert len(f.pred.columns) >= 2, f"declares multi_horizon but predicts {list(f.pred.columns)}"
    if "probabilistic" in caps and not f.spec.baseline:
        col = f.task.prediction_columns()[0]
        assert f.pred[col].nunique() > 1, f"declares probabilistic but {col} is constant"


def check_multi_asset(f: Fitted) -> None:
    ex = f.plugins.task(f.spec.task).example
    if "multi_asset" not in f.spec.capabilities or not ex.panel or f.corpus:
        return
    frame = example_frame(f.plugins, f.spec, panel=True)
    _, pred = fit_predict(f.plugins, f.spec, frame)
    assert set(pred.index.get_level_values("entity")) == set(ex.entities), "every entity of the panel is answered"
    problems = f.task.check_predictions(pred)
    assert not problems, "; ".join(problems)


def check_no_look_ahead(f: Fitted) -> None:
    if f.corpus:  # no time to look ahead in; what must not leak is a test text's label: predict never sees it
        relabelled = f.labelled.copy()
        for col in [c for c in relabelled.columns if str(c).startswith("target")]:
            relabelled[col] = relabelled[col].sample(frac=1.0, random_state=1).to_numpy()
        _close(f.tested(f.model.predict(without_labels(relabelled))), f.pred, "predictions changed with the labels")
        alone = pd.concat([f.model.predict(f.frame.loc[[i]]) for i in f.pred.index[:3]])
        _close(alone, f.pred.iloc[:3], "a text predicted alone is answered differently than in a batch")
        return
    test_ts = f.pred.index.get_level_values("timestamp")
    cut = test_ts[len(test_ts) // 2]
    truncated = f.model.predict(slice_time(f.frame, end=cut))
    before = slice_time(f.pred, end=cut)
    again = slice_time(truncated, start=before.index.get_level_values("timestamp").min())
    _close(again, before, "predictions up to t changed when the data after t was removed (look-ahead)")


def check_predict_last(f: Fitted) -> None:
    """What serving asks for: the last row's prediction, equal to the last row of a full predict.

    A ``cross_sectional`` model is served the whole universe with the asked entity's last row
    last (``Service.universe``); any other model one entity's bars.
    """
    if f.corpus:  # serving asks for a list of texts: the last one's answer is the last row of predict
        texts = f.frame.loc[f.pred.index[:5]]
        np.testing.assert_allclose(f.model.predict_last(texts).to_numpy(dtype=float),
                                   f.model.predict(texts).iloc[-1].to_numpy(dtype=float), rtol=1e-6, atol=1e-9,
                                   err_msg="predict_last differs from the last row of predict")
        return
    entity = f.frame.index.get_level_values("entity")[0]
    mine = f.frame.index.get_level_values("entity") == entity
    if "cross_sectional" in f.spec.capabilities:
        last_ts = f.frame.index.get_level_values("timestamp").max()
        row = mine & (f.frame.index.get_level_values("timestamp") == last_ts)
        one = pd.concat([f.frame[~row], f.frame[row]])
    else:
        one = f.frame[mine]
    last = f.model.predict_last(one)
    full = f.model.predict(one).iloc[-1]
    if "cross_sectional" in f.spec.capabilities:  # the same as the row in a predict of the ordinary frame
        ordinary = f.model.predict(f.frame).loc[one.index[-1]]
        np.testing.assert_allclose(full[ordinary.index].to_numpy(dtype=float), ordinary.to_numpy(dtype=float),
                                   rtol=1e-6, atol=1e-9, err_msg="the answer depends on the order of the rows")
    np.testing.assert_allclose(last[full.index].to_numpy(dtype=float), full.to_numpy(dtype=float), rtol=1e-6,
                               atol=1e-9, err_msg="predict_last differs from the last row of predict")


CHECKS: dict[str, Callable[[Fitted], None]] = {
    "predict_last": check_predict_last,
    "columns and ranges": check_columns_and_ranges,
    "save/load round trip": check_round_trip,
    "changed artifact refused": check_tamper_refused,
    "seeded fits agree": check_seeded_fits_agree,
    "context (sequential)": check_context,
    "capabilities": check_capabilities,
    "multi_asset panel": check_multi_asset,
    "no look-ahead": check_no_look_ahead,
}


def run_contract(plugins: Any, name: str) -> Iterator[tuple[str, str | None]]:
    """Yield (check, None) for each check passed and (check, message) for each failed."""
    try:
        fitted = fit_example(plugins, name)
    except Exception as exc:
        yield "fit and predict", f"{type(exc).__name__}: {exc}"
        return
    yield "fit and predict", None
    for label, check in CHECKS.items():
        try:
            check(fitted)
            yield label, None
        except Exception as exc:
            yield label, f"{type(exc).__name__}: {exc}".strip()
