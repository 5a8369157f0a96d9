"""Walk-forward evaluation, written once for every model and baseline.

The test segment is cut into blocks of ``refit_every`` bars. Before each block
the model is refit from scratch on everything before it (expanding window) or
on the last ``window_bars`` bars (rolling), less a purge of ``purge`` bars
(so that no training label looks into the block) and an embargo. When the data
has a valid segment, each fold's last ``len(valid)`` bars before the gap are
the validation set, never the test block.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from treum.core.data import Segments
from treum.core.errors import ConfigError


@dataclass
class WalkForwardConfig:
    refit_every: int = 252
    window: Literal["expanding", "rolling"] = "expanding"
    window_bars: int | None = None
    purge: int | None = None  # None: the task's longest label horizon
    embargo: int = 0
    bootstrap: int = 500
    seed: int = 0

    def validate(self) -> str | None:
        if self.refit_every < 1:
            return f"eval.refit_every must be at least 1, got {self.refit_every}"
        if self.window == "rolling" and not self.window_bars:
            return "eval.window=rolling needs eval.window_bars"
        if self.embargo < 0 or (self.purge is not None and self.purge < 0):
            return "eval.purge and eval.embargo cannot be negative"
        return None


@dataclass(frozen=True)
class Fold:
    index: int
    train: tuple[pd.Timestamp, pd.Timestamp]
    valid: tuple[pd.Timestamp, pd.Timestamp] | None
    test: tuple[pd.Timestamp, pd.Timestamp]

    @property
    def fit_end(self) -> pd.Timestamp:
        """The last bar whose data the fold's fit may see (the end of valid, else of train)."""
        return (self.valid or self.train)[1]


def make_folds(
    timestamps: pd.DatetimeIndex, segments: Segments, cfg: WalkForwardConfig, purge: int,
    valid_len: int | None = None,
) -> list[Fold]:
    """Folds over the test segment; every date a fold trains or validates on precedes its test block.

    Each fold validates on the ``valid_len`` bars before its gap (by default as many as the
    valid segment holds; none without one).
    """
    ts = pd.DatetimeIndex(np.unique(timestamps.values))
    test_idx = np.flatnonzero((ts >= segments.test[0]) & (ts <= segments.test[1]))
    if len(test_idx) == 0:
        raise ConfigError(f"no bars in the test segment {segments.test[0].date()}..{segments.test[1].date()}")
    if valid_len is None:
        valid_len = 0
        if segments.valid is not None:
            valid_len = int(((ts >= segments.valid[0]) & (ts <= segments.valid[1])).sum())
    first_train = int(np.searchsorted(ts, segments.train[0]))
    gap = purge + cfg.embargo
    folds = []
    for k, start in enumerate(range(test_idx[0], test_idx[-1] + 1, cfg.refit_every)):
        stop = min(start + cfg.refit_every, test_idx[-1] + 1) - 1
        fit_end = start - gap - 1  # last bar a label may be fitted on
        if valid_len:
            valid = (ts[fit_end - valid_len + 1], ts[fit_end])
            train_end = fit_end - valid_len - purge
        else:
            valid = None
            train_end = fit_end
        train_start = first_train
        if cfg.window == "rolling":
            train_start = max(first_train, train_end - int(cfg.window_bars) + 1)
        if train_end - train_start < 50:
            raise ConfigError(
                f"fold {k} would train on {max(train_end - train_start + 1, 0)} bars; "
                "move data.segments.train earlier or shorten the purge/valid segment"
            )
        folds.append(Fold(k, (ts[train_start], ts[train_end]), valid, (ts[start], ts[stop])))
    return folds


def rows_in(frame: pd.DataFrame, span: tuple[pd.Timestamp, pd.Timestamp]) -> pd.DataFrame:
    """Rows whose timestamp lies in the closed span."""
    ts = frame.index.get_level_values("timestamp")
    return frame[(ts >= span[0]) & (ts <= span[1])]


LabelsAsOf = Callable[[pd.Timestamp], pd.DataFrame]


@dataclass
class EvaluationResult:
    name: str
    predictions: pd.DataFrame  # out of sample, with a ``fold`` column
    folds: list[Fold]
    fit_seconds: float
    predict_seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    last_model: Any = None  # the last fold's fitted model (for ``Model.run_files``)


def without_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame less its label columns (``target*``): what ``predict`` may see."""
    return frame.drop(columns=[c for c in frame.columns if str(c).startswith("target")])


def fit_rows(frame: pd.DataFrame, fold: Fold, labels_as_of: LabelsAsOf | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The (train, valid) rows of a fold.

    With ``labels_as_of`` (labels decided after the fact), the training rows carry the
    labels as known at the fold's last training bar and the validation rows those known
    at its last validation bar: no label a fold uses is decided by a later price.
    """
    train = rows_in(frame, fold.train)
    valid = rows_in(frame, fold.valid) if fold.valid else None
    if labels_as_of is not None:
        train = _relabel(train, labels_as_of(fold.train[1]))
        valid = _relabel(valid, labels_as_of(fold.valid[1])) if valid is not None else None
    return train, valid


