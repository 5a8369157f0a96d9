"""The portfolio task's advice, beyond its predictions: target weights as of a date, their risk, rebalancing.

Plain functions of a model, its task and a panel of prices, and the two places the inputs come
from: a running service (``ServiceInputs``: its deployed model and stored bars) and the CLI
(``HostInputs``: the registry and the data set). ``treum.plugins.tasks.portfolio_service``
serves them over HTTP and as ``treum portfolio``; both answer with ``answer_weights``,
``answer_risk`` and ``answer_rebalance``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from treum.core.errors import TreumError, UnavailableError
from treum.core.weights import wide_closes

log = logging.getLogger(__name__)

TASK = "portfolio"
FACTORS = "ff3"  # the data set of the Fama-French factors (treum.plugins.datasets.french_data)
HISTORY_BARS = 400  # bars behind a model's answer from the CLI: serve.context_bars' default, as the service reads
RISK_BARS = 20_000  # bars behind the risk figures: all (the factor model needs the months the factors cover)
REBALANCE_RISK_BARS = 1001  # bars behind the risk change of a rebalance: 1,000 daily returns
MAX_VALUE = 1e15  # the largest market value a holding may have (a sum of such stays finite)


def target_weights(model: Any, panel: pd.DataFrame) -> tuple[pd.Series, float, pd.Timestamp]:
    """(weights by entity, share held in the benchmark, date of the rebalance they come from) as of the panel's end."""
    last = panel.index.get_level_values("timestamp").max()
    try:
        pred = model.predict_from(panel, last)
    except TreumError:
        raise
    except (ValueError, KeyError) as exc:  # the model's word on its input: the request's 422
        raise TreumError(f"{model.spec.name} cannot answer as of {last.date()}: {exc}") from None
    except Exception as exc:  # its own fault: the details stay in the server log
        log.warning("%s failed as of %s: %s: %s", model.spec.name, last.date(), type(exc).__name__, exc)
        raise UnavailableError(f"{model.spec.name} failed to answer as of {last.date()} ({type(exc).__name__}; "
                               "details in the server log)") from None
    rows = pred.xs(last, level="timestamp")
    weights = rows["weight"].astype(float)
    if not np.isfinite(weights.to_numpy()).all():
        raise TreumError(f"{model.spec.name} has no target portfolio as of {last.date()}: too few bars before it "
                         "for its estimation window; ask for a later as_of")
    share = float(rows["benchmark_weight"].iloc[0]) if "benchmark_weight" in rows.columns else 0.0
    dates = model.require_task().rebalance_dates(panel.index.get_level_values("timestamp"))
    return weights, share, pd.Timestamp(dates[dates <= last][-1])


def check_weights(weights: Mapping[str, float], known: list[str]) -> pd.Series:
    """Given weights as a Series, checked as the risk model checks them (``treum.core.risk.validate_weights``);
    a TreumError (422) names an unknown instrument, a negative weight or a bad sum."""
    from treum.core.risk import validate_weights

    unknown = [k for k in weights if k not in known]
    if unknown:
        raise TreumError(f"unknown instrument(s) {unknown[:5]}; the data holds {', '.join(known)}")
    try:
        return validate_weights(pd.Series(dict(weights), dtype=float), known, "data")
    except ValueError as exc:
        raise TreumError(str(exc)) from None


def risk_of(panel: pd.DataFrame, weights: pd.Series, factors: pd.DataFrame | None, levels: list[float],
            horizons: list[int], window: int, seed: int = 0) -> dict[str, Any]:
    from treum.core.risk import portfolio_risk

    held = weights[weights > 0]
    try:
        return portfolio_risk(wide_closes(panel)[list(held.index)], held, factors, tuple(levels), tuple(horizons),
                              window=window, seed=seed)
    except ValueError as exc:
        raise TreumError(str(exc)) from None


def _known_holdings(holdings: Mapping[str, float], known: list[str]) -> None:
    unknown = [k for k in holdings if k not in known]
    if unknown:
        raise TreumError(f"unknown instrument(s) in holdings {unknown[:5]}; the portfolio holds {', '.join(known)}")


