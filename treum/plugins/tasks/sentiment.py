"""Sentiment: the probabilities that a financial text is negative, neutral or positive.

Data: a corpus (``treum.core.corpus``: ``text`` and ``label``), not a panel. Labels:
``target`` is the class index (0 negative, 1 neutral, 2 positive). Predictions:
``p_negative``, ``p_neutral``, ``p_positive`` (each in [0, 1], summing to one).

Scoring: stratified k-fold cross-validation over sentences (5 folds by default), not the
walk-forward. The labelled sentences carry no dates, so there is no time order to respect:
what a fold must not do is see its test sentences, and stratification keeps each fold's class
mix the corpus's. Each fold's validation rows (for early stopping) are carved out of its
training rows. Metrics: accuracy and macro-F1 over all held-out rows with a bootstrap CI for
accuracy, their spread (standard deviation) over folds, the log loss, and the polarity accuracy
(positive against negative, neutral ignored). Against the reference (TF-IDF with logistic
regression): McNemar's exact test on the rows one model gets right and the other wrong.

Baselines: the training folds' majority class, and TF-IDF (word 1-2-grams) with logistic regression.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, log_loss

from treum.core.evaluation import RowFold
from treum.core.hookspecs import hookimpl
from treum.core.specs import Baseline, TaskExample, TaskSpec
from treum.core.task import Task

CLASSES = ("negative", "neutral", "positive")
COLUMNS = tuple(f"p_{c}" for c in CLASSES)
POLARITY = {"negative": -1.0, "neutral": 0.0, "positive": 1.0}


@dataclass
class SentimentConfig:
    folds: int = 5  # stratified cross-validation folds
    valid_fraction: float = 0.1  # of each fold's training rows, held out for early stopping

    def validate(self) -> str | None:
        if self.folds < 2:
            return f"folds must be at least 2, got {self.folds}"
        if not 0 < self.valid_fraction < 0.5:
            return f"valid_fraction must be in (0, 0.5), got {self.valid_fraction}"
        return None


def class_index(labels: pd.Series) -> pd.Series:
    """Class names as indices 0..2 (NaN for a name that is not a class)."""
    return labels.map({c: float(i) for i, c in enumerate(CLASSES)})


def text_groups(frame: pd.DataFrame) -> np.ndarray:
    """One group per distinct text (case and spacing ignored): the copies of a text fall in one fold."""
    normal = frame["text"].astype(str).str.lower().str.split().str.join(" ")
    return pd.factorize(normal)[0]


def polarity_accuracy(y: np.ndarray, proba: np.ndarray) -> tuple[float, float]:
    """(accuracy, n) of positive against negative on the rows labelled either, the call being P(pos) > P(neg)."""
    keep = y != 1
    if not keep.any():
        return float("nan"), 0.0
    call = np.where(proba[keep, 2] > proba[keep, 0], 2, 0)
    return float((call == y[keep]).mean()), float(keep.sum())


def sentiment_metrics(y: np.ndarray, proba: np.ndarray, folds: np.ndarray | None, n_boot: int, seed: int) -> dict[str, float]:
    """Accuracy (with a bootstrap CI), macro-F1, their spread over folds, log loss and polarity accuracy."""
    y = np.asarray(y, dtype=int)
    pred = proba.argmax(axis=1)
    out: dict[str, float] = {"n": float(len(y))}
    if not len(y):
        return out
    out["accuracy"] = float(accuracy_score(y, pred))
    out["macro_f1"] = float(f1_score(y, pred, average="macro", labels=[0, 1, 2], zero_division=0))
    clipped = np.clip(proba, 1e-7, 1)
    out["log_loss"] = float(log_loss(y, clipped / clipped.sum(axis=1, keepdims=True), labels=[0, 1, 2]))
    out["polarity_accuracy"], out["polarity_n"] = polarity_accuracy(y, proba)
    if n_boot > 0 and len(y) > 1:  # the rows are exchangeable: an ordinary (iid) bootstrap
        rng = np.random.default_rng(seed)
        hits = (pred == y).astype(float)
        draws = rng.integers(0, len(y), size=(n_boot, len(y)))
        boot = hits[draws].mean(axis=1)
        out["accuracy_ci_low"], out["accuracy_ci_high"] = (float(q) for q in np.quantile(boot, [0.025, 0.975]))
    if folds is not None:
        per = [(accuracy_score(y[folds == k], pred[folds == k]),
                f1_score(y[folds == k], pred[folds == k], average="macro", labels=[0, 1, 2], zero_division=0))
               for k in np.unique(folds)]
        if len(per) > 1:
            out["accuracy_std"] = float(np.std([a for a, _ in per], ddof=1))
            out["macro_f1_std"] = float(np.std([f for _, f in per], ddof=1))
    for i, c in enumerate(CLASSES):
        out[f"share_{c}_predicted"] = float((pred == i).mean())
    return out


def mcnemar_pvalue(right_a: np.ndarray, right_b: np.ndarray) -> float:
    """McNemar's exact (binomial) test of two classifiers on the same rows."""
    from scipy.stats import binomtest

    b = int((right_a & ~right_b).sum())
    c = int((~right_a & right_b).sum())
    if b + c == 0:
        return 1.0
    return float(binomtest(b, b + c, 0.5).pvalue)


