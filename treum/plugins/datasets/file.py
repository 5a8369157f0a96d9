"""The user's own CSV or Parquet file: ``data=csv data.path=prices.csv``."""

from __future__ import annotations

from typing import Any

from treum.core.data import read_table
from treum.core.errors import ConfigError
from treum.core.hookspecs import hookimpl
from treum.core.specs import DatasetSpec


def load_file(cfg: Any):
    path = cfg.get("path") if cfg is not None else None
    if not path:
        raise ConfigError("data=csv needs a file: add data.path=/path/to/prices.csv (or .parquet)")
    return read_table(
        path,
        timestamp_column=cfg.get("timestamp_column", "timestamp"),
        entity_column=cfg.get("entity_column"),
        entity=cfg.get("entity"),
    )


@hookimpl
def treum_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            "csv",
            "your own CSV or Parquet file: a timestamp column, optionally an entity column, close (and OHLCV)",
            load_file,
            "data.path",
        )
    ]
