"""The multimodal feature set: price/technical features, macro and market-sentiment features, and the news.

Three groups of ``f_*`` columns on the price panel's index, named so a model can tell them apart:

**Price** (every ``f_*`` column that is neither ``f_macro_*`` nor ``f_news_*``): the ``technical``
feature set's columns, computed by its own ``compute`` (config ``technical:`` overrides its keys).

**Macro** (``f_macro_*``), aligned by date as of each bar, forward-filled from their release only:

- ``f_macro_vix``, ``f_macro_vix_chg_5``: the CBOE VIX close of ``arch.data.vix`` (2014-01-03 to
  2019-01-03 only) and its change over 5 of its days. The VIX of day d is known at d's close and
  is used on bars on or after d, for at most ``daily_max_age_days`` calendar days.
- ``f_macro_credit_spread``, ``f_macro_credit_spread_chg``: Moody's BAA less AAA yield (percent)
  from ``arch.data.default`` and its change on the month before. These are *monthly* averages
  dated the first of their month (1919-01 to 2018-12): the value of month M is known only once M
  has ended, so it is released ``credit_lag_days`` calendar days after M's last day and first used
  on the first bar strictly after that release (never on the first of M, its date in the file).
- ``f_macro_ff_mkt_rf``, ``_smb``, ``_hml``, ``_rf``: the Fama-French factors of
  ``arch.data.frenchdata`` (the ``ff3`` data set). arch ships them **monthly** (percent per month,
  1926-07 to 2018-11), not daily. Ken French's library publishes a month's factors some weeks after
  it ends, so month M is released ``french_lag_days`` (31) calendar days after its last day and
  first used on the first bar strictly after that.

A monthly value is dropped once it is older than ``monthly_max_age_days`` since its release (the
next month's value is then late or the source has ended), so no 2018 value is carried into 2022.
Each source has a flag ``f_macro_<source>_known`` (``vix``, ``credit``, ``ff``): 1 where its
values are known at the bar, 0 where they are not (before the source starts, after it ends or
grows stale), and its values are 0 there, never NaN: the VIX covers five years, and a NaN would
cost every other feature model (logistic regression, the transformer's windows) all other rows.
A model reads a value only with its flag (the flag of a value column is the ``_known`` column
whose prefix it shares: ``f_macro_credit_known`` covers ``f_macro_credit_spread*``).

**News** (``f_news_*``), from ``news_path`` (a CSV of timestamp, entity, text; see
``treum.plugins.datasets.news_data`` for the format and the after-close rule): per (bar, entity)
the mean of the MiniLM sentence embeddings (``treum.zoo.text_encoder.embed_texts``, frozen, the
packaged weights) of that entity's headlines of that trading day, ``f_news_000`` .. ``f_news_383``,
and ``f_news_mask``, 1 where the entity had a headline that day and 0 elsewhere (the embedding is
0 there). A headline goes to the first bar of its entity on or after its session date (holidays).
``news_path: null`` means no news: ``f_news_mask`` is 0 everywhere and the 384 embedding columns
are left out (384 columns of zeros on the 20-stock panel would cost a quarter of a gigabyte and
widen every other model's input for nothing). Headlines of entities the panel does not hold are
ignored.

No look-ahead: every value at bar t comes from data dated (released) up to t; the technical
windows look backward; the macro values are matched as of t; a headline is placed on a bar on or
after its session. ``tests/plugins/test_news_features.py`` truncates the panel and recomputes.
The packaged macro series are loaded once per process and a news file is embedded once per
(path, size, modification time, rule): serving calls ``compute`` per request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from treum.core.config import build_config
from treum.core.hookspecs import hookimpl
from treum.core.specs import FeatureSetSpec
from treum.plugins.datasets.news_data import NewsConfig, read_news
from treum.plugins.features import technical

MACRO_PREFIX = "f_macro_"
NEWS_PREFIX = "f_news_"
NEWS_MASK = "f_news_mask"
KNOWN_SUFFIX = "_known"


def news_columns(dim: int) -> list[str]:
    return [f"{NEWS_PREFIX}{i:03d}" for i in range(dim)]


@dataclass
class MultimodalFeaturesConfig:
    news_path: str | None = None  # a CSV of timestamp, entity, text; null: no news (f_news_mask 0 everywhere)
    cutoff: str = "16:00"  # exchange time: a headline at or after it belongs to the next trading day
    exchange_timezone: str = "America/New_York"
    naive_timezone: str = "UTC"  # the zone of news timestamps written without one
    technical: dict[str, Any] = field(default_factory=dict)  # overrides of the technical feature set's keys
    vix: bool = True
    credit_spread: bool = True
    french: bool = True
    credit_lag_days: int = 1  # calendar days after a month's end before its BAA-AAA average is used
    french_lag_days: int = 31  # calendar days after a month's end before its Fama-French factors are used
    monthly_max_age_days: int = 45  # a monthly value older than this since its release is unknown
    daily_max_age_days: int = 7  # a VIX close older than this (calendar days) is unknown

    def validate(self) -> str | None:
        problem = NewsConfig(None, self.cutoff, self.exchange_timezone, self.naive_timezone).validate()
        if problem:
            return problem
        unknown = set(self.technical) - set(technical.DEFAULTS)
        if unknown:
            return f"technical: unknown key(s) {sorted(unknown)} (known: {sorted(technical.DEFAULTS)})"
        if min(self.credit_lag_days, self.french_lag_days) < 0:
            return "credit_lag_days and french_lag_days are release lags in days: 0 or more"
        if self.monthly_max_age_days < 1 or self.daily_max_age_days < 1:
            return "monthly_max_age_days and daily_max_age_days must be at least 1"
        return None


# the packaged sources, loaded once per process ------------------------------------------------
@lru_cache(maxsize=1)
def vix_series() -> pd.DataFrame:
    """The VIX close and its 5-day change by date (its own trading days), from ``arch.data.vix``."""
    from arch.data import vix

    s = vix.load()["vix"].dropna().astype(float)
    s.index = pd.DatetimeIndex(s.index).as_unit("ns")
    s = s.sort_index()
    return pd.DataFrame({"vix": s, "vix_chg_5": s - s.shift(5)})


@lru_cache(maxsize=1)
def credit_spread_monthly() -> pd.DataFrame:
    """BAA - AAA (percent) and its change on the month before, indexed by the month's last day."""
    from arch.data import default

    raw = default.load()[["BAA", "AAA"]].dropna().astype(float)
    month_end = pd.DatetimeIndex(raw.index).as_unit("ns") + pd.offsets.MonthEnd(0)
    spread = pd.Series((raw["BAA"] - raw["AAA"]).to_numpy(), index=month_end).sort_index()
    return pd.DataFrame({"credit_spread": spread, "credit_spread_chg": spread.diff()})


