"""The model base class: fit returns the model and sets fitted however a subclass defines fit."""

from __future__ import annotations

import pandas as pd

from treum.core.model import Model


class _Mixin:
    def fit(self, data, valid=None, epochs=1):
        self.epochs_ = epochs
        return "whatever the mixin returns"


class FromMixin(_Mixin, Model):
    pass


class WithOptions(Model):
    def fit(self, data, valid=None, epochs=1):
        self.epochs_ = epochs


class CallsSuper(WithOptions):
    def fit(self, data, valid=None, epochs=1):
        super().fit(data, valid, epochs=epochs)
        self.extra_ = True


def test_fit_returns_the_fitted_model_for_every_shape_of_fit():
    data = pd.DataFrame({"x": [1.0]})
    for cls in (FromMixin, WithOptions, CallsSuper):
        model = cls(config=None)
        assert not model.fitted
        assert model.fit(data, None, epochs=3) is model and model.fitted and model.epochs_ == 3
    assert CallsSuper(config=None).fit(data).extra_