class Sentiment(Task):
    def make_targets(self, corpus: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"target": class_index(corpus["label"])}, index=corpus.index)

    def label_horizon(self) -> int | None:
        return 0  # the label is the text's own: nothing ahead to purge

    def prediction_columns(self) -> tuple[str, ...]:
        return COLUMNS

    def column_ranges(self) -> dict[str, tuple[float, float]]:
        return {c: (0.0, 1.0) for c in COLUMNS}

    def check_predictions(self, pred: pd.DataFrame, rows: pd.Index | None = None) -> list[str]:
        problems = super().check_predictions(pred, rows)
        if problems:
            return problems
        sub = pred if rows is None else pred.loc[rows]
        total = sub[list(COLUMNS)].to_numpy(dtype=float).sum(axis=1)
        off = np.abs(total - 1) > 1e-4
        if off.any():
            return [f"class probabilities sum to {total[off][0]:.6f}, not 1, on {int(off.sum())} rows"]
        return []

    # the scheme -----------------------------------------------------------------
    def row_folds(self, frame: pd.DataFrame, seed: int) -> list[RowFold]:
        """Stratified k folds in which every copy of a text is on one side (grouped by the normalised text).

        Research corpora repeat texts (SemEval's headlines: 182 of 1,142); a copy in the training
        rows would let a model answer its twin in the test rows from memory.
        """
        from sklearn.model_selection import StratifiedGroupKFold

        y, groups = self._labels(frame), text_groups(frame)
        k = self.config.folds
        counts = np.bincount(y.astype(int), minlength=3)
        if counts.min() < 2 * k:
            raise ValueError(f"stratified {k}-fold with validation texts needs at least {2 * k} texts of each class; "
                             f"the corpus has {dict(zip(CLASSES, counts.tolist()))}; use task.folds=N with a smaller "
                             "N or a larger corpus")
        folds = []
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        for i, (train, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
            fit, valid = self._carve_valid(train, y[train], groups[train], seed + i)
            folds.append(RowFold(i, fit, valid, np.sort(test)))
        return folds

    def final_rows(self, frame: pd.DataFrame, seed: int) -> RowFold:
        y = self._labels(frame)
        everything = np.arange(len(y))
        fit, valid = self._carve_valid(everything, y, text_groups(frame), seed)
        return RowFold(-1, fit, valid, np.array([], dtype=int))

    def evaluation_note(self) -> str:
        return (f"stratified {self.config.folds}-fold cross-validation over texts (they carry no dates, so there "
                "is no time order to walk forward in)")

    def scheme(self) -> str:
        return f"stratified {self.config.folds}-fold cross-validation, held-out texts"

    def _labels(self, frame: pd.DataFrame) -> np.ndarray:
        y = frame["target"]
        if y.isna().any():
            raise ValueError(f"{int(y.isna().sum())} texts have no class label (labels are {list(CLASSES)})")
        return y.to_numpy(dtype=int)

    def _carve_valid(self, rows: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """About ``valid_fraction`` of ``rows`` for validation, stratified, copies of a text kept together."""
        from sklearn.model_selection import StratifiedGroupKFold

        parts = max(int(round(1 / self.config.valid_fraction)), 2)
        splitter = StratifiedGroupKFold(n_splits=parts, shuffle=True, random_state=seed)
        fit, valid = next(splitter.split(np.zeros(len(rows)), y, groups))
        return np.sort(rows[fit]), np.sort(rows[valid])

    def fixed_rule(self, frame: pd.DataFrame) -> tuple[str, pd.DataFrame]:
        """Always positive: what a version applied to other labelled text must beat on polarity."""
        return "always_positive", pd.DataFrame({c: float(c == "p_positive") for c in COLUMNS}, index=frame.index)

    # scoring --------------------------------------------------------------------
    def score(self, oos: pd.DataFrame, n_boot: int, seed: int) -> dict[str, float]:
        sub = oos[oos["target"].notna()].dropna(subset=list(COLUMNS))
        folds = sub["fold"].to_numpy() if "fold" in sub.columns else None
        return sentiment_metrics(sub["target"].to_numpy(), sub[list(COLUMNS)].to_numpy(dtype=float), folds, n_boot, seed)

    def compare(self, oos: pd.DataFrame, reference: pd.DataFrame) -> dict[str, float]:
        both = oos.index.intersection(reference.index)
        y = oos.loc[both, "target"].to_numpy()
        mine = oos.loc[both, list(COLUMNS)].to_numpy(dtype=float).argmax(axis=1) == y
        theirs = reference.loc[both, list(COLUMNS)].to_numpy(dtype=float).argmax(axis=1) == y
        return {"accuracy_diff": float(mine.mean() - theirs.mean()), "mcnemar_pvalue": mcnemar_pvalue(mine, theirs)}

    def performance_row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        return {"accuracy": metrics.get("accuracy"), "f1_score": metrics.get("macro_f1"),
                "total_predictions": int(metrics.get("n", 0) or 0),
                "prediction_distribution": {f"share_{c}_predicted": metrics.get(f"share_{c}_predicted")
                                            for c in CLASSES}}

    # serving --------------------------------------------------------------------
    def label(self, values: Mapping[str, float]) -> str:
        return CLASSES[int(np.argmax([values[c] for c in COLUMNS]))]

    def describe(self, values: Mapping[str, float]) -> dict[str, Any]:
        return {"tone": tone(values)}

    def log_fields(self, values: Mapping[str, float]) -> dict[str, Any]:
        return {"prediction_value": tone(values), "prediction_probability": float(max(values[c] for c in COLUMNS)),
                "prediction_class": self.label(values)}

    def score_outcome(self, logged: Mapping[str, Any], actual: float) -> tuple[bool | None, float | None]:
        """``actual`` is the text's polarity as a person labelled it: -1 negative, 0 neutral, 1 positive."""
        if actual not in (-1, 0, 1):
            raise ValueError(f"a sentiment outcome is -1 (negative), 0 (neutral) or 1 (positive), got {actual}")
        label = logged.get("prediction_class")
        value = logged.get("prediction_value")
        correct = None if label is None else POLARITY[label] == actual
        return correct, (None if value is None else float(value) - float(actual))


def tone(values: Mapping[str, float]) -> float:
    """P(positive) - P(negative): the signed tone in [-1, 1]."""
    return float(values["p_positive"]) - float(values["p_negative"])


def probabilities(proba: np.ndarray, index: Sequence) -> pd.DataFrame:
    """A prediction frame from an (n, 3) array of class probabilities (rows renormalised)."""
    proba = np.asarray(proba, dtype=float)
    proba = proba / proba.sum(axis=1, keepdims=True)
    return pd.DataFrame(proba, columns=list(COLUMNS), index=index)


Sentiment.spec = TaskSpec(
    name="sentiment",
    description="P(negative), P(neutral), P(positive) of a financial text; stratified k-fold over texts",
    config_cls=SentimentConfig,
    factory=Sentiment,
    primary_metric="accuracy",
    higher_is_better=True,
    baselines=(Baseline("majority", "majority_sentiment"), Baseline("tfidf_lr", "tfidf_lr")),
    headline=("accuracy", "accuracy_std", "macro_f1", "macro_f1_std", "log_loss", "polarity_accuracy", "mcnemar_pvalue"),
    example=TaskExample("sentiment_sample", "", ""),
    reference="tfidf_lr",
    data="phrasebank",
    # the demo's two minutes: 1,500 of the 4,846 sentences (stratified); `treum leaderboard task=sentiment
    # data=phrasebank` scores every one
    demo=("data.max_texts=1500",),
    data_kind="corpus",
)


@hookimpl
def treum_tasks() -> list[TaskSpec]:
    return [Sentiment.spec]
