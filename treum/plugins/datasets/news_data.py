"""Dated headlines from the user's CSV: ``timestamp``, ``entity``, ``text``; the trading day each belongs to.

The file has one headline a row::

    timestamp,entity,text
    2020-01-02T09:15:00-05:00,AAPL,Apple opens a new store in Shanghai
    2020-01-02 21:40:00+00:00,XOM,Exxon cuts its capital budget

**Time zones.** A timestamp with a zone (``-05:00``, ``Z``, ``+00:00``) is converted to UTC; a
timestamp without one is read in ``naive_timezone`` (UTC by default). ``published`` holds UTC.

**The after-close rule.** A headline belongs to the trading day whose close can reflect it.
Its time in the exchange's zone (``exchange_timezone``, America/New_York) is compared with
``cutoff`` (16:00, the NYSE close): a headline published *before* the cutoff belongs to that
day; one published *at or after* it (the close at 16:00 cannot contain a 16:00 headline)
belongs to the next weekday; a headline of a Saturday or Sunday belongs to the Monday. That
date is the headline's ``session``. Exchange holidays are not known here: the ``multimodal``
feature set moves each headline on to the first bar of its entity's price series on or after
its session, so a headline of a holiday lands on the next day the entity trades.

As a data set (``treum data show news data.path=headlines.csv``) the file is a Panel of
``headlines``, the number of headlines per (session, entity); the headlines themselves are
read by the ``multimodal`` feature set (``features.news_path``), which embeds them with
MiniLM. News is an input of a feature set, not a run's ``data=``: a run's data set is the
prices that the task labels.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from treum.core.config import build_config
from treum.core.data import INDEX_NAMES, bounded, validate_panel
from treum.core.errors import ConfigError, DataValidationError
from treum.core.hookspecs import hookimpl
from treum.core.specs import DatasetSpec

REQUIRED = ("timestamp", "entity", "text")
_ZONED = r"(?:Z|[+-]\d{2}:?\d{2})\s*$"  # an ISO offset or Z at the end of the string


@dataclass
class NewsConfig:
    """How a news file is read (the ``news`` data set's keys; ``multimodal`` passes the same ones)."""

    path: str | None = None
    cutoff: str = "16:00"  # the close, in exchange time: a headline at or after it belongs to the next trading day
    exchange_timezone: str = "America/New_York"
    naive_timezone: str = "UTC"  # the zone of timestamps written without one

    def validate(self) -> str | None:
        try:
            parse_cutoff(self.cutoff)
        except ValueError as exc:
            return str(exc)
        for key in ("exchange_timezone", "naive_timezone"):
            try:
                pd.Timestamp("2020-01-01").tz_localize(getattr(self, key))
            except Exception:
                return f"{key}: unknown time zone {getattr(self, key)!r} (an IANA name such as America/New_York or UTC)"
        return None


def parse_cutoff(value: str) -> dt.time:
    """``'16:00'`` -> 16:00; a clear error for anything else."""
    try:
        return dt.time.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"cutoff must be a time of day HH:MM in exchange time, got {value!r}") from None


def session_dates(published_utc: pd.Series, cutoff: str = "16:00",
                  exchange_timezone: str = "America/New_York") -> pd.Series:
    """The trading day each UTC publication time belongs to (tz-naive midnight dates).

    Before ``cutoff`` in exchange time: that day; at or after it: the next weekday; a weekend
    day rolls on to the Monday. Holidays are left to the caller (see the module doc).
    """
    local = pd.DatetimeIndex(published_utc).tz_convert(exchange_timezone)
    cut = parse_cutoff(cutoff)
    day = local.tz_localize(None).normalize()
    seconds = (local.hour * 3600 + local.minute * 60 + local.second).to_numpy()
    after = seconds >= cut.hour * 3600 + cut.minute * 60 + cut.second
    day = day + pd.to_timedelta(after.astype(int), unit="D")
    weekday = day.dayofweek.to_numpy()
    day = day + pd.to_timedelta(np.where(weekday == 5, 2, np.where(weekday == 6, 1, 0)), unit="D")
    return pd.Series(pd.DatetimeIndex(day).as_unit("ns"), index=published_utc.index)


