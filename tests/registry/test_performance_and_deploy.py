"""The performance row comes from the caller; forced deploys need a reason and say so; deploys and lists by data set."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select, text

from treum.core.errors import NotFoundError, RegistryError
from treum.registry.schema import ModelDeployment, ModelPerformanceMetric

REGISTRY_SOURCE = Path(__file__).resolve().parents[2] / "treum" / "registry"


def _perf_rows(registry) -> list[ModelPerformanceMetric]:
    with registry.sessions() as s:
        return list(s.execute(select(ModelPerformanceMetric)).scalars())


# performance -------------------------------------------------------------------
def test_the_performance_row_is_the_callers_keyed_by_column(registry, register):
    m = register(performance={"accuracy": 0.61, "f1_score": 0.4, "root_mean_squared_error": 0.02,
                              "total_predictions": 250.0, "sharpe_ratio": float("nan"),
                              "prediction_distribution": {"share_up": 0.55, "share_down": float("inf")}})
    (row,) = registry.performance(m.id)
    assert row.accuracy == pytest.approx(0.61) and row.f1_score == pytest.approx(0.4)
    assert row.root_mean_squared_error == pytest.approx(0.02) and row.total_predictions == 250
    assert row.sharpe_ratio is None and row.auc_roc is None  # NaN is NULL; nothing is derived from other keys
    assert row.prediction_distribution == {"share_up": 0.55, "share_down": None}
    assert row.evaluation_period == "walk_forward"
    assert m.validation_accuracy == pytest.approx(0.61)
    # the metrics themselves are kept whole, whatever their names
    assert registry.get(m.model_name).custom_metrics["walk_forward"]["auc"] == pytest.approx(0.51)


def test_without_accuracy_there_is_no_validation_accuracy(registry, register):
    m = register(metrics={"accuracy": 0.7}, performance={"mean_absolute_error": 0.1})
    assert m.validation_accuracy is None
    assert registry.performance(m.id)[0].mean_absolute_error == pytest.approx(0.1)


def test_no_performance_no_row(registry, register):
    m = register(performance={})
    assert registry.performance(m.id) == [] and m.validation_accuracy is None


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("auc", "'auc' is not a column of model_performance_metrics; did you mean 'auc_roc'?"),
        ("mse_h1", "'mse_h1' is not a column of model_performance_metrics; the closest column is '"),
        ("model_id", "'model_id' is not a column of model_performance_metrics"),
    ],
)
def test_unknown_performance_keys_are_refused_and_nothing_is_registered(registry, register, key, message):
    with pytest.raises(RegistryError, match=re.escape(message)):
        register(performance={"accuracy": 0.5, key: 0.1})
    assert registry.list_models() == [] and _perf_rows(registry) == [] and registry.audit_rows() == []


def test_performance_values_must_fit_their_columns(registry, register):
    with pytest.raises(RegistryError, match="performance 'accuracy' must be a number, got 'high'"):
        register(performance={"accuracy": "high"})
    assert registry.list_models() == []


def test_no_task_name_in_the_registry_source():
    """No registered task's name appears in the registry's source (the TaskSpecs say which names are tasks),
    not even in the migration that renames the specification's metric column away from one."""
    from treum.core.plugins import PluginSettings, create_plugin_registry

    tasks = sorted(create_plugin_registry(PluginSettings()).specs("tasks"))
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, tasks)) + r")\b", re.IGNORECASE)
    offenders = []
    for path in REGISTRY_SOURCE.rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert len(tasks) >= 8 and offenders == []


# forced deploys ------------------------------------------------------------------
@pytest.mark.parametrize("reason", [None, "", "   "])
def test_a_forced_deploy_needs_a_reason(registry, register, reason):
    register(validated=False)
    before = len(registry.audit_rows())
    with pytest.raises(RegistryError, match="needs a reason.*pass --reason"):
        registry.deploy("gbm_direction", "1", force=True, reason=reason)
    assert registry.live("gbm_direction") is None and len(registry.audit_rows()) == before


def test_forced_deploys_are_marked_in_the_history_and_the_audit_log(registry, register):
    register(payload="a")
    register(payload="bb", validated=False)
    registry.deploy("gbm_direction", "1", actor="alice", reason="normal")
    registry.deploy("gbm_direction", "2", actor="bob", reason="hotfix before the open", force=True)
    registry.rollback("gbm_direction", actor="carol", reason="v2 misbehaves")
    hist = registry.history("gbm_direction")
    assert [(h.model_version, h.forced) for h in hist] == [("1", False), ("2", True), ("1", False)]
    details = [r.details for r in reversed(registry.audit_rows()) if r.action in ("model.deploy", "model.rollback")]
    assert [d["forced"] for d in details] == [False, True, False]
    assert details[1]["reason"] == "hotfix before the open"
    assert registry.verify_audit().ok


def test_deployment_rows_default_to_not_forced_in_the_database(registry, register):
    """The server default of migration 0002: rows written without the column (older code) are not forced."""
    m = register()
    with registry.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO model_deployments (model_name, route, model_id, model_version, action, actor, created_at) "
            "VALUES ('gbm_direction', 'default', :id, '1', 'deploy', 'old-cli', CURRENT_TIMESTAMP)"
        ), {"id": m.id.hex if registry.engine.dialect.name == "sqlite" else m.id})
    with registry.sessions() as s:
        (row,) = s.execute(select(ModelDeployment)).scalars()
    assert row.forced is False


# deploy and list by data set ---------------------------------------------------------
def test_deploy_by_data_takes_the_newest_version_on_that_data(registry, register):
    register(data="sp500", payload="a")
    register(data="ftse", payload="bb")
    register(data="sp500", payload="ccc")
    register(data="ftse", payload="dddd")
    assert registry.deploy("gbm_direction", data="sp500").model_version == "3"
    assert registry.deploy("gbm_direction", data="ftse").model_version == "4"
    assert registry.deploy("gbm_direction", "2", data="ftse").model_version == "2"
    with pytest.raises(RegistryError, match="version 1 was not trained on data 'ftse' \\(versions on it: 2, 4\\)"):
        registry.deploy("gbm_direction", "1", data="ftse")
    assert registry.live("gbm_direction").model_version == "2"


def test_deploy_by_unknown_data_lists_the_data_sets_there_are(registry, register):
    register(data="sp500", payload="a")
    register(data="ftse", payload="bb")
    register(data=None, payload="ccc")
    with pytest.raises(NotFoundError, match=r"no version trained on data 'sp50'; did you mean 'sp500'\? "
                                            r"\(data sets: ftse, sp500\)"):
        registry.deploy("gbm_direction", data="sp50")
    assert registry.history("gbm_direction") == []


def test_list_models_filters_by_data(registry, register):
    register(name="gbm_direction", data="sp500", payload="a")
    register(name="gbm_direction", data="ftse", payload="bb")
    register(name="garch", data="sp500", payload="ccc")
    register(name="garch", data=None, payload="dddd")

    def listed(**kw):
        return [(m.model_name, m.model_version) for m in registry.list_models(**kw)]

    assert listed(data="sp500") == [("garch", "1"), ("gbm_direction", "1")]
    assert listed(name="gbm_direction", data="ftse") == [("gbm_direction", "2")]
    assert listed(name="garch", data="ftse") == []
    assert listed(data="sp") == []  # equality, not a prefix or pattern
    assert len(listed()) == 4