def rebalance_plan(task: Any, panel: pd.DataFrame, holdings: Mapping[str, float], cash: float, target: pd.Series,
                   cost_bps: float | None = None, risk_window: int = 1000) -> dict[str, Any]:
    """From ``holdings`` (market values) and ``cash`` to ``target`` weights through the task's risk layer.

    The target passes ``task.constrain`` with the current weights as holdings, so a turnover cap
    limits the trade (what it leaves undone stays where it is). The cost is ``cost_bps`` (the
    task's by default) on the traded value; the risk of the current and the new portfolio is
    the historical and filtered historical VaR/ES at 1 day over the last ``risk_window`` bars.
    """
    prices = wide_closes(panel)
    known = list(prices.columns)
    unknown = [k for k in holdings if k not in known]
    if unknown:
        raise TreumError(f"unknown instrument(s) in holdings {unknown[:5]}; the data holds {', '.join(known)}")
    values = pd.Series(dict(holdings), dtype=float).reindex(known, fill_value=0.0)
    if not np.isfinite(values.to_numpy()).all() or (values < 0).any() or not np.isfinite(cash) or cash < 0:
        raise TreumError("holdings and cash are market values: finite and non-negative (long-only)")
    if (values > MAX_VALUE).any() or cash > MAX_VALUE:
        raise TreumError(f"a holding or the cash is above {MAX_VALUE:g}; give market values in a smaller unit")
    total = float(values.sum() + cash)
    if total <= 0:
        raise TreumError("the portfolio is empty: give holdings or cash with a positive value")
    current = values / total
    wanted = task.constrain(target.reindex(known, fill_value=0.0), current if current.sum() > 0 else None)
    wanted = wanted.reindex(known, fill_value=0.0)
    change = wanted - current
    bps = task.config.cost_bps if cost_bps is None else float(cost_bps)
    last = prices.ffill().iloc[-1]
    trades = [{"instrument": k, "side": "buy" if d > 0 else "sell", "value": round(float(d * total), 2),
               "shares": round(float(d * total / last[k]), 4) if last[k] > 0 else None,
               "weight_from": float(current[k]), "weight_to": float(wanted[k])}
              for k, d in change.items() if abs(d) * total >= 0.005]
    traded = float(change.abs().sum() * total)
    out: dict[str, Any] = {
        "portfolio_value": total, "cash_after": float((1 - wanted.sum()) * total),
        "current_weights": {k: float(v) for k, v in current.items() if v > 0},
        "target_weights": {k: float(v) for k, v in wanted.items() if v > 0},
        "trades": sorted(trades, key=lambda t: -abs(t["value"])), "traded_value": traded,
        "cost_bps": bps, "cost": traded * bps / 1e4,
    }
    out["risk"] = None
    if current.sum() > 0:
        try:
            now = _var_es(risk_of(panel, current / current.sum(), None, [0.95, 0.99], [1], risk_window))
            new = _var_es(risk_of(panel, wanted / wanted.sum(), None, [0.95, 0.99], [1], risk_window))
        except TreumError as exc:  # too little history for the risk figures: the trades stand without them
            out["risk_note"] = f"no risk figures: {exc}"
        else:
            out["risk"] = {"current": now, "target": new, "change": {k: new[k] - v for k, v in now.items()}}
    return out


def _var_es(risk: Mapping[str, Any]) -> dict[str, float]:
    """The flat 1-day figures of a risk answer: {"historical_var_99_h1": ...} for the comparison of two portfolios."""
    flat: dict[str, float] = {}
    for method in ("historical", "filtered_historical"):
        for key, value in (risk.get(method) or {}).items():
            if isinstance(value, (int, float)) and key.endswith("_h1") and key.startswith(("var_", "es_")):
                flat[f"{method}_{key}"] = float(value)
    return flat


