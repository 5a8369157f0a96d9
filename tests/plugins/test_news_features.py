"""The news data set and the multimodal feature set: the after-close rule, the daily mean embedding,
entity and holiday alignment, the macro series' release lags, no look-ahead, and the errors.

The headlines are made up here and written to a temporary CSV; the prices are the packaged
20 stocks (three of them, 2015), the macro series arch's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from treum.core.data import slice_time
from treum.core.errors import ConfigError, DataValidationError
from treum.plugins.datasets import news_data
from treum.plugins.features import multimodal
from treum.zoo.text_encoder import EMBEDDING_DIM, embed_texts

HEADLINES = [  # timestamp, entity, text: made up for this test
    ("2015-06-03T09:30:00-04:00", "AAPL", "Apple shows a new watch band at a developer event"),
    ("2015-06-03T14:05:00-04:00", "AAPL", "Analyst raises Apple price target on services growth"),
    ("2015-06-03T16:45:00-04:00", "AAPL", "Apple supplier warns of weaker quarter after the bell"),  # after close -> 06-04
    ("2015-06-03T15:59:00-04:00", "XOM", "Exxon wins drilling rights off the coast"),
    ("2015-06-05 21:30:00+00:00", "XOM", "Exxon refinery outage reported on Friday evening"),  # 17:30 EDT Fri -> Mon 06-08
    ("2015-06-06T11:00:00Z", "JNJ", "Johnson and Johnson recalls a batch of lotion"),  # Saturday -> Mon 06-08
    ("2015-07-03T10:00:00-04:00", "JNJ", "Johnson and Johnson opens a research site"),  # NYSE holiday -> 07-06
    ("2015-06-03T10:00:00-04:00", "ZZZZ", "A company the panel does not hold"),
]


@pytest.fixture
def news_csv(tmp_path):
    path = tmp_path / "headlines.csv"
    pd.DataFrame(HEADLINES, columns=["timestamp", "entity", "text"]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def panel(plugins):
    data = plugins.dataset("sp500_stocks").load({"start": "2014-01-01", "end": "2015-12-31"})
    return data[data.index.get_level_values("entity").isin(["AAPL", "JNJ", "XOM"])]


def _row(frame, day, entity):
    return frame.loc[(pd.Timestamp(day), entity)]


def test_after_close_and_weekend_headlines_move_to_the_next_trading_day(news_csv):
    news = news_data.read_news(news_csv)
    sessions = dict(zip(news["text"], news["session"].dt.strftime("%Y-%m-%d")))
    expected = ["2015-06-03",  # before the open: that day
                "2015-06-03",
                "2015-06-04",  # 16:45 New York: after the close
                "2015-06-03",  # 15:59: before the close
                "2015-06-08",  # Friday 17:30 New York -> Monday
                "2015-06-08",  # Saturday -> Monday
                "2015-07-03",  # a weekday: the holiday is the feature set's business (the next bar)
                "2015-06-03"]
    assert [sessions[h[2]] for h in HEADLINES] == expected
    assert str(news["published"].dt.tz) == "UTC"
    assert news["published"].iloc[0] == pd.Timestamp("2015-06-03 13:30", tz="UTC")


def test_a_headline_at_the_close_itself_is_after_it_and_the_cutoff_is_configurable():
    t = pd.Series(pd.to_datetime(["2015-06-03 20:00", "2015-06-03 19:59"], utc=True))  # 16:00 and 15:59 EDT
    assert list(news_data.session_dates(t).dt.day) == [4, 3]
    assert list(news_data.session_dates(t, cutoff="15:30").dt.day) == [4, 4]
    assert list(news_data.session_dates(t, exchange_timezone="America/Los_Angeles").dt.day) == [3, 3]  # 13:00 PDT


def test_naive_timestamps_are_read_in_the_configured_zone(tmp_path):
    path = tmp_path / "naive.csv"
    path.write_text("timestamp,entity,text\n2015-06-03 15:30:00,AAPL,one\n")
    assert news_data.read_news(path)["session"].iloc[0] == pd.Timestamp("2015-06-03")  # 15:30 UTC = 11:30 EDT
    ny = news_data.read_news(path, naive_timezone="Asia/Tokyo")  # 15:30 Tokyo = 02:30 EDT the same day
    assert ny["published"].iloc[0] == pd.Timestamp("2015-06-03 06:30", tz="UTC")


def test_news_features_are_the_mean_embedding_of_the_days_headlines(panel, news_csv):
    feats = multimodal.compute(panel, {"news_path": str(news_csv)})
    cols = multimodal.news_columns(EMBEDDING_DIM)
    assert cols[0] == "f_news_000" and cols[-1] == "f_news_383" and set(cols) <= set(feats.columns)
    apple = _row(feats, "2015-06-03", "AAPL")
    expected = embed_texts([HEADLINES[0][2], HEADLINES[1][2]]).mean(axis=0)
    np.testing.assert_allclose(apple[cols].to_numpy(dtype=float), expected, rtol=1e-5, atol=1e-6)
    assert apple["f_news_mask"] == 1.0
    after = _row(feats, "2015-06-04", "AAPL")  # the after-close headline alone
    np.testing.assert_allclose(after[cols].to_numpy(dtype=float), embed_texts([HEADLINES[2][2]])[0], rtol=1e-5,
                               atol=1e-6)
    # entity alignment: XOM's own headline on 06-03, nothing for JNJ; the unknown ZZZZ is ignored
    assert _row(feats, "2015-06-03", "XOM")["f_news_mask"] == 1.0
    jnj = _row(feats, "2015-06-03", "JNJ")
    assert jnj["f_news_mask"] == 0.0 and not jnj[cols].any()
    assert _row(feats, "2015-06-08", "XOM")["f_news_mask"] == 1.0  # Friday evening -> Monday
    assert _row(feats, "2015-06-05", "XOM")["f_news_mask"] == 0.0
    assert _row(feats, "2015-06-08", "JNJ")["f_news_mask"] == 1.0  # Saturday -> Monday
    # 2015-07-03 was an exchange holiday: the headline lands on the entity's next bar
    assert (pd.Timestamp("2015-07-03"), "JNJ") not in feats.index
    assert _row(feats, "2015-07-06", "JNJ")["f_news_mask"] == 1.0
    assert feats["f_news_mask"].sum() == 6  # AAPL 06-03, 06-04; XOM 06-03, 06-08; JNJ 06-08, 07-06


def test_no_news_path_means_a_zero_mask_and_no_embedding_columns(panel):
    feats = multimodal.compute(panel, {"news_path": None})
    assert (feats["f_news_mask"] == 0).all()
    assert not [c for c in feats.columns if c.startswith("f_news_") and c != "f_news_mask"]
    assert {"f_ret_1", "f_vol_21", "f_macro_vix", "f_macro_credit_spread", "f_macro_ff_mkt_rf"} <= set(feats.columns)


def test_the_feature_groups_are_told_apart_by_their_names(panel, news_csv):
    from treum.zoo.multimodal_fusion import column_groups, flag_of

    feats = multimodal.compute(panel, {"news_path": str(news_csv)})
    price, values, flags, news = column_groups(list(feats.columns))
    assert price == [c for c in multimodal.technical.compute(panel, {}).columns]
    assert len(news) == EMBEDDING_DIM and "f_news_mask" not in news
    assert set(flags) == {"f_macro_vix_known", "f_macro_credit_known", "f_macro_ff_known"}
    assert flag_of("f_macro_credit_spread_chg", flags) == "f_macro_credit_known"
    assert flag_of("f_macro_ff_hml", flags) == "f_macro_ff_known"


def test_monthly_macro_values_are_used_only_after_their_release(panel):
    """The BAA-AAA average of May 2015 is dated 2015-05-01 in arch's file; it is known once May ends."""
    from arch.data import default, frenchdata

    raw = default.load()
    may = float(raw.loc["2015-05-01", "BAA"] - raw.loc["2015-05-01", "AAA"])
    april = float(raw.loc["2015-04-01", "BAA"] - raw.loc["2015-04-01", "AAA"])
    assert may != april
    feats = multimodal.compute(panel, {})
    spread = feats.xs("AAPL", level="entity")["f_macro_credit_spread"]
    assert spread.loc["2015-05-01"] != pytest.approx(may)  # never on its own date (a month of look-ahead)
    assert spread.loc["2015-05-29"] == pytest.approx(april)  # May's last bar: May is not over
    assert spread.loc["2015-06-01"] == pytest.approx(april)  # released 06-01 (1 day's lag), used strictly after
    assert spread.loc["2015-06-02"] == pytest.approx(may)
    ff = frenchdata.load()
    ff.index = multimodal.french_monthly().index
    mkt = feats.xs("AAPL", level="entity")["f_macro_ff_mkt_rf"]
    # May 2015's factors: released 31 days after May 31 (07-01), first used on the next bar, 07-02
    assert mkt.loc["2015-07-01"] == pytest.approx(float(ff.loc["2015-04-30", "Mkt-RF"]))
    assert mkt.loc["2015-07-02"] == pytest.approx(float(ff.loc["2015-05-31", "Mkt-RF"]))
    assert (feats["f_macro_credit_known"] == 1).all() and (feats["f_macro_ff_known"] == 1).all()


