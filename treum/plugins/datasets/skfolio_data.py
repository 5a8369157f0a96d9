"""Daily prices that ``skfolio`` ships: 20 US large caps and the S&P 500 index, 1990-2022.

Two traps, measured: prices are rounded to 3 decimals and 1990s quotes moved in
1/8 and 1/16 dollar ticks, so many stock-days have a return of exactly zero
(direction targets treat those as ties; see ``treum.core.targets``); and the 20
stocks are today's survivors, so portfolio results on them are biased upward.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from treum.core.data import bounded, validate_panel, wide_to_panel
from treum.core.hookspecs import hookimpl
from treum.core.specs import DatasetSpec


def load_stocks(cfg: Any) -> pd.DataFrame:
    """The 20 stocks' closes, and on every row the S&P 500 index's close that day (column ``benchmark``)."""
    from skfolio.datasets import load_sp500_dataset, load_sp500_index

    prices = load_sp500_dataset()
    panel = wide_to_panel(prices)
    index = load_sp500_index()["SP500"].reindex(prices.index)  # the same trading days in skfolio's files
    panel["benchmark"] = index.reindex(panel.index.get_level_values("timestamp")).to_numpy(dtype=float)
    return validate_panel(bounded(panel, cfg), "skfolio.datasets.load_sp500_dataset")


def load_index(cfg: Any) -> pd.DataFrame:
    from skfolio.datasets import load_sp500_index

    prices = load_sp500_index()  # entity "SP500", distinct from arch's "SPX" (a different source and span)
    return validate_panel(bounded(wide_to_panel(prices), cfg), "skfolio.datasets.load_sp500_index")


@hookimpl
def treum_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            "sp500_stocks",
            "20 US large caps, daily adjusted close, 1990-2022 (survivors: biased upward)",
            load_stocks,
            "skfolio.datasets",
            caveat="survivorship: these are 20 of today's large caps, picked knowing they survived and grew to "
                   "2022; every portfolio and cross-section figure on them is biased upward",
        ),
        DatasetSpec("sp500_index", "S&P 500 index daily close, 1990-2022", load_index, "skfolio.datasets"),
    ]