def _relabel(rows: pd.DataFrame, known: pd.DataFrame) -> pd.DataFrame:
    """Every label column as known: those ``known`` gives, and NaN for any it does not (never the full sample's)."""
    rows = rows.copy()
    for col in [c for c in rows.columns if str(c).startswith("target")]:
        rows[col] = known[col].reindex(rows.index) if col in known.columns else np.nan
    return rows


def walk_forward(
    name: str,
    build: Callable[[], Any],
    frame: pd.DataFrame,
    folds: list[Fold],
    sequential: bool,
    on_fold: Callable[[int, int], None] | None = None,
    labels_as_of: LabelsAsOf | None = None,
) -> EvaluationResult:
    """Refit a fresh model per fold and collect its out-of-sample predictions.

    ``build()`` returns an unfitted model. A ``sequential`` model is given the
    rows before each test block as context for its predictions (never for fitting).
    ``labels_as_of(end)``, for labels decided after the fact, gives the label columns
    as they were known at ``end``; each fold fits on those, never on labels that
    later prices decided.
    """
    parts = []
    fit_s = pred_s = 0.0
    model = None
    ts = frame.index.get_level_values("timestamp")
    inputs = without_labels(frame)  # labels look forward: predict never sees them
    for fold in folds:
        model = build()
        train, valid = fit_rows(frame, fold, labels_as_of)
        t0 = time.perf_counter()
        model.fit(train, valid)
        t1 = time.perf_counter()
        context = inputs[ts <= fold.test[1]] if sequential else rows_in(inputs, fold.test)
        # predict_from: a model may skip the context rows' own answers (treum.core.model.Model)
        from_start = getattr(model, "predict_from", None)
        pred = from_start(context, fold.test[0]) if from_start is not None else model.predict(context)
        pred_s += time.perf_counter() - t1
        fit_s += t1 - t0
        pred = rows_in(pred, fold.test).copy()
        pred["fold"] = fold.index
        parts.append(pred)
        if on_fold is not None:
            on_fold(fold.index + 1, len(folds))
    predictions = pd.concat(parts).sort_index()
    return EvaluationResult(name, predictions, folds, fit_s, pred_s, last_model=model)


def final_fold(timestamps: pd.DatetimeIndex, segments: Segments, cfg: WalkForwardConfig, purge: int) -> Fold:
    """The fit of the version that gets registered: everything up to the end of the test segment.

    Its figures are the walk-forward ones; this fit only uses the newest labelled data,
    with the same purge and the same length of validation set as the folds.
    """
    ts = pd.DatetimeIndex(np.unique(timestamps.values))
    end = int(np.searchsorted(ts, segments.test[1], side="right")) - 1
    valid_len = 0
    if segments.valid is not None:
        valid_len = int(((ts >= segments.valid[0]) & (ts <= segments.valid[1])).sum())
    fit_end = end - purge
    first = int(np.searchsorted(ts, segments.train[0]))
    if valid_len:
        return Fold(-1, (ts[first], ts[fit_end - valid_len - purge]), (ts[fit_end - valid_len + 1], ts[fit_end]), (ts[end], ts[end]))
    return Fold(-1, (ts[first], ts[fit_end]), None, (ts[end], ts[end]))


@dataclass(frozen=True)
class RowFold:
    """A fold of rows that have no time order (sentences): positions into the frame, not dates.

    A task whose rows are exchangeable (``Task.row_folds``) is scored by cross-validation over
    these instead of the walk-forward; ``valid`` is carved out of the training rows, never the test rows.
    """

    index: int
    train: np.ndarray
    valid: np.ndarray | None
    test: np.ndarray


def cross_validate(
    name: str,
    build: Callable[[], Any],
    frame: pd.DataFrame,
    folds: list[RowFold],
    on_fold: Callable[[int, int], None] | None = None,
) -> EvaluationResult:
    """Fit a fresh model per fold on its training rows and predict its held-out rows (each row once)."""
    parts = []
    fit_s = pred_s = 0.0
    model = None
    inputs = without_labels(frame)
    for fold in folds:
        model = build()
        valid = frame.iloc[fold.valid] if fold.valid is not None and len(fold.valid) else None
        t0 = time.perf_counter()
        model.fit(frame.iloc[fold.train], valid)
        t1 = time.perf_counter()
        pred = model.predict(inputs.iloc[fold.test]).copy()
        pred_s += time.perf_counter() - t1
        fit_s += t1 - t0
        pred["fold"] = fold.index
        parts.append(pred)
        if on_fold is not None:
            on_fold(fold.index + 1, len(folds))
    predictions = pd.concat(parts)
    predictions = predictions.loc[frame.index[frame.index.isin(predictions.index)]]  # the frame's order
    return EvaluationResult(name, predictions, list(folds), fit_s, pred_s, last_model=model)