def read_news(path: str | Path, cutoff: str = "16:00", exchange_timezone: str = "America/New_York",
              naive_timezone: str = "UTC", key: str = "path") -> pd.DataFrame:
    """The headlines of a CSV: ``published`` (UTC), ``session``, ``entity``, ``text``, in file order.

    ``key`` is the config key that names the file (``data.path``, ``features.news_path``), for errors.
    Rows are counted as in the file (the header is row 1).
    """
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise DataValidationError(f"news file {path}: no such file (set {key} to a CSV with columns "
                                  f"{', '.join(REQUIRED)})")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except Exception as exc:
        raise DataValidationError(f"news file {path}: cannot be read as CSV ({exc})") from None
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise DataValidationError(
            f"news file {path}: no column {', '.join(repr(c) for c in missing)} (columns: {list(raw.columns)}); "
            f"a news CSV has the columns {', '.join(REQUIRED)}: one headline a row"
        )
    rows = np.arange(len(raw)) + 2
    for col in REQUIRED:
        empty = raw[col].isna() | (raw[col].str.strip() == "")
        if empty.any():
            i = int(np.flatnonzero(empty.to_numpy())[0])
            raise DataValidationError(f"news file {path}, row {rows[i]}, column '{col}': empty; every headline needs "
                                      f"a timestamp, an entity and its text")
    stamps = raw["timestamp"].str.strip()
    zoned = stamps.str.contains(_ZONED, regex=True)
    published = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    if zoned.any():
        published[zoned] = pd.to_datetime(stamps[zoned], utc=True, errors="coerce", format="mixed")
    if (~zoned).any():
        naive = pd.to_datetime(stamps[~zoned], errors="coerce", format="mixed")
        published[~zoned] = pd.DatetimeIndex(naive).tz_localize(naive_timezone, ambiguous="NaT",
                                                                 nonexistent="NaT").tz_convert("UTC")
    bad = published.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataValidationError(
            f"news file {path}, row {rows[i]}, column 'timestamp': cannot read {stamps.iloc[i]!r} as a time "
            "(use ISO 8601, e.g. 2020-01-02T15:30:00-05:00; a time without a zone is read in naive_timezone)"
        )
    out = pd.DataFrame({
        "published": published.dt.as_unit("ns"),
        "session": session_dates(published, cutoff, exchange_timezone),
        "entity": raw["entity"].str.strip().astype(object),
        "text": raw["text"].str.strip().astype(object),
    })
    out.index = pd.RangeIndex(len(out))
    return out


def news_config(cfg: Any, path_key: str = "path") -> NewsConfig:
    """The validated reading keys of a data or feature config (``path_key`` names the file's key)."""
    values = {} if cfg is None else dict(cfg)
    picked = {k: values[k] for k in ("cutoff", "exchange_timezone", "naive_timezone") if k in values}
    picked["path"] = values.get(path_key)
    return build_config(NewsConfig, picked, "data" if path_key == "path" else "features")


def load_news(cfg: Any) -> pd.DataFrame:
    """The panel of headline counts per (session, entity), bounded by the config's ``start``/``end``."""
    conf = news_config(cfg)
    if not conf.path:
        raise ConfigError("data=news needs a file: add data.path=/path/to/headlines.csv (columns timestamp, "
                          "entity, text)")
    news = read_news(conf.path, conf.cutoff, conf.exchange_timezone, conf.naive_timezone, key="data.path")
    counts = news.groupby(["session", "entity"], sort=True).size().astype(float).rename("headlines").to_frame()
    counts.index = pd.MultiIndex.from_arrays(
        [pd.DatetimeIndex(counts.index.get_level_values(0)).as_unit("ns"),
         counts.index.get_level_values(1).astype(object)], names=INDEX_NAMES)
    return validate_panel(bounded(counts, cfg), f"news file {conf.path}", ("headlines",))


@hookimpl
def treum_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            "news",
            "your dated headlines (CSV: timestamp, entity, text): headlines per trading day and entity; a headline "
            "at or after the 16:00 New York close belongs to the next trading day. The multimodal feature set "
            "embeds them (features.news_path)",
            load_news,
            "data.path",
        )
    ]