# where the inputs come from: the running service, or the registry and the data set -----------------
class ServiceInputs:
    """The deployed portfolio model and stored bars of a running service (``request.app.state``)."""

    def __init__(self, service: Any):
        if service is None:
            raise UnavailableError("the service is starting; retry in a moment")
        self.service = service

    def model(self) -> tuple[Any, Any, str, tuple[str, ...], str]:
        """(model, task, features, entities, label) of the deployed portfolio model; 503 if none."""
        live = self.service.model_for_task(TASK)
        if live.model is None or live.task is None:
            raise UnavailableError(f"the deployed {live.label} cannot be loaded: {live.error}")
        return live.model, live.task, live.features, live.entities, live.label

    data: pd.DataFrame | None = None  # a data set named in the request (read, never added to the stored bars)

    def panel(self, entities: list[str], as_of: date | None, features: str | None = None,
              bars: int | None = None) -> pd.DataFrame:
        """The bars of ``entities`` up to ``as_of``: the last ``bars`` (default serve.context_bars, as
        ``/predict`` reads), from the named data set or the service's stored bars."""
        n = bars or int(self.service.settings.context_bars)
        stamp = pd.Timestamp(as_of) if as_of is not None else None
        if self.data is not None:
            panel = _last_bars(self.data[self.data.index.get_level_values("entity").isin(entities)], stamp, n)
        else:
            store = self.service.bars
            parts = []
            for entity in entities:
                start, stop, _ = store.locate(entity, n, stamp)
                parts.append(store.rows(entity, start, stop))
            panel = pd.concat(parts).sort_index()
        if features:
            panel = panel.join(self.service.plugins.feature_set(features).compute(panel, {}))
        return panel

    def task_or_default(self) -> tuple[Any, tuple[str, ...]]:
        """(task, entities) of the deployed portfolio model, or the task with its default config and none."""
        try:
            _, task, _, entities, _ = self.model()
            return task, entities
        except Exception:  # nothing deployed (503) or several (409): the defaults hold
            from treum.core.task import build_task

            return build_task(self.service.plugins.task(TASK)), ()

    def instruments(self, data: str) -> list[str]:
        self.data = _dataset(self.service.plugins, data)
        return sorted(map(str, self.data.index.get_level_values("entity").unique()))

    def factors(self) -> pd.DataFrame | None:
        return _factors(self.service.plugins)


_LOADED: dict[tuple[int, str], pd.DataFrame] = {}
_LOADED_LOCK = threading.Lock()


def _dataset(plugins: Any, name: str) -> pd.DataFrame:
    """A registered data set with closes, loaded once per process (requests only read it)."""
    key = (id(plugins), name)
    with _LOADED_LOCK:
        if key not in _LOADED:
            spec = plugins.dataset(name)  # an unknown name: a 404 naming the registered ones
            if len(_LOADED) >= 8:
                _LOADED.pop(next(iter(_LOADED)))
            _LOADED[key] = spec.load({})
        panel = _LOADED[key]
    if "close" not in panel.columns:
        raise TreumError(f"data set '{name}' has no close prices ({', '.join(map(str, panel.columns))}); "
                         "name a data set of prices, such as sp500_stocks")
    return panel


def _last_bars(panel: pd.DataFrame, end: pd.Timestamp | None, bars: int) -> pd.DataFrame:
    """The panel's last ``bars`` dates up to ``end``; an error when it has none by then."""
    if end is not None:
        panel = panel[panel.index.get_level_values("timestamp") <= end]
    if panel.empty:
        raise TreumError(f"no bars on or before {end.date() if end is not None else 'the end'}")
    ts = pd.DatetimeIndex(panel.index.get_level_values("timestamp").unique()).sort_values()
    return panel[panel.index.get_level_values("timestamp") >= ts[max(0, len(ts) - bars)]]


def _factors(plugins: Any) -> pd.DataFrame | None:
    """The monthly Fama-French factors (percent) as a frame by month end (loaded once), or None when the data
    set is switched off."""
    if FACTORS not in plugins.specs("datasets"):
        return None
    key = (id(plugins), FACTORS)
    with _LOADED_LOCK:
        if key not in _LOADED:
            _LOADED[key] = plugins.dataset(FACTORS).load({})
        return _LOADED[key].droplevel("entity")


def _portfolio(inputs: Any, weights: Mapping[str, float] | None, data: str | None,
               as_of: date | None) -> tuple[pd.DataFrame, pd.Series, dict[str, Any]]:
    """(price panel, weights, where the weights came from): given weights on ``data`` or the deployed model's."""
    if weights is None:
        model, _task, features, entities, label = inputs.model()
        w, share, rebalanced = target_weights(model, inputs.panel(list(entities), as_of, features))
        if share > 0:
            raise TreumError(f"{label} holds {share:.0%} in its benchmark index, which this route cannot price; "
                             "send weights")
        held = list(w[w > 0].index)
        return inputs.panel(held, as_of, bars=RISK_BARS), w, {"kind": "model", "model": label,
                                                               "rebalanced_on": str(rebalanced.date())}
    if data is None:
        try:
            _, _, _, entities, label = inputs.model()
        except Exception as exc:  # nothing deployed (the service's 503): then the weights need their data set
            why = getattr(exc, "message", str(exc))
            raise TreumError(f"name the data set holding the instruments (data, e.g. sp500_stocks): {why}") from None
        known = list(entities)
    else:
        known = inputs.instruments(data)
    w = check_weights(weights, known)
    return inputs.panel(list(w[w > 0].index), as_of, bars=RISK_BARS), w, {"kind": "given"}


