"""Bars for a request: the latest stored bars of an instrument, or bars sent in the body."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
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


class BarStore:
    """Every instrument of the data sets the deployed models were trained on, in memory."""

    def __init__(self, plugins: Any, datasets: Iterable[str]):
        self.plugins = plugins
        self._by_instrument: dict[str, pd.DataFrame] = {}
        self._loaded: set[str] = set()
        self._datasets: dict[str, list[str]] = {}
        for name in datasets:
            self.add_dataset(name)

    def add_dataset(self, name: str) -> None:
        if name in self._loaded or name not in self.plugins.specs("datasets") or name == "csv":
            return
        panel = self.plugins.dataset(name).load({})
        names = []
        for entity, frame in panel.groupby(level="entity", sort=False):
            self._by_instrument.setdefault(str(entity), frame)
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

    def latest(self, instrument: str, n: int) -> pd.DataFrame:
        if instrument not in self._by_instrument:
            raise RequestError(
                404,
                f"unknown instrument '{instrument}'{did_you_mean(instrument, self._by_instrument)}; "
                f"stored instruments: {', '.join(self.instruments) or 'none'} (or send 'bars' in the request)",
            )
        return self._by_instrument[instrument].iloc[-n:]

    def until(self, instrument: str, as_of: pd.Timestamp, n: int) -> pd.DataFrame:
        """The last ``n`` stored bars of an instrument at or before ``as_of``."""
        frame = self.latest(instrument, len(self._by_instrument.get(instrument, ())) or 1)
        ts = frame.index.get_level_values("timestamp")
        upto = frame[ts <= as_of]
        if len(upto) == 0:
            raise RequestError(422, f"no stored bars of '{instrument}' on or before {as_of.date()}")
        return upto.iloc[-n:]


def panel_from_bars(instrument: str, bars: Sequence[dict], min_bars: int, max_bars: int) -> pd.DataFrame:
    """Validate bars sent in a request and turn them into a one-instrument panel."""
    if len(bars) > max_bars:
        raise RequestError(413, f"{len(bars)} bars sent; at most {max_bars} are accepted (send the most recent ones)")
    if len(bars) < min_bars:
        raise RequestError(
            422, f"{len(bars)} bars sent; at least {min_bars} are needed to compute the features (200-bar average and windows)"
        )
    frame = pd.DataFrame(list(bars))
    ts = pd.to_datetime(frame.pop("timestamp"), utc=True).dt.tz_localize(None)
    frame = frame.dropna(axis=1, how="all")
    frame.index = pd.MultiIndex.from_arrays(
        [pd.DatetimeIndex(ts).as_unit("ns"), np.full(len(frame), instrument, dtype=object)], names=INDEX_NAMES
    )
    try:
        return validate_panel(frame, "request body 'bars'", row_numbers=pd.Series(np.arange(len(frame))))
    except DataValidationError as exc:
        message = re.sub(r"request body 'bars', row (\d+)", r"bars[\1]", str(exc))
        raise RequestError(422, message) from None


def bars_digest(panel: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(panel, index=True).to_numpy().tobytes()).hexdigest()[:16]