@lru_cache(maxsize=1)
def french_monthly() -> pd.DataFrame:
    """Fama-French Mkt-RF, SMB, HML, RF (percent per month), indexed by the month's last day."""
    from arch.data import frenchdata

    from treum.plugins.datasets.french_data import month_ends

    raw = frenchdata.load()
    out = pd.DataFrame({"ff_mkt_rf": raw["Mkt-RF"].to_numpy(dtype=float), "ff_smb": raw["SMB"].to_numpy(dtype=float),
                        "ff_hml": raw["HML"].to_numpy(dtype=float), "ff_rf": raw["RF"].to_numpy(dtype=float)},
                       index=month_ends(raw.index))
    return out.sort_index()


def as_of(dates: pd.DatetimeIndex, values: pd.DataFrame, released: pd.DatetimeIndex, strictly_after: bool,
          max_age_days: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The latest row of ``values`` released before each date (or on it, unless ``strictly_after``).

    Returns (values on ``dates``, NaN where unknown; a 0/1 flag of known). A value older than
    ``max_age_days`` since its release is unknown.
    """
    order = np.argsort(released.asi8, kind="stable")
    rel = released.asi8[order]
    d = pd.DatetimeIndex(dates).as_unit("ns").asi8
    pos = np.searchsorted(rel, d, side="left" if strictly_after else "right") - 1
    ok = pos >= 0
    age = np.where(ok, d - rel[np.clip(pos, 0, None)], np.iinfo(np.int64).max)
    ok &= age <= np.int64(max_age_days) * 86_400 * 1_000_000_000
    out = values.iloc[order].to_numpy(dtype=float)[np.clip(pos, 0, None)]
    out[~ok] = np.nan
    row_ok = ok & np.isfinite(out).all(axis=1)
    out[~row_ok] = np.nan
    return pd.DataFrame(out, columns=values.columns), row_ok.astype(float)


def macro_features(dates: pd.DatetimeIndex, conf: MultimodalFeaturesConfig) -> pd.DataFrame:
    """The ``f_macro_*`` columns for each date (a bar's timestamp), as of that date; 0 with a 0 flag where unknown."""
    parts: dict[str, np.ndarray] = {}

    def put(source: str, frame: pd.DataFrame, known: np.ndarray) -> None:
        for col in frame.columns:
            parts[f"{MACRO_PREFIX}{col}"] = np.where(known > 0, frame[col].to_numpy(), 0.0)
        parts[f"{MACRO_PREFIX}{source}{KNOWN_SUFFIX}"] = known

    if conf.vix:
        v = vix_series()
        frame, known = as_of(dates, v, pd.DatetimeIndex(v.index), False, conf.daily_max_age_days)
        put("vix", frame, known)
    if conf.credit_spread:
        c = credit_spread_monthly()
        released = pd.DatetimeIndex(c.index) + pd.Timedelta(days=conf.credit_lag_days)
        frame, known = as_of(dates, c, released, True, conf.monthly_max_age_days)
        put("credit", frame, known)
    if conf.french:
        f = french_monthly()
        released = pd.DatetimeIndex(f.index) + pd.Timedelta(days=conf.french_lag_days)
        frame, known = as_of(dates, f, released, True, conf.monthly_max_age_days)
        put("ff", frame, known)
    return pd.DataFrame(parts, index=range(len(dates)))


# news ---------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _embedded_news(path: str, size: int, mtime: float, cutoff: str, exchange_tz: str,
                   naive_tz: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The headlines of a file and their MiniLM embeddings (one row per headline), cached per file version."""
    from treum.zoo.text_encoder import embed_texts

    news = read_news(path, cutoff, exchange_tz, naive_tz, key="features.news_path")
    return news, embed_texts(list(news["text"]))


def load_embedded_news(conf: MultimodalFeaturesConfig) -> tuple[pd.DataFrame, np.ndarray]:
    path = os.path.abspath(os.path.expanduser(str(conf.news_path)))
    if not os.path.isfile(path):  # read_news words the error
        return _embedded_news.__wrapped__(path, 0, 0.0, conf.cutoff, conf.exchange_timezone, conf.naive_timezone)
    st = os.stat(path)
    return _embedded_news(path, st.st_size, st.st_mtime, conf.cutoff, conf.exchange_timezone, conf.naive_timezone)


def news_features(panel_index: pd.MultiIndex, news: pd.DataFrame, embeddings: np.ndarray) -> pd.DataFrame:
    """Per row of the panel, the mean embedding of its entity's headlines placed on that bar, and the mask.

    A headline goes to the first bar of its entity at or after its session date.
    """
    dim = embeddings.shape[1]
    out = np.zeros((len(panel_index), dim), dtype=np.float32)
    mask = np.zeros(len(panel_index), dtype=np.float32)
    ts = pd.DatetimeIndex(panel_index.get_level_values("timestamp")).as_unit("ns").asi8
    ent = panel_index.get_level_values("entity").astype(str).to_numpy()
    sessions = pd.DatetimeIndex(news["session"]).as_unit("ns").asi8
    news_ent = news["entity"].astype(str).to_numpy()
    by_entity = pd.Series(np.arange(len(news))).groupby(news_ent, sort=False).indices
    for entity, rows in pd.Series(np.arange(len(panel_index))).groupby(ent, sort=False).indices.items():
        picks = by_entity.get(entity)
        if picks is None:
            continue
        rows = rows[np.argsort(ts[rows], kind="stable")]
        bar = np.searchsorted(ts[rows], sessions[picks], side="left")
        placed = bar < len(rows)
        if not placed.any():
            continue
        target = rows[bar[placed]]
        uniq, inverse, counts = np.unique(target, return_inverse=True, return_counts=True)
        sums = np.zeros((len(uniq), dim), dtype=np.float64)
        np.add.at(sums, inverse, embeddings[picks[placed]].astype(np.float64))
        out[uniq] = (sums / counts[:, None]).astype(np.float32)
        mask[uniq] = 1.0
    frame = pd.DataFrame(out, index=panel_index, columns=news_columns(dim))
    frame[NEWS_MASK] = mask
    return frame


def features_config(cfg: Any) -> MultimodalFeaturesConfig:
    values = {} if cfg is None else {k: v for k, v in dict(cfg).items() if k != "name"}
    if values.get("technical") is None:
        values.pop("technical", None)
    return build_config(MultimodalFeaturesConfig, values, "features", "features 'multimodal'")


def compute(panel: pd.DataFrame, cfg: Any) -> pd.DataFrame:
    """Technical, macro and news features for every row of ``panel`` (technical NaN in warm-ups only)."""
    conf = features_config(cfg)
    tech = technical.compute(panel, dict(conf.technical))
    macro = macro_features(pd.DatetimeIndex(panel.index.get_level_values("timestamp")), conf)
    macro.index = panel.index
    if conf.news_path:
        news, embeddings = load_embedded_news(conf)
        text = news_features(panel.index, news, embeddings)
    else:
        text = pd.DataFrame({NEWS_MASK: np.zeros(len(panel), dtype=np.float32)}, index=panel.index)
    return pd.concat([tech, macro, text], axis=1)


@hookimpl
def treum_features() -> list[FeatureSetSpec]:
    return [
        FeatureSetSpec(
            "multimodal",
            "technical features, the VIX, the BAA-AAA credit spread and the Fama-French factors as known at each "
            "bar (release lags, f_macro_*), and the mean MiniLM embedding of each entity's headlines of the day "
            "(features.news_path, f_news_*)",
            compute,
        )
    ]
