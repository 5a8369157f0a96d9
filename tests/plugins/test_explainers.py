"""The explainers (``treum_explainers``) on real fitted models and on toys whose answer is known.

The toys read one ``f_*`` column only, so every explainer must attribute to that column, find the
counterfactual just past its known boundary, and (with labels drawn from known noise) give
conformal coverage near 1 - alpha.
"""

from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from treum.commands import contract
from treum.commands.compose import model_config
from treum.core.errors import TreumError
from treum.core.estimators import NoConfig
from treum.core.explain import ExplainTarget, applicable, explain
from treum.core.model import Model, build_model, feature_columns
from treum.core.plugins import PluginSettings, create_plugin_registry
from treum.core.specs import ExplainerSpec, ModelSpec, TaskExample, TaskSpec
from treum.core.task import Task, build_task
from treum.plugins.explainers import conformal, counterfactual, importance, lime_weights, shap_values, surrogate_tree

MODULES = {"explainers_shap": shap_values, "explainers_lime": lime_weights, "explainers_decision_tree": surrogate_tree,
           "explainers_counterfactual": counterfactual, "explainers_conformal": conformal,
           "explainers_importance": importance}


def _registry():
    reg = create_plugin_registry(PluginSettings())
    if reg.specs("explainers"):  # pyproject.toml's entry points register them
        return reg
    return create_plugin_registry(PluginSettings(), extra_plugins=list(MODULES.items()))


REG = _registry()
EXPLAINERS = REG.specs("explainers")


# toys ------------------------------------------------------------------------------------
class OneFeature(Model):
    """P(up) = sigmoid((column - centre) / width): reads one feature of the many it is given."""

    column, centre, width = "f_ret_5", 0.5, 1.0

    def fit(self, data, valid=None):
        self.features_ = feature_columns(data)

    def predict(self, data):
        z = (data[self.column].to_numpy(dtype=float) - self.centre) / self.width
        return pd.DataFrame({"p_up": 1.0 / (1.0 + np.exp(-z))}, index=data.index)


OneFeature.spec = ModelSpec(name="one_feature_toy", family="toy", task="direction", config_cls=NoConfig,
                            capabilities=frozenset({"uses_features", "probabilistic"}), factory=OneFeature)


class SyntheticOneFeature(OneFeature):
    column, centre, width = "f_a", 0.0, 0.5


class TwiceA(Model):
    """forecast = 2 * f_a: a value model for conformal intervals."""

    def fit(self, data, valid=None):
        self.features_ = feature_columns(data)

    def predict(self, data):
        return pd.DataFrame({"forecast": 2.0 * data["f_a"].to_numpy(dtype=float)}, index=data.index)


class ValueTask(Task):
    def prediction_columns(self):
        return ("forecast",)


ValueTask.spec = TaskSpec(name="toy_value", description="a number", config_cls=NoConfig, factory=ValueTask,
                          primary_metric="mae", higher_is_better=False, baselines=(), headline=(),
                          example=TaskExample("none", "2000-01-01", "2000-12-31"))
TwiceA.spec = ModelSpec(name="twice_a", family="toy", task="toy_value", config_cls=NoConfig,
                        capabilities=frozenset({"uses_features"}), factory=TwiceA)