def test_the_vix_is_known_only_where_arch_has_it_and_is_zero_with_a_zero_flag_elsewhere(plugins):
    data = plugins.dataset("sp500_stocks").load({"start": "2013-12-01", "end": "2019-03-31"})
    aapl = data[data.index.get_level_values("entity") == "AAPL"]
    feats = multimodal.compute(aapl, {}).xs("AAPL", level="entity")
    assert feats.loc["2013-12-31", "f_macro_vix_known"] == 0 and feats.loc["2013-12-31", "f_macro_vix"] == 0
    # the source is known once all its values are: the 5-day change needs arch's sixth close (2014-01-10)
    assert feats.loc["2014-01-09", "f_macro_vix_known"] == 0
    assert feats.loc["2014-01-10", "f_macro_vix"] == pytest.approx(12.14)  # that close, on its own day
    assert feats.loc["2014-01-10", "f_macro_vix_chg_5"] == pytest.approx(12.14 - 13.76)
    assert feats.loc["2019-03-29", "f_macro_vix_known"] == 0  # arch's VIX ends 2019-01-03 (7 days' carry)
    assert feats.loc["2019-03-29", "f_macro_credit_known"] == 0  # the spread ends 2018-12: stale by March
    assert np.isfinite(feats.filter(like="f_macro_").to_numpy()).all()


