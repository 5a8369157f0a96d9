"""Data validation: a bad file stops with an error naming the file, the row and the column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from treum.core.data import Segments, read_table, validate_panel
from treum.core.errors import ConfigError, DataValidationError


def _csv(tmp_path, rows, name="prices.csv"):
    path = tmp_path / name
    path.write_text("date,symbol,close,volume\n" + "\n".join(rows) + "\n")
    return path


def test_a_good_csv_becomes_a_sorted_panel(tmp_path):
    path = _csv(tmp_path, ["2020-01-02,AAA,10,100", "2020-01-02,BBB,20,50", "2020-01-03,AAA,11,120", "2020-01-03,BBB,19,70"])
    panel = read_table(path, "date", "symbol", None)
    assert panel.index.names == ["timestamp", "entity"]
    assert list(panel.columns) == ["close", "volume"]
    assert panel.loc[(pd.Timestamp("2020-01-03"), "AAA"), "close"] == 11


def test_non_positive_price_names_file_row_and_column(tmp_path):
    path = _csv(tmp_path, ["2020-01-02,AAA,10,100", "2020-01-03,AAA,-1,100"])
    with pytest.raises(DataValidationError, match=r"prices\.csv, row 3, column 'close': price -1\.0 is not positive"):
        read_table(path, "date", "symbol", None)


def test_non_finite_value_is_named(tmp_path):
    path = _csv(tmp_path, ["2020-01-02,AAA,10,100", "2020-01-03,AAA,inf,100"])
    with pytest.raises(DataValidationError, match=r"row 3, column 'close': value inf is not finite"):
        read_table(path, "date", "symbol", None)


def test_text_in_a_price_column_is_named(tmp_path):
    path = _csv(tmp_path, ["2020-01-02,AAA,10,100", "2020-01-03,AAA,ten,100"])
    with pytest.raises(DataValidationError, match=r"row 3, column 'close': not a number \('ten'\)"):
        read_table(path, "date", "symbol", None)


def test_duplicate_keys_are_named(tmp_path):
    path = _csv(tmp_path, ["2020-01-02,AAA,10,100", "2020-01-02,AAA,10,100"])
    with pytest.raises(DataValidationError, match=r"row 3: duplicate \(timestamp, entity\) key"):
        read_table(path, "date", "symbol", None)


def test_time_going_backwards_is_named(tmp_path):
    path = _csv(tmp_path, ["2020-01-03,AAA,10,100", "2020-01-02,AAA,11,100"])
    with pytest.raises(DataValidationError, match=r"row 3, column 'timestamp': time goes backwards"):
        read_table(path, "date", "symbol", None)


def test_unparseable_date_is_named(tmp_path):
    path = _csv(tmp_path, ["2020-01-02,AAA,10,100", "yesterday,AAA,11,100"])
    with pytest.raises(DataValidationError, match=r"row 3, column 'date': cannot parse 'yesterday'"):
        read_table(path, "date", "symbol", None)


def test_missing_required_column(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("date,price\n2020-01-02,1\n")
    with pytest.raises(DataValidationError, match=r"missing required column\(s\) \['close'\]"):
        read_table(path, "date", None, "X")


def test_missing_file_says_what_to_set(tmp_path):
    with pytest.raises(DataValidationError, match="no such file"):
        read_table(tmp_path / "nope.csv", "date", None, None)


def test_packaged_data_passes_validation(sp500):
    assert len(sp500) == 5031
    assert validate_panel(sp500, "sp500").equals(sp500)


def test_validation_of_a_panel_names_timestamp_and_entity():
    idx = pd.MultiIndex.from_arrays([pd.to_datetime(["2020-01-02", "2020-01-03"]), ["X", "X"]], names=["timestamp", "entity"])
    panel = pd.DataFrame({"close": [1.0, np.nan]}, index=idx)
    with pytest.raises(DataValidationError, match=r"row 2020-01-03 / X, column 'close'"):
        validate_panel(panel, "memory")


def test_segments_must_be_ordered_and_not_overlap():
    ok = Segments.from_config({"train": ["2000-01-01", "2005-12-31"], "valid": ["2006-01-01", "2006-12-31"],
                               "test": ["2007-01-01", "2008-12-31"]})
    assert ok.fit_end == pd.Timestamp("2006-12-31")
    with pytest.raises(ConfigError, match="'test' starts 2006-06-01, not after 'valid' ends 2006-12-31"):
        Segments.from_config({"train": ["2000-01-01", "2005-12-31"], "valid": ["2006-01-01", "2006-12-31"],
                              "test": ["2006-06-01", "2008-12-31"]})
    with pytest.raises(ConfigError, match="data.segments.test is missing"):
        Segments.from_config({"train": ["2000-01-01", "2005-12-31"]})


def test_segments_outside_the_data_are_refused(sp500):
    seg = Segments.from_config({"train": ["2019-01-01", "2020-12-31"], "test": ["2021-01-01", "2022-12-31"]})
    with pytest.raises(ConfigError, match="data runs 1999-01-04 to 2018-12-31"):
        seg.check_against(sp500, "sp500")