def synthetic(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.MultiIndex.from_arrays([pd.bdate_range("2001-01-01", periods=n), ["SYN"] * n],
                                      names=["timestamp", "entity"])
    return pd.DataFrame({f"f_{c}": rng.normal(size=n) for c in "abc"}, index=index)


# fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def example():
    """The direction task's example (S&P 500 2003-2012), a fitted logit, background and test rows."""
    fitted = contract.fit_example(REG, "logit_direction")
    test_start = fitted.pred.index.get_level_values("timestamp").min()
    ts = fitted.labelled.index.get_level_values("timestamp")
    return SimpleNamespace(fitted=fitted, background=fitted.labelled[ts < test_start],
                           test=fitted.labelled[ts >= test_start], direction=build_task(REG.task("direction")))


@pytest.fixture(scope="module")
def toy(example):
    model = OneFeature(NoConfig()).fit(example.background)
    target = ExplainTarget(model, example.direction, example.background)
    rows = example.test[example.test[model.features_].notna().all(axis=1)]
    gap = rows["f_ret_5"] - OneFeature.centre  # rows on both sides of the toy's boundary, near it
    near = pd.concat([rows[gap.between(0.3, 2.0)].iloc[:3], rows[gap.between(-2.0, -0.3)].iloc[:3]]).sort_index()
    return SimpleNamespace(model=model, target=target, rows=near, all_rows=rows)


@pytest.fixture(scope="module")
def tree_gbm(example):
    """gbm_direction with 60 trees (no early stopping), and the ``tree`` capability until its spec declares it."""
    spec = REG.model("gbm_direction")
    model = build_model(spec, model_config(REG, "gbm_direction", [], {"n_estimators": 60}), example.direction)
    model.fit(example.background)
    if not hasattr(model, "tree_model"):
        model.tree_model = lambda: model.booster_
    if "tree" not in spec.capabilities:
        model.spec = dataclasses.replace(spec, capabilities=spec.capabilities | {"tree"})
    return model


def run(name, target, rows=None, config=None, explainers=EXPLAINERS):
    result = explain(name, target, rows, config or {}, explainers)
    json.dumps(result, allow_nan=False)  # plain JSON, always
    assert {"explainer", "model", "output", "method"} <= set(result)
    return result


# registry and refusals -------------------------------------------------------------------
def test_every_builtin_explainer_is_registered_with_its_scope():
    assert set(EXPLAINERS) == {"shap", "lime", "decision_tree", "counterfactual", "conformal", "importance"}
    assert {n for n, s in EXPLAINERS.items() if s.scope == "global"} == {"decision_tree", "conformal", "importance"}
    assert applicable(REG.model("gbm_direction").capabilities, EXPLAINERS) == sorted(EXPLAINERS)


@pytest.mark.parametrize("model, why", [
    ("lagged_logit", "'sequential'"), ("regime_classifier", "'sequential'"),
    ("majority_class", "'uses_features'"), ("market_gnn", "'cross_sectional'"),
])
def test_models_that_cannot_be_perturbed_are_refused_naming_what_applies(example, model, why):
    spec = REG.model(model)
    task = build_task(REG.task(spec.task))
    target = ExplainTarget(build_model(spec, spec.config_cls(), task), task, example.background)
    assert applicable(spec.capabilities, EXPLAINERS) == ["conformal"]
    with pytest.raises(TreumError) as err:
        run("shap", target, example.test.iloc[:2])
    message = str(err.value)
    assert f"model '{model}'" in message and why in message and message.endswith("explainers that do: conformal")
    without = {n: s for n, s in EXPLAINERS.items() if n != "conformal"}
    with pytest.raises(TreumError, match="explainers that do: none$"):
        run("lime", target, example.test.iloc[:2], explainers=without)
    with pytest.raises(TreumError, match="cannot be explained by perturbing"):
        target.predict_matrix(np.zeros((1, len(target.features))))


def test_unknown_names_and_keys_suggest_the_closest(toy):
    with pytest.raises(TreumError, match=r"explainer 'shapp' is not registered; did you mean 'shap'\?"):
        run("shapp", toy.target, toy.rows)
    with pytest.raises(TreumError, match=r"no config key 'num_feature'; did you mean 'num_features'\?"):
        run("lime", toy.target, toy.rows, {"num_feature": 3})
    with pytest.raises(TreumError, match="scope 'local'"):
        run("lime", toy.target, None)
    with pytest.raises(TreumError, match="max_rows=2"):
        run("counterfactual", toy.target, toy.rows, {"max_rows": 2})


def test_explainer_specs_refuse_unknown_scopes_and_capabilities():
    with pytest.raises(ValueError, match="scope"):
        ExplainerSpec("x", "x", lambda t, r, c: {}, scope="everywhere")
    with pytest.raises(ValueError, match="unknown capabilities"):
        ExplainerSpec("x", "x", lambda t, r, c: {}, requires=frozenset({"tree_model"}))


# shap ------------------------------------------------------------------------------------
def test_shap_tree_values_add_up_to_the_log_odds(example, tree_gbm):
    target = ExplainTarget(tree_gbm, example.direction, example.background)
    rows = example.test.iloc[:20]
    result = run("shap", target, rows)
    assert result["method"].startswith("tree") and result["values_in"] == "log-odds of p_up"
    raw = tree_gbm.booster_.predict(rows[tree_gbm.features_].to_numpy(dtype=float), raw_score=True)
    for row, score in zip(result["rows"], raw):
        explained = row["base_value"] + sum(row["values"].values())
        assert explained == pytest.approx(score, abs=1e-6)
        assert explained == pytest.approx(math.log(row["prediction"] / (1 - row["prediction"])), abs=1e-6)
    assert result["additivity_error"] < 1e-6
    assert len({r["base_value"] for r in result["rows"]}) == 1


def test_shap_permutation_on_logit_adds_up_and_is_seeded(example):
    fitted = example.fitted
    target = ExplainTarget(fitted.model, example.direction, example.background)
    rows = example.test.iloc[:3]
    np.random.seed(123)
    expected_draw = np.random.rand()
    np.random.seed(123)
    first = run("shap", target, rows)
    assert np.random.rand() == expected_draw, "shap must leave numpy's global generator as it found it"
    assert first["method"].startswith("permutation") and first["values_in"] == "p_up"
    for row in first["rows"]:
        assert row["base_value"] + sum(row["values"].values()) == pytest.approx(row["prediction"], abs=1e-9)
    assert run("shap", target, rows) == first


def test_shap_attributes_everything_to_the_one_feature_read(toy):
    result = run("shap", toy.target, toy.rows)
    ranking = result["ranking"]
    assert ranking[0]["feature"] == "f_ret_5" and ranking[0]["mean_abs_shap"] > 0.01
    assert all(r["mean_abs_shap"] < 1e-12 for r in ranking[1:])
    with pytest.raises(TreumError, match="capability 'tree'"):
        run("shap", toy.target, toy.rows, {"algorithm": "tree"})


# lime ------------------------------------------------------------------------------------
def test_lime_weights_name_the_feature_read(toy):
    conditions = run("lime", toy.target, toy.rows, {"num_features": 5})
    continuous = run("lime", toy.target, toy.rows, {"num_features": 5, "discretize": False})
    for row, plain in zip(conditions["rows"], continuous["rows"]):
        top = max(row["weights"], key=lambda w: abs(w["weight"]))
        assert top["feature"] == "f_ret_5" and "f_ret_5" in top["condition"] and len(row["weights"]) == 5
        assert max(abs(w["weight"]) for w in row["weights"][1:]) < 0.5 * abs(top["weight"])
        # on standardised features the local model fits the sigmoid well and the rest is noise
        assert plain["weights"][0]["feature"] == "f_ret_5" and plain["score"] > 0.8
        assert max(abs(w["weight"]) for w in plain["weights"][1:]) < 0.05 * abs(plain["weights"][0]["weight"])


# decision-tree surrogate ------------------------------------------------------------------
def test_surrogate_is_faithful_on_later_rows_it_never_saw(toy):
    from sklearn.tree import DecisionTreeRegressor

    result = run("decision_tree", toy.target)
    fidelity = result["fidelity"]
    n = len(toy.target.background)
    assert fidelity["n_fit"] + fidelity["n_held_out"] == n and fidelity["n_held_out"] == n - round(n * 0.7)
    assert fidelity["r2"] > 0.9 and fidelity["label_agreement"] > 0.9
    assert result["tree"]["feature"] == "f_ret_5" and "f_ret_5" in result["rules"]
    # the same figure, recomputed: fitted on the earlier rows, measured on the later ones
    bg = toy.target.background
    x, p = bg[toy.target.features].to_numpy(), toy.model.predict(bg)["p_up"].to_numpy()
    cut = fidelity["n_fit"]
    tree = DecisionTreeRegressor(max_depth=3, min_samples_leaf=20, random_state=0).fit(x[:cut], p[:cut])
    residual = p[cut:] - tree.predict(x[cut:])
    assert fidelity["r2"] == pytest.approx(1 - (residual ** 2).sum() / ((p[cut:] - p[cut:].mean()) ** 2).sum())


def test_surrogate_measures_on_given_held_out_rows(example, toy):
    target = ExplainTarget(toy.model, example.direction, example.background, labels=toy.all_rows)
    fidelity = run("decision_tree", target, toy.rows)["fidelity"]
    assert fidelity["held_out"] == "given held-out rows" and fidelity["n_held_out"] == len(toy.all_rows)
    assert fidelity["n_fit"] == len(target.background) and fidelity["r2"] > 0.9


# counterfactual --------------------------------------------------------------------------
def test_counterfactual_crosses_the_boundary_by_a_small_margin(toy):
    result = run("counterfactual", toy.target, toy.rows)
    std = toy.target.background["f_ret_5"].std(ddof=0)
    assert {r["original"]["label"] for r in result["rows"]} == {"up", "down"}
    for row in result["rows"]:
        assert row["found"], row
        assert row["counterfactual"]["label"] != row["original"]["label"]
        assert set(row["changes"]) == {"f_ret_5"}
        before, after = row["changes"]["f_ret_5"]
        assert abs(after - OneFeature.centre) < 1e-3 and abs(row["counterfactual"]["prediction"] - 0.5) < 1e-3
        assert row["distance"] == pytest.approx(abs(after - before) / std)


def test_counterfactual_never_changes_immutable_features(example, toy):
    result = run("counterfactual", toy.target, toy.rows.iloc[:2], {"immutable": ["f_ret_5"]})
    for row in result["rows"]:
        assert not row["found"] and "immutable" in row["why"] and "f_ret_5" in row["why"]
    target = ExplainTarget(example.fitted.model, example.direction, example.background, immutable=["f_vol_21"])
    found = [r for r in run("counterfactual", target, example.test.iloc[:5])["rows"] if r["found"]]
    assert found and all("f_vol_21" not in r["changes"] for r in found)
    assert all(r["counterfactual"]["label"] != r["original"]["label"] for r in found)
    with pytest.raises(TreumError, match="did you mean 'f_ret_5'"):
        run("counterfactual", toy.target, toy.rows, {"immutable": ["f_ret5"]})
    # a column the model does not read is harmless (a feature set may declare it): nothing to keep fixed
    assert ExplainTarget(toy.model, example.direction, example.background, immutable=["close"]).immutable == ()


# conformal -------------------------------------------------------------------------------
def test_conformal_intervals_cover_at_the_target_rate():
    frame = synthetic(2000)
    labels = frame.assign(target_value=2.0 * frame["f_a"] + np.random.default_rng(1).normal(0, 0.5, len(frame)))
    model = TwiceA(NoConfig()).fit(frame)
    target = ExplainTarget(model, ValueTask(NoConfig()), frame, labels=labels, target_column="target_value")
    result = run("conformal", target, frame.iloc[:3], {"alpha": 0.1})
    assert result["n_calibration"] == 1000 and result["n_evaluation"] == 1000
    assert abs(result["coverage"] - 0.9) < 0.05
    residual = np.abs(labels["target_value"] - 2.0 * labels["f_a"]).to_numpy()[:1000]
    level = math.ceil(1001 * 0.9) / 1000
    assert result["quantile_level"] == level
    assert result["qhat"] == pytest.approx(np.sort(residual)[math.ceil(1001 * 0.9) - 1])  # the k-th smallest
    assert result["qhat"] == pytest.approx(1.645 * 0.5, rel=0.1)  # the noise's own 95th percentile of |e|
    lo, hi = result["rows"][0]["interval"]
    assert hi - lo == pytest.approx(result["mean_interval_width"])


def test_conformal_sets_for_probabilities(example):
    frame = synthetic(2000, seed=2)
    model = SyntheticOneFeature(NoConfig()).fit(frame)
    p = model.predict(frame)["p_up"].to_numpy()
    labels = frame.assign(target=(np.random.default_rng(3).random(len(frame)) < p).astype(float))
    target = ExplainTarget(model, example.direction, frame, labels=labels, target_column="target", kind="probability")
    result = run("conformal", target, frame.iloc[:5], {"alpha": 0.2})
    assert abs(result["coverage"] - 0.8) < 0.05 and result["classes"] == {"1": "up", "0": "down"}
    scores = 1 - np.where(labels["target"] == 1, p, 1 - p)[:1000]
    assert result["qhat"] == pytest.approx(np.sort(scores)[math.ceil(1001 * 0.8) - 1])
    q, later = result["qhat"], p[1000:]  # the evaluation half: up is in a set when 1 - p <= qhat, down when p <= qhat
    sizes = (1 - later <= q).astype(int) + (later <= q).astype(int)
    assert result["mean_set_size"] == pytest.approx(sizes.mean())
    assert result["share_empty_sets"] == pytest.approx((sizes == 0).mean())
    for r, pr in zip(result["rows"], p[:5]):
        assert r["set"] == [c for c, pc in (("up", pr), ("down", 1 - pr)) if 1 - pc <= q]


def test_conformal_reads_held_out_predictions_instead_of_refitting_ones():
    """Rows the deployed fit has seen must be scored with predictions made without them (a walk-forward's)."""
    frame = synthetic(2000)
    rng = np.random.default_rng(1)
    truth = 2.0 * frame["f_a"]
    oos = truth + rng.normal(0, 1.0, len(frame))  # the folds' predictions: off by the noise the model did not see
    labels = frame.assign(target_value=truth, held_out_prediction=oos)
    model = TwiceA(NoConfig()).fit(frame)  # in sample it is exact: residuals 0, coverage 1 whatever qhat
    target = ExplainTarget(model, ValueTask(NoConfig()), frame, labels=labels, target_column="target_value")
    result = run("conformal", target, None, {"alpha": 0.1})
    assert result["predictions"] == "the walk-forward's out-of-sample predictions"
    assert result["qhat"] == pytest.approx(1.645, rel=0.1)  # the folds' errors, not the refit's zero residuals
    assert abs(result["coverage"] - 0.9) < 0.05


def test_the_conformal_quantile_is_the_k_th_smallest_score():
    qhat, level = conformal.conformal_quantile(np.arange(1.0, 101.0), 0.1)  # scores 1..100
    assert qhat == 91.0 and level == pytest.approx(0.91)  # k = ceil(101 * 0.9) = 91


def test_perturbed_rows_keep_their_template_rows_across_prediction_batches(monkeypatch, toy):
    """Row i of x goes into template row i mod n, whatever prediction batch it falls in."""
    from treum.core import explain as explain_module

    monkeypatch.setattr(explain_module, "_PREDICT_CHUNK", 4)
    template = toy.target.background.iloc[:3].assign(tag=[10.0, 11.0, 12.0])  # a column the model does not read
    seen = []
    honest = toy.target.model.predict

    def recording(data):
        seen.append(data["tag"].to_numpy())
        return honest(data)

    monkeypatch.setattr(toy.target.model, "predict", recording)
    x = np.tile(template[toy.target.features].to_numpy(dtype=float), (3, 1))  # 9 rows over 3 batches of 4, 4, 1
    toy.target.predict_frame(x, template)
    assert np.concatenate(seen).tolist() == [10.0, 11.0, 12.0] * 3


def test_conformal_needs_labelled_held_out_rows(toy):
    with pytest.raises(TreumError, match="labelled held-out rows"):
        run("conformal", toy.target)
    qhat, level = conformal.conformal_quantile(np.arange(5.0), 0.1)
    assert math.isinf(qhat) and level > 1  # 5 rows cannot calibrate a 90% interval


# importance ------------------------------------------------------------------------------
def test_importance_is_native_when_the_model_has_it(example, tree_gbm):
    result = run("importance", ExplainTarget(tree_gbm, example.direction, example.background))
    assert result["method"].startswith("native")
    own = tree_gbm.feature_importance()
    assert [r["feature"] for r in result["importances"]] == list(own.index)
    assert [r["importance"] for r in result["importances"]] == pytest.approx(list(own.values))


def test_importance_by_permutation_finds_the_one_feature_read(toy):
    result = run("importance", toy.target)
    assert result["method"].startswith("permutation")
    first, *rest = result["importances"]
    assert first["feature"] == "f_ret_5" and first["importance"] > 0.05 and first["share"] == pytest.approx(1.0)
    assert all(r["importance"] == 0 for r in rest)
    with pytest.raises(TreumError, match="no native importance"):
        run("importance", toy.target, config={"method": "native"})


def test_every_explainer_answers_in_plain_json(example, tree_gbm):
    labels = example.test
    target = ExplainTarget(tree_gbm, example.direction, example.background, labels=labels, target_column="target",
                           kind="probability")
    for name in EXPLAINERS:
        result = run(name, target, example.test.iloc[:3])
        assert result["explainer"] == name and result["model"] == "gbm_direction" and result["output"] == "p_up"