def test_truncating_the_prices_at_t_leaves_every_feature_up_to_t_unchanged(panel, news_csv):
    cfg = {"news_path": str(news_csv)}
    full = multimodal.compute(panel, cfg)
    for cut in ("2015-06-03", "2015-06-05", "2015-07-02"):
        part = multimodal.compute(slice_time(panel, end=pd.Timestamp(cut)), cfg)
        pd.testing.assert_frame_equal(part, slice_time(full, end=pd.Timestamp(cut)))
    macro = [c for c in full.columns if c.startswith("f_macro_")]
    assert len(macro) == 11 and full[macro].abs().sum().sum() > 0


def test_the_news_data_set_counts_headlines_per_trading_day(news_csv):
    counts = news_data.load_news({"path": str(news_csv)})
    assert list(counts.columns) == ["headlines"]
    assert counts.loc[(pd.Timestamp("2015-06-03"), "AAPL"), "headlines"] == 2
    assert counts.loc[(pd.Timestamp("2015-06-08"), "XOM"), "headlines"] == 1
    assert counts["headlines"].sum() == len(HEADLINES)
    bounded = news_data.load_news({"path": str(news_csv), "end": "2015-06-05"})
    assert bounded.index.get_level_values("timestamp").max() <= pd.Timestamp("2015-06-05")


def test_a_missing_file_or_column_is_named(tmp_path, panel):
    with pytest.raises(DataValidationError, match=r"nowhere\.csv: no such file.*features\.news_path"):
        multimodal.compute(panel, {"news_path": str(tmp_path / "nowhere.csv")})
    with pytest.raises(ConfigError, match="data.path"):
        news_data.load_news({"path": None})
    bad = tmp_path / "no_text.csv"
    bad.write_text("timestamp,entity,headline\n2015-06-03T10:00:00-04:00,AAPL,x\n")
    with pytest.raises(DataValidationError, match=r"no_text\.csv: no column 'text'"):
        news_data.read_news(bad)
    unparsable = tmp_path / "dates.csv"
    unparsable.write_text("timestamp,entity,text\n2015-06-03T10:00:00-04:00,AAPL,x\nyesterday,AAPL,y\n")
    with pytest.raises(DataValidationError, match=r"dates\.csv, row 3, column 'timestamp'.*'yesterday'"):
        news_data.read_news(unparsable)
    empty = tmp_path / "empty.csv"
    empty.write_text("timestamp,entity,text\n2015-06-03T10:00:00-04:00,,x\n")
    with pytest.raises(DataValidationError, match=r"row 2, column 'entity': empty"):
        news_data.read_news(empty)


def test_bad_feature_config_is_refused(panel):
    with pytest.raises(ConfigError, match="cutoff"):
        multimodal.compute(panel, {"cutoff": "4pm"})
    with pytest.raises(ConfigError, match="exchange_timezone"):
        multimodal.compute(panel, {"exchange_timezone": "Mars/Olympus"})
    with pytest.raises(ConfigError, match="news_pth"):
        multimodal.compute(panel, {"news_pth": "x.csv"})
    with pytest.raises(ConfigError, match="unknown key"):
        multimodal.compute(panel, {"technical": {"rsi_windw": 3}})
