"""Daily market data that the ``arch`` package ships: S&P 500, NASDAQ, VIX, WTI."""

from __future__ import annotations

from typing import Any

import pandas as pd

from treum.core.data import bounded, make_panel, validate_panel
from treum.core.hookspecs import hookimpl
from treum.core.specs import DatasetSpec


def _ohlcv(module: str, entity: str):
    def load(cfg: Any) -> pd.DataFrame:
        import importlib

        raw = importlib.import_module(f"arch.data.{module}").load()
        panel = make_panel(raw[["Open", "High", "Low", "Close", "Volume"]], entity)
        return validate_panel(bounded(panel, cfg), f"arch.data.{module}", ("open", "high", "low", "close"))

    return load


def _single(module: str, column: str, entity: str):
    def load(cfg: Any) -> pd.DataFrame:
        import importlib

        raw = importlib.import_module(f"arch.data.{module}").load()[[column]].dropna()
        raw.columns = ["close"]
        return validate_panel(bounded(make_panel(raw, entity), cfg), f"arch.data.{module}")

    return load


@hookimpl
def treum_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec("sp500", "S&P 500 index daily OHLCV, 1999-2018", _ohlcv("sp500", "SPX"), "arch.data.sp500"),
        DatasetSpec("nasdaq", "NASDAQ Composite daily OHLCV, 1999-2018", _ohlcv("nasdaq", "IXIC"), "arch.data.nasdaq"),
        DatasetSpec("vix", "CBOE VIX daily close, 2014-2019", _single("vix", "vix", "VIX"), "arch.data.vix"),
        DatasetSpec("wti", "WTI crude oil spot daily close, 1986-2019", _single("wti", "DCOILWTICO", "WTI"), "arch.data.wti"),
    ]
