"""Bars for a request: the latest stored bars of an instrument, or bars sent in the body."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from treum.core.data import INDEX_NAMES, validate_panel
from treum.core.errors import DataValidationError, did_you_mean


class RequestError(Exception):
    """A request that cannot be answered as asked: the status and a message that says what to fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Source:
    """The bars a request is answered from: stored ones (located, not copied) or the ones it sent."""

    instrument: str
    last: str  # ISO time of the last bar
    digest: str  # digest of sent bars, or 'stored'
    rows: Callable[[], pd.DataFrame]
    sent: bool


class BarStore:
    """Every instrument of the data sets the deployed models were trained on, in memory."""

    def __init__(self, plugins: Any, datasets: Iterable[str]):
        self.plugins = plugins
        self._by_instrument: dict[str, pd.DataFrame] = {}
        self._loaded: set[str] = set()
        self._datasets: dict[str, list[str]] = {}
        self._times: dict[str, np.ndarray] = {}
        for name in datasets:
            self.add_dataset(name)

    def add_dataset(self, name: str) -> None:
        if name in self._loaded or name not in self.plugins.specs("datasets") or name == "csv":
            return
        if self.plugins.dataset(name).kind != "panel":  # labelled text: no bars to serve from
            return
        panel = self.plugins.dataset(name).load({})
        names = []
        for entity, frame in panel.groupby(level="entity", sort=False):
            if str(entity) not in self._by_instrument:
                self._by_instrument[str(entity)] = frame
                # timestamps as int64 for binary search on the request path
                self._times[str(entity)] = frame.index.get_level_values("timestamp").asi8
            names.append(str(entity))
        self._datasets[name] = names
        self._loaded.add(name)

    def instruments_of(self, dataset: str | None) -> list[str]:
        if not dataset or dataset not in self._datasets:
            return []
        return self._datasets[dataset]

    @property
    def instruments(self) -> list[str]:
        return sorted(self._by_instrument)

    def locate(self, instrument: str, n: int, as_of: pd.Timestamp | None = None) -> tuple[int, int, pd.Timestamp]:
        """(start, stop, last bar time) of the last ``n`` stored bars at or before ``as_of`` (default: the end)."""
        times = self._times.get(instrument)
        if times is None:
            raise RequestError(
                404,
                f"unknown instrument '{instrument}'{did_you_mean(instrument, self._by_instrument)}; "
                f"stored instruments: {', '.join(self.instruments) or 'none'} (or send 'bars' in the request)",
            )
        stop = len(times) if as_of is None else int(np.searchsorted(times, pd.Timestamp(as_of).value, side="right"))
        if stop == 0:
            raise RequestError(422, f"no stored bars of '{instrument}' on or before {pd.Timestamp(as_of).date()}")
        return max(0, stop - n), stop, pd.Timestamp(times[stop - 1])

    def rows(self, instrument: str, start: int, stop: int) -> pd.DataFrame:
        return self._by_instrument[instrument].iloc[start:stop]

    def latest(self, instrument: str, n: int) -> pd.DataFrame:
        start, stop, _ = self.locate(instrument, n)
        return self.rows(instrument, start, stop)


def panel_from_bars(instrument: str, bars: Sequence[dict], min_bars: int, max_bars: int) -> pd.DataFrame:
    """Validate bars sent in a request and turn them into a one-instrument panel."""
    if len(bars) > max_bars:
        raise RequestError(413, f"{len(bars)} bars sent; at most {max_bars} are accepted (send the most recent ones)")
    if len(bars) < min_bars:
        raise RequestError(
            422, f"{len(bars)} bars sent; at least {min_bars} are needed to compute the features (200-bar average and windows)"
        )
    # column by column (a frame from a list of dicts, and a MultiIndex from arrays, cost most of a miss)
    keys = list(dict.fromkeys(k for b in bars for k in b))
    columns = {}
    for k in keys:
        if k == "timestamp":
            continue
        values = [b.get(k) for b in bars]
        if all(x is None for x in values):
            continue
        try:
            columns[k] = np.array(values, dtype=float)  # None is NaN, which validation refuses with its row
        except (TypeError, ValueError):
            columns[k] = values  # not numbers: validation names the bar
    frame = pd.DataFrame(columns)
    ts = pd.DatetimeIndex(pd.to_datetime([b.get("timestamp") for b in bars], utc=True)).tz_localize(None).as_unit("ns")
    n = len(frame)
    if n and bool((np.diff(ts.asi8) > 0).all()):  # unique and sorted: the levels are the values themselves
        frame.index = pd.MultiIndex(levels=[ts, pd.Index([instrument], dtype=object)],
                                    codes=[np.arange(n), np.zeros(n, dtype=np.int64)], names=INDEX_NAMES,
                                    verify_integrity=False)
    else:  # validation names the offending bar
        frame.index = pd.MultiIndex.from_arrays([ts, np.full(n, instrument, dtype=object)], names=INDEX_NAMES)
    try:
        return validate_panel(frame, "request body 'bars'", row_numbers=pd.Series(np.arange(len(frame))))
    except DataValidationError as exc:
        message = re.sub(r"request body 'bars', row (\d+)", r"bars[\1]", str(exc))
        raise RequestError(422, message) from None


def bars_digest(panel: pd.DataFrame) -> str:
    """A cache key of a one-instrument panel: its times, columns and values."""
    h = hashlib.sha256(panel.index.get_level_values(0).asi8.tobytes())
    for col in panel.columns:
        h.update(str(col).encode() + b"\0" + np.ascontiguousarray(panel[col].to_numpy(dtype=float)).tobytes())
    return h.hexdigest()[:16]
