"""The contract every registered model keeps, parametrised over the plugin registry.

The checks live in ``treum.commands.contract`` (``treum plugins check NAME`` runs
the same ones on an outside plugin); data, labels and range checks come from each
model's task spec, so third-party models of third-party tasks are covered too.
"""

from __future__ import annotations

import numpy as np
import pytest

from treum.commands import contract
from treum.core.plugins import PluginSettings, create_plugin_registry

_REG = create_plugin_registry(PluginSettings())
MODELS = sorted(_REG.specs("models"))
CHECKS = sorted(contract.CHECKS)


@pytest.fixture(scope="module", params=MODELS)
def fitted(request):
    return contract.fit_example(_REG, request.param)


@pytest.mark.parametrize("check", CHECKS)
def test_contract(fitted, check):
    contract.CHECKS[check](fitted)


def test_the_range_check_catches_bad_predictions(fitted):
    task = fitted.task
    col = task.prediction_columns()[0]
    broken = fitted.pred.copy()
    broken.iloc[0, broken.columns.get_loc(col)] = np.nan
    assert any(col in p for p in task.check_predictions(broken))
    lo, hi = task.column_ranges().get(col, (-np.inf, np.inf))
    if np.isfinite(hi) or np.isfinite(lo):
        broken.iloc[0, broken.columns.get_loc(col)] = hi + 1 if np.isfinite(hi) else lo - 1
        assert any("outside" in p for p in task.check_predictions(broken))


def test_multi_asset_is_checked_for_every_model_that_declares_it():
    declared = {m for m in MODELS if "multi_asset" in _REG.model(m).capabilities}
    assert {"momentum_sign", "drawdown_logit", "garch"} <= declared  # third-party and built-in alike
    for task in {_REG.model(m).task for m in declared}:  # a panel beside the example, or an example that is one
        ex = _REG.task(task).example
        if not ex.panel:
            data = _REG.dataset(ex.data).load(ex.load_config())
            assert data.index.get_level_values("entity").nunique() > 1, f"task {task}: no multi-entity example"


def test_a_look_ahead_model_is_caught():
    """A model that peeks at the next bar's close must fail the truncation check."""
    fitted = contract.fit_example(_REG, "logit_direction")
    honest = fitted.model.predict

    def peeking(data):
        out = honest(data)
        nxt = data["close"].groupby(level="entity").shift(-1)
        return out.assign(p_up=np.where(nxt.notna(), (nxt > data["close"]).astype(float) * 0.98 + 0.01, out["p_up"]))

    fitted.model.predict = peeking
    fitted.pred = peeking(fitted.frame).loc[fitted.pred.index]
    with pytest.raises(AssertionError, match="look-ahead"):
        contract.check_no_look_ahead(fitted)
