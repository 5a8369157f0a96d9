"""US quarterly macro series that ``statsmodels`` ships (``statsmodels.datasets.macrodata``), 1959Q1-2009Q3.

Three entities in one long panel, each value in the ``close`` column (the column every task
reads), indexed by quarter-end dates:

- ``gdp_growth``: annualised quarter-on-quarter growth of real GDP in percent,
  ``400 * diff(log(realgdp))``, from 1959Q2 (1959Q1 has no previous quarter);
- ``inflation``: the set's ``infl`` (annualised quarterly CPI inflation, percent), from 1959Q2:
  the set gives 0.00 for 1959Q1 because it has no previous quarter either, so that row is dropped;
- ``unemployment``: the set's ``unemp`` (percent), from 1959Q1.

These are rates: growth and inflation are negative in some quarters, so forecast them with
``task.change=plain`` (``experiment=forecast_macro`` does). ``validate_panel`` treats ``close``
as a price and refuses values <= 0, so this loader runs its structural checks (index, order,
duplicates) with the values under another name and checks that they are finite itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from treum.core.data import INDEX_NAMES, bounded, validate_panel
from treum.core.errors import DataValidationError
from treum.core.hookspecs import hookimpl
from treum.core.specs import DatasetSpec

SOURCE = "statsmodels.datasets.macrodata"


def macro_series() -> pd.DataFrame:
    """The three series as a wide frame (quarter-end dates x entities), NaN where a series has no value."""
    from statsmodels.datasets import macrodata

    raw = macrodata.load_pandas().data
    quarters = pd.PeriodIndex.from_fields(year=raw["year"].astype(int), quarter=raw["quarter"].astype(int), freq="Q")
    dates = pd.DatetimeIndex(quarters.end_time.normalize()).as_unit("ns")
    wide = pd.DataFrame(
        {
            "gdp_growth": 400 * np.log(raw["realgdp"].to_numpy(dtype=float)),
            "inflation": raw["infl"].to_numpy(dtype=float),
            "unemployment": raw["unemp"].to_numpy(dtype=float),
        },
        index=dates,
    )
    wide["gdp_growth"] = wide["gdp_growth"].diff()
    wide.iloc[0, wide.columns.get_loc("inflation")] = np.nan  # the set's 0.00 placeholder, see the module doc
    return wide


def load_macro(cfg: Any) -> pd.DataFrame:
    """The panel of the three series, bounded by the config's ``start``/``end``."""
    wide = macro_series()
    long = wide.stack(future_stack=True).dropna().rename("close").to_frame()
    long.index = pd.MultiIndex.from_arrays(
        [pd.DatetimeIndex(long.index.get_level_values(0)).as_unit("ns"), long.index.get_level_values(1).astype(object)],
        names=INDEX_NAMES,
    )
    panel = bounded(long.sort_index(), cfg)
    values = panel["close"].to_numpy(dtype=float)
    if not np.isfinite(values).all():
        i = int(np.flatnonzero(~np.isfinite(values))[0])
        raise DataValidationError(f"{SOURCE}: row {panel.index[i]}, column 'close': value {values[i]} is not finite")
    checked = validate_panel(panel.rename(columns={"close": "value"}), SOURCE, required=("value",))
    return checked.rename(columns={"value": "close"})


@hookimpl
def treum_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            "macro",
            "US quarterly real GDP growth, inflation and unemployment (percent), 1959Q1-2009Q3; rates: use "
            "task.change=plain",
            load_macro,
            SOURCE,
            frequency="1q",
        )
    ]
