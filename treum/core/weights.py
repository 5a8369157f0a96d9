"""Target portfolio weights: rebalance calendars, the risk layer's caps, and the models that decide weights.

A weights model answers, for every row (timestamp, entity), the weight that entity
has in the portfolio's target as of the latest rebalance date at or before the
timestamp. A rebalance date is the first bar of a calendar period (week, month,
quarter) in the data: knowing it needs no later bar, so truncating the data never
changes an earlier decision. The decision on date t uses the bars up to and
including t and trades at t's close; the backtest (the portfolio task's scoring)
applies it to the returns from t to t+1 onwards.

The risk layer (the specification's ``risk_model.apply_constraints``) turns raw
scores into weights that are long-only, fully invested and within the caps:
``cap_weights`` (a maximum weight per entity) and ``limit_turnover`` (a maximum
traded value per rebalance, as a fraction of the portfolio). The portfolio task's
backtest applies both to every model's targets with its configured caps; models apply
the weight cap through ``Task.constrain``, so what they predict already holds it (the
turnover cap needs the holdings actually held, which only the backtest knows).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from treum.core.errors import TreumError
from treum.core.model import Model

PERIODS = {"daily": None, "weekly": "W", "monthly": "M", "quarterly": "Q"}


def rebalance_dates(timestamps: pd.Index, every: str) -> pd.DatetimeIndex:
    """The first bar of each period (``daily``, ``weekly``, ``monthly``, ``quarterly``) among ``timestamps``.

    The first bar of the data is one (a portfolio starts there). Whether a bar opens a
    period depends on the bar before it only, never on a later one.
    """
    if every not in PERIODS:
        raise ValueError(f"rebalance must be one of {list(PERIODS)}, got {every!r}")
    ts = pd.DatetimeIndex(np.unique(np.asarray(timestamps, dtype="datetime64[ns]")))
    if PERIODS[every] is None or len(ts) == 0:
        return ts
    period = ts.to_period(PERIODS[every]).asi8
    new = np.r_[True, period[1:] != period[:-1]]
    return ts[new]


def cap_weights(w: pd.Series, cap: float | None) -> pd.Series:
    """Long-only, fully invested weights with no entity above ``cap``.

    Negative and missing scores become 0; an all-zero vector becomes equal weights. Weight
    above the cap is handed to the uncapped entities in proportion to their weights (or
    equally, if they have none): the closest capped portfolio that keeps their proportions.
    """
    v = np.clip(np.nan_to_num(w.to_numpy(dtype=float), nan=0.0, posinf=0.0, neginf=0.0), 0.0, None)
    n = len(v)
    if n == 0:
        return w.astype(float)
    v = v / v.sum() if v.sum() > 0 else np.full(n, 1.0 / n)
    if cap is not None:
        if cap * n < 1 - 1e-12:
            raise TreumError(f"max_weight {cap} over {n} entities cannot hold a fully invested portfolio "
                             f"({n} x {cap} < 1); raise task.max_weight to at least {1 / n:.4f}")
        for _ in range(n):
            over = v > cap + 1e-12
            if not over.any():
                break
            excess = float((v[over] - cap).sum())
            v[over] = cap
            free = v < cap - 1e-12
            base = v[free].sum()
            v[free] += excess * (v[free] / base if base > 0 else np.full(free.sum(), 1.0 / free.sum()))
        v = np.minimum(v, cap)
        v = v / v.sum()
    return pd.Series(v, index=w.index, dtype=float)


def limit_turnover(target: pd.Series, holdings: pd.Series | None, cap: float | None) -> pd.Series:
    """Move from ``holdings`` towards ``target`` by at most ``cap`` of traded value (sum of |changes|).

    The trade is scaled down along the straight line to the target, so the result stays long-only
    and fully invested; no limit applies to the first build from cash (``holdings`` None or empty).
    """
    if cap is None or holdings is None or float(holdings.abs().sum()) == 0:
        return target
    names = target.index.union(holdings.index)
    t = target.reindex(names, fill_value=0.0)
    h = holdings.reindex(names, fill_value=0.0)
    traded = float((t - h).abs().sum())
    if traded <= cap:
        return target
    out = h + (t - h) * (cap / traded)
    return out.reindex(target.index.union(out.index[out > 0]), fill_value=0.0)


def wide_closes(data: pd.DataFrame) -> pd.DataFrame:
    """The ``close`` column as a (timestamps x entities) frame."""
    return data["close"].astype(float).unstack("entity").sort_index()


def weights_to_rows(targets: Mapping[pd.Timestamp, pd.Series], index: pd.MultiIndex,
                    extra: Mapping[pd.Timestamp, float] | None = None) -> pd.DataFrame:
    """Rows of ``index`` with the target ``weight`` of the latest rebalance at or before their timestamp.

    An entity missing from a target has weight 0; rows before the first target are NaN.
    ``extra`` (date -> share held outside the entities, such as an index fund) becomes the
    column ``benchmark_weight``.
    """
    ts = index.get_level_values("timestamp")
    ent = index.get_level_values("entity")
    entities = pd.Index(pd.unique(ent))
    out = pd.DataFrame({"weight": np.full(len(index), np.nan)}, index=index)
    if not targets:
        if extra is not None:
            out["benchmark_weight"] = np.nan
        return out
    dates = pd.DatetimeIndex(sorted(targets))
    wide = pd.DataFrame([targets[d].reindex(entities).fillna(0.0).to_numpy(dtype=float) for d in dates],
                        index=dates, columns=entities)
    pos = dates.searchsorted(ts, side="right") - 1
    ok = pos >= 0
    col = entities.get_indexer(ent)
    values = np.full(len(index), np.nan)
    values[ok] = wide.to_numpy()[pos[ok], col[ok]]
    out["weight"] = values
    if extra is not None:
        b = np.array([float(extra.get(d, 0.0)) for d in dates])
        bw = np.full(len(index), np.nan)
        bw[ok] = b[pos[ok]]
        out["benchmark_weight"] = bw
    return out


class WeightsModel(Model):
    """A model that decides target weights on the task's rebalance dates, from the bars up to each date.

    Subclasses implement ``decide(history, date, holdings)``: ``history`` is the wide frame
    of simple daily returns up to and including ``date`` (the last ``lookback`` rows; the
    entities priced on ``date`` only), ``holdings`` the weights held just before the trade
    (the previous target drifted with prices; None before the first), and it returns raw
    weights (any non-negative scores; the task's risk layer makes them a capped, fully
    invested portfolio) or None when it cannot decide yet (too little history). ``lookback``
    (bars) and ``min_history`` (the fewest return rows ``decide`` accepts) come from the config
    when it has them.

    ``predict`` decides at every rebalance date of its data; ``predict_from(data, start)``
    only from the latest rebalance at or before ``start`` (the walk-forward's test block),
    with holdings drifting from there. The model applies the task's weight cap; the turnover cap is applied
    by whoever knows the real holdings (the backtest, ``/portfolio/rebalance``). A model whose
    decisions read ``holdings`` (the RL agent) overrides ``predict_from`` to replay its path
    from the data's start, so that its answers from ``start`` are ``predict``'s.
    """

    def lookback(self) -> int:
        return int(getattr(self.config, "lookback", 252))

    def min_history(self) -> int:
        return int(getattr(self.config, "min_history", min(60, self.lookback())))

    def decide(self, history: pd.DataFrame, date: pd.Timestamp, holdings: pd.Series | None) -> pd.Series | None:
        raise NotImplementedError

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        return self.predict_from(data, None)

    def predict_last(self, data: pd.DataFrame) -> pd.Series:
        last = data.index.get_level_values("timestamp").max()
        return self.predict_from(data, last).iloc[-1]

    def predict_from(self, data: pd.DataFrame, start: Any) -> pd.DataFrame:
        task = self.require_task()
        closes = wide_closes(data)
        returns = closes.pct_change(fill_method=None)
        dates = task.rebalance_dates(closes.index)
        if start is not None and len(dates):
            first = max(int(dates.searchsorted(pd.Timestamp(start), side="right")) - 1, 0)
            dates = dates[first:]
        targets: dict[pd.Timestamp, pd.Series] = {}
        extra: dict[pd.Timestamp, float] = {}
        held: pd.Series | None = None
        held_at: pd.Timestamp | None = None
        rows = closes.index
        for date in dates:
            priced = closes.columns[closes.loc[date].notna()]
            if held is not None:
                held = drift(held, returns.loc[(rows > held_at) & (rows <= date)])
            end = rows.get_loc(date)
            history = returns.iloc[max(1, end + 1 - self.lookback()):end + 1][priced]
            usable = history.columns[history.notna().sum() >= self.min_history()]
            if len(usable) == 0:
                continue
            history = history[usable]
            raw = self.decide(history, date, None if held is None else held.reindex(usable, fill_value=0.0))
            if raw is None:
                continue
            # a share held outside the entities (the index baseline's fund): the entities get the rest. The
            # weight cap only: the turnover cap needs the holdings actually held, which only the backtest
            # (and /portfolio/rebalance) know, so no decision depends on where predict started
            share = float(raw.attrs.get("benchmark_weight", 0.0))
            weights = task.constrain(raw.reindex(usable).fillna(0.0)) * (1.0 - share) if share < 1 \
                else pd.Series(0.0, index=usable)
            targets[date], extra[date] = weights, share
            held, held_at = weights, date
        out = weights_to_rows(targets, data.index, extra if any(extra.values()) else None)
        return out


def drift(weights: pd.Series, returns: pd.DataFrame) -> pd.Series:
    """Weights after the given rows of simple returns, renormalised to sum to one (missing returns: 0)."""
    if returns.empty or weights.sum() <= 0:
        return weights
    growth = (1.0 + returns.reindex(columns=weights.index).fillna(0.0)).prod()
    grown = weights * growth
    total = float(grown.sum())
    return grown / total if total > 0 else weights
