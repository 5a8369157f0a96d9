"""The Panel: market data as a long frame indexed by (timestamp, entity).

Columns are lower-case (``open``, ``high``, ``low``, ``close``, ``volume`` where
they exist). Every data set passes ``validate_panel`` before use; an error
names the source, the row and the column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from treum.core.errors import ConfigError, DataValidationError

INDEX_NAMES = ("timestamp", "entity")
PRICE_COLUMNS = ("open", "high", "low", "close", "adj_close")
SEGMENT_NAMES = ("train", "valid", "test")


def make_panel(frame: pd.DataFrame, entity: str) -> pd.DataFrame:
    """Turn a single-instrument frame indexed by date into a Panel for ``entity``."""
    out = frame.copy()
    out.columns = [normalise_column(c) for c in out.columns]
    out.index = pd.MultiIndex.from_arrays(
        [pd.DatetimeIndex(out.index).as_unit("ns"), np.full(len(out), entity, dtype=object)],
        names=INDEX_NAMES,
    )
    return out


def wide_to_panel(prices: pd.DataFrame, column: str = "close") -> pd.DataFrame:
    """Turn a wide frame (dates x instruments) into a Panel with one price column."""
    long = prices.stack(future_stack=True).rename(column).to_frame()
    long.index = long.index.set_names(INDEX_NAMES)
    long = long.dropna()
    ts = pd.DatetimeIndex(long.index.get_level_values(0)).as_unit("ns")
    long.index = pd.MultiIndex.from_arrays(
        [ts, long.index.get_level_values(1).astype(object)], names=INDEX_NAMES
    )
    return long.sort_index(level=["entity", "timestamp"]).sort_index()


def normalise_column(name: Any) -> str:
    """``'Adj Close'`` -> ``'adj_close'``."""
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


def _where(source: str, row: Any, column: str | None = None) -> str:
    parts = [source, f"row {row}"]
    if column is not None:
        parts.append(f"column '{column}'")
    return ", ".join(parts)


def validate_panel(
    panel: pd.DataFrame,
    source: str,
    required: tuple[str, ...] = ("close",),
    row_numbers: pd.Series | None = None,
) -> pd.DataFrame:
    """Check a Panel and return it sorted by (timestamp, entity).

    ``row_numbers`` (aligned with ``panel``) are the rows of the original file,
    so that an error can name them; without it the (timestamp, entity) key is named.
    """
    if list(panel.index.names) != list(INDEX_NAMES):
        raise DataValidationError(
            f"{source}: a panel is indexed by (timestamp, entity), got index names {list(panel.index.names)}"
        )

    def row_of(i: int) -> Any:
        if row_numbers is not None:
            return int(row_numbers.iloc[i])
        ts, ent = panel.index[i]
        return f"{pd.Timestamp(ts).date()} / {ent}"

    if len(panel) == 0:
        raise DataValidationError(f"{source}: the data set is empty")
    missing = [c for c in required if c not in panel.columns]
    if missing:
        raise DataValidationError(
            f"{source}: missing required column(s) {missing}; found {list(panel.columns)}"
        )
    ts = panel.index.get_level_values("timestamp")
    if not isinstance(ts, pd.DatetimeIndex):
        raise DataValidationError(f"{source}: the timestamp level must be datetimes, got {ts.dtype}")
    if ts.hasnans:
        i = int(np.flatnonzero(ts.isna())[0])
        raise DataValidationError(f"{_where(source, row_of(i), 'timestamp')}: missing timestamp")

    ent = panel.index.get_level_values("entity")
    # one entity whose times strictly increase (a request's bars, most files): sorted, no duplicate, in
    # order, with no hashing or grouping; anything else takes the general checks, which name the row
    if len(ent) and (ent == ent[0]).all() and bool((np.diff(ts.asi8) > 0).all()):
        _check_columns(panel, source, row_of)
        return panel.copy(deep=False)  # a new frame, as sort_index gives the general path's callers

    dup = panel.index.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataValidationError(
            f"{_where(source, row_of(i))}: duplicate (timestamp, entity) key {panel.index[i]}; "
            "each instrument may have one row per timestamp"
        )

    # strictly increasing time per entity, in the order the rows came
    order = pd.DataFrame({"ts": ts.asi8, "ent": ent, "pos": np.arange(len(panel))})
    prev = order.groupby("ent", sort=False)["ts"].shift(1)
    bad = np.flatnonzero((prev.notna() & (order["ts"] <= prev)).to_numpy())
    if len(bad):
        i = int(bad[0])
        raise DataValidationError(
            f"{_where(source, row_of(i), 'timestamp')}: time goes backwards or repeats for entity "
            f"'{ent[i]}' ({pd.Timestamp(ts[i])} after {pd.Timestamp(int(prev.iloc[i]))}); sort the file by time"
        )
    _check_columns(panel, source, row_of)
    return panel.sort_index()


def _check_columns(panel: pd.DataFrame, source: str, row_of: Callable[[int], Any]) -> None:
    """Prices are positive finite numbers, volumes non-negative finite numbers."""
    for col in panel.columns:
        values = panel[col]
        if col in PRICE_COLUMNS or col == "volume":
            if not pd.api.types.is_numeric_dtype(values):
                numeric = pd.to_numeric(values, errors="coerce")
                i = int(np.flatnonzero(numeric.isna() & values.notna())[0]) if (numeric.isna() & values.notna()).any() else 0
                raise DataValidationError(
                    f"{_where(source, row_of(i), col)}: not a number ({values.iloc[i]!r})"
                )
            arr = values.to_numpy(dtype=float)
            nonfinite = ~np.isfinite(arr)
            if nonfinite.any():
                i = int(np.flatnonzero(nonfinite)[0])
                raise DataValidationError(
                    f"{_where(source, row_of(i), col)}: value {arr[i]} is not finite; "
                    "drop or fill the row before loading"
                )
            if col in PRICE_COLUMNS:
                nonpos = arr <= 0
                if nonpos.any():
                    i = int(np.flatnonzero(nonpos)[0])
                    raise DataValidationError(
                        f"{_where(source, row_of(i), col)}: price {arr[i]} is not positive"
                    )
            elif (arr < 0).any():
                i = int(np.flatnonzero(arr < 0)[0])
                raise DataValidationError(f"{_where(source, row_of(i), col)}: negative volume {arr[i]}")


def read_table(path: str | Path, timestamp_column: str, entity_column: str | None, entity: str | None) -> pd.DataFrame:
    """Read a user's CSV or Parquet file into a validated Panel."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataValidationError(f"{path}: no such file (set data.path to a CSV or Parquet file)")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        raw = pd.read_csv(path)
    elif suffix in (".parquet", ".pq"):
        raw = pd.read_parquet(path)
    else:
        raise DataValidationError(f"{path}: unsupported file type '{suffix}' (use .csv or .parquet)")
    raw.columns = [normalise_column(c) for c in raw.columns]
    ts_col = normalise_column(timestamp_column)
    if ts_col not in raw.columns:
        raise DataValidationError(
            f"{path}: no timestamp column '{timestamp_column}' (columns: {list(raw.columns)}); "
            "set data.timestamp_column"
        )
    # file rows are 1-based with the header on row 1
    row_numbers = pd.Series(np.arange(len(raw)) + 2)
    parsed = pd.to_datetime(raw[ts_col], errors="coerce")
    if parsed.isna().any():
        i = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise DataValidationError(
            f"{_where(str(path), int(row_numbers.iloc[i]), timestamp_column)}: cannot parse "
            f"{raw[ts_col].iloc[i]!r} as a date"
        )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    if entity_column is not None:
        ent_col = normalise_column(entity_column)
        if ent_col not in raw.columns:
            raise DataValidationError(f"{path}: no entity column '{entity_column}' (columns: {list(raw.columns)})")
        entities = raw[ent_col].astype(str).to_numpy(dtype=object)
        raw = raw.drop(columns=[ent_col])
    else:
        entities = np.full(len(raw), entity or path.stem, dtype=object)
    frame = raw.drop(columns=[ts_col])
    frame.index = pd.MultiIndex.from_arrays(
        [pd.DatetimeIndex(parsed).as_unit("ns"), entities], names=INDEX_NAMES
    )
    validated = validate_panel(frame, str(path), row_numbers=row_numbers)
    return validated