class HostInputs:
    """The deployed portfolio model from the registry and its data set (``treum portfolio ...``)."""

    def __init__(self, host: Any, model_name: str | None):
        self.host = host
        self.model_name = model_name
        self._deployed: Any = None
        self.data: pd.DataFrame | None = None

    def model(self) -> tuple[Any, Any, str, tuple[str, ...], str]:
        if self._deployed is None:
            self._deployed = self.host.deployed(TASK, self.model_name)
        d = self._deployed
        return d.model, d.task, d.features, d.entities, f"{d.name} v{d.version}"

    def task_or_default(self) -> tuple[Any, tuple[str, ...]]:
        """(task, entities) of the deployed portfolio model, or the task's defaults and none when none is."""
        try:
            _, task, _, entities, _ = self.model()
            return task, entities
        except TreumError:
            from treum.core.task import build_task

            return build_task(self.host.plugins.task(TASK)), ()

    def panel(self, entities: list[str], as_of: date | None, features: str | None = None,
              bars: int = HISTORY_BARS) -> pd.DataFrame:
        if self.data is None:
            if self._deployed is None or not self._deployed.data:
                raise TreumError("name the data set with --data")
            self.data = _dataset(self.host.plugins, self._deployed.data)
        panel = _last_bars(self.data[self.data.index.get_level_values("entity").isin(entities)],
                           pd.Timestamp(as_of) if as_of is not None else None, bars)
        if features:
            panel = panel.join(self.host.plugins.feature_set(features).compute(panel, {}))
        return panel

    def instruments(self, data: str) -> list[str]:
        self.data = _dataset(self.host.plugins, data)
        return sorted(map(str, self.data.index.get_level_values("entity").unique()))

    def factors(self) -> pd.DataFrame | None:
        return _factors(self.host.plugins)


# the answers, for the routes and the CLI alike -------------------------------------------
def answer_weights(inputs: Any, as_of: date | None) -> dict[str, Any]:
    """The deployed model's whole target portfolio as of a date."""
    model, _task, features, entities, label = inputs.model()
    panel = inputs.panel(list(entities), as_of, features)
    weights, share, rebalanced = target_weights(model, panel)
    return {"model": label, "as_of": str(panel.index.get_level_values("timestamp").max().date()),
            "rebalanced_on": str(rebalanced.date()), "benchmark_weight": share,
            "weights": {k: float(v) for k, v in weights.sort_values(ascending=False).items()}}


def answer_risk(inputs: Any, weights: Mapping[str, float] | None, data: str | None, as_of: date | None,
                levels: list[float], horizons: list[int], window: int, factors: bool = True) -> dict[str, Any]:
    """VaR and ES of given weights (on ``data``) or of the deployed model's targets."""
    panel, w, source = _portfolio(inputs, weights, data, as_of)
    risk = risk_of(panel, w, inputs.factors() if factors else None, levels, horizons, window)
    return {"weights": {k: float(v) for k, v in w.items() if v > 0}, "source": source, **risk}


def answer_rebalance(inputs: Any, holdings: Mapping[str, float], cash: float, target: Mapping[str, float] | None,
                     data: str | None, as_of: date | None, cost_bps: float | None) -> dict[str, Any]:
    """Trades from the holdings to the targets (given, or the deployed model's), their cost and the risk change.

    With a given target the deployed model's task config holds (its caps and costs), or the task's
    defaults when no portfolio model is deployed.
    """
    if target is None:
        model, task, features, entities, label = inputs.model()
        panel = inputs.panel(list(entities), as_of, features)
        wanted, share, rebalanced = target_weights(model, panel)
        if share > 0:
            raise TreumError(f"{label} holds its benchmark index, which cannot be traded here; give a target")
        source = {"kind": "model", "model": label, "rebalanced_on": str(rebalanced.date())}
    else:
        task, entities = inputs.task_or_default()
        known = inputs.instruments(data) if data else list(entities)
        if not known:
            raise TreumError("name the data set holding the instruments (data, e.g. sp500_stocks): no portfolio "
                             "model is deployed")
        wanted = check_weights(target, known).reindex(known, fill_value=0.0)
        panel, source = inputs.panel(known, as_of), {"kind": "given"}
    _known_holdings(holdings, list(wanted.index))
    prices = inputs.panel(list(wanted.index), as_of, bars=REBALANCE_RISK_BARS)
    return {"as_of": str(panel.index.get_level_values("timestamp").max().date()), "source": source,
            **rebalance_plan(task, prices, holdings, cash, wanted, cost_bps)}
