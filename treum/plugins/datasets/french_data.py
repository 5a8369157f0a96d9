"""The Fama-French three factors that ``arch`` ships: monthly, in percent, 1926-07 to 2018-11.

One entity, ``FF3``, with the columns ``mkt_rf``, ``smb``, ``hml`` and ``rf`` (percent per
month, as Fama and French publish them) at month-end dates. There is no price here, so the
panel is validated with these four columns as its required ones instead of ``close``; a task
that needs closes refuses it with validate_panel's message. ``treum.core.risk.factor_var_es``
reads it.

arch's copy parses the yyyymm integers as nanoseconds since 1970 (1926-07 shows as
``1970-01-01 00:00:00.000192607``); the loader turns them back into month ends.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from treum.core.data import bounded, make_panel, validate_panel
from treum.core.hookspecs import hookimpl
from treum.core.specs import DatasetSpec

SOURCE = "arch.data.frenchdata"
COLUMNS = ("mkt_rf", "smb", "hml", "rf")


def month_ends(index: pd.Index) -> pd.DatetimeIndex:
    """Month-end dates from arch's index: yyyymm read as nanoseconds (or real dates, should arch fix it)."""
    dates = pd.DatetimeIndex(index)
    if dates.max() < pd.Timestamp("1970-01-02"):  # the mis-parsed integers
        yyyymm = dates.as_unit("ns").asi8
        years, months = yyyymm // 100, yyyymm % 100
        if ((months < 1) | (months > 12)).any() or (years < 1900).any():
            raise ValueError(f"{SOURCE}: cannot read {yyyymm[:3]}... as yyyymm")
        dates = pd.to_datetime(pd.DataFrame({"year": years, "month": months, "day": np.ones_like(years)}))
    return pd.DatetimeIndex(dates + pd.offsets.MonthEnd(0)).as_unit("ns")


def load_ff3(cfg: Any) -> pd.DataFrame:
    from arch.data import frenchdata

    raw = frenchdata.load()
    raw.index = month_ends(raw.index)
    panel = make_panel(raw, "FF3")  # Mkt-RF -> mkt_rf
    return validate_panel(bounded(panel[list(COLUMNS)], cfg), SOURCE, COLUMNS)


@hookimpl
def treum_datasets() -> list[DatasetSpec]:
    return [DatasetSpec("ff3", "Fama-French 3 factors (Mkt-RF, SMB, HML, RF), monthly percent, 1926-07 to 2018-11",
                        load_ff3, SOURCE, frequency="1mo")]