@dataclass(frozen=True)
class Segments:
    """Date segments of a run: train, then valid, then test, ordered and not overlapping."""

    train: tuple[pd.Timestamp, pd.Timestamp]
    valid: tuple[pd.Timestamp, pd.Timestamp] | None
    test: tuple[pd.Timestamp, pd.Timestamp]

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "Segments":
        spans: dict[str, tuple[pd.Timestamp, pd.Timestamp] | None] = {}
        unknown = set(cfg) - set(SEGMENT_NAMES)
        if unknown:
            raise ConfigError(f"data.segments: unknown segment(s) {sorted(unknown)} (use train, valid, test)")
        for name in SEGMENT_NAMES:
            value = cfg.get(name)
            if value is None:
                if name != "valid":
                    raise ConfigError(f"data.segments.{name} is missing: give [start, end] dates")
                spans[name] = None
                continue
            if len(value) != 2:
                raise ConfigError(f"data.segments.{name} must be [start, end], got {list(value)}")
            try:
                start, end = pd.Timestamp(str(value[0])), pd.Timestamp(str(value[1]))
            except ValueError as exc:
                raise ConfigError(f"data.segments.{name}: {exc}") from exc
            if start > end:
                raise ConfigError(f"data.segments.{name}: start {start.date()} is after end {end.date()}")
            spans[name] = (start, end)
        present = [(n, spans[n]) for n in SEGMENT_NAMES if spans[n] is not None]
        for (a, sa), (b, sb) in zip(present, present[1:]):
            if sb[0] <= sa[1]:
                raise ConfigError(
                    f"data.segments: '{b}' starts {sb[0].date()}, not after '{a}' ends {sa[1].date()}; "
                    "segments must be ordered and must not overlap"
                )
        return cls(train=spans["train"], valid=spans["valid"], test=spans["test"])  # type: ignore[arg-type]

    @property
    def fit_end(self) -> pd.Timestamp:
        """The last date a model may learn from before the test segment."""
        return (self.valid or self.train)[1]

    def check_against(self, panel: pd.DataFrame, source: str) -> None:
        ts = panel.index.get_level_values("timestamp")
        first, last = ts.min(), ts.max()
        if self.test[0] > last or self.train[1] < first:
            raise ConfigError(
                f"{source}: data runs {first.date()} to {last.date()}, but the segments ask for train "
                f"{self.train[0].date()}..{self.train[1].date()} and test {self.test[0].date()}..{self.test[1].date()}; "
                "override data.segments"
            )


def bounded(panel: pd.DataFrame, cfg: Mapping[str, Any] | None) -> pd.DataFrame:
    """Apply a data config's optional ``start`` and ``end`` dates."""
    start = cfg.get("start") if cfg is not None else None
    end = cfg.get("end") if cfg is not None else None
    return slice_time(panel, pd.Timestamp(str(start)) if start else None, pd.Timestamp(str(end)) if end else None)


def slice_time(panel: pd.DataFrame, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> pd.DataFrame:
    """Rows with start <= timestamp <= end (either bound may be None)."""
    ts = panel.index.get_level_values("timestamp")
    mask = np.ones(len(panel), dtype=bool)
    if start is not None:
        mask &= ts >= start
    if end is not None:
        mask &= ts <= end
    return panel[mask]


def data_version(panel: pd.DataFrame) -> str:
    """A short content hash of a panel, recorded with every trained model."""
    digest = pd.util.hash_pandas_object(panel, index=True).to_numpy()
    import hashlib

    return hashlib.sha256(digest.tobytes()).hexdigest()[:16]
