"""The Corpus: labelled text as a frame indexed by ``doc``, the data of tasks whose rows have no time order.

Columns: ``text`` (a non-empty string) and ``label`` (the class a person gave it, as a
string), plus whatever the source has (``score``, ``company``, ``timestamp``). A corpus data
set (``DatasetSpec(kind="corpus")``) passes ``validate_corpus`` before use; an error names the
source, the line and what to fix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from treum.core.errors import DataValidationError

DOC_INDEX = "doc"
LABEL_COLUMNS = ("label", "score")  # what a person decided about the text: the task's labels come from them


def corpus_inputs(corpus: pd.DataFrame) -> pd.DataFrame:
    """The corpus less its label columns: what a model may see beside the task's ``target*`` columns."""
    return corpus.drop(columns=[c for c in LABEL_COLUMNS if c in corpus.columns])


def make_corpus(texts: Sequence[str], labels: Sequence[str], lines: Sequence[int] | None = None,
                **extra: Sequence) -> pd.DataFrame:
    """A corpus frame; ``lines`` (the source's line numbers) become the ``line`` column errors name."""
    frame = pd.DataFrame({"text": list(texts), "label": list(labels), **{k: list(v) for k, v in extra.items()}})
    frame["line"] = list(lines) if lines is not None else np.arange(1, len(frame) + 1)
    frame.index = pd.RangeIndex(len(frame), name=DOC_INDEX)
    return frame


def validate_corpus(frame: pd.DataFrame, source: str, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Check a corpus: a ``text`` and a ``label`` column, no empty text, labels among ``classes`` (if given)."""
    if frame.index.name != DOC_INDEX:
        raise DataValidationError(f"{source}: a corpus is indexed by '{DOC_INDEX}', got {frame.index.name!r}")
    if len(frame) == 0:
        raise DataValidationError(f"{source}: the corpus is empty")
    missing = [c for c in ("text", "label") if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{source}: missing column(s) {missing}; found {list(frame.columns)}")
    if frame.index.duplicated().any():
        raise DataValidationError(f"{source}: duplicate document ids, e.g. {frame.index[frame.index.duplicated()][0]!r}")
    line = frame["line"] if "line" in frame.columns else pd.Series(frame.index, index=frame.index)
    text = frame["text"]
    empty = text.isna() | (text.astype(str).str.strip() == "")
    if empty.any():
        at = line[empty].iloc[0]
        raise DataValidationError(f"{source}, line {at}: empty text; drop the line or give it a sentence")
    if classes is not None:
        bad = ~frame["label"].isin(list(classes))
        if bad.any():
            at = line[bad].iloc[0]
            raise DataValidationError(
                f"{source}, line {at}: label {frame['label'][bad].iloc[0]!r} is not one of {list(classes)}"
            )
    return frame
