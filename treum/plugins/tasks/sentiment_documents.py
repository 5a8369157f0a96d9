"""Long documents (earnings-call transcripts, filings, reports): sentences scored one by one, then aggregated.

A sentiment model is trained on sentences, so a document is split into sentences
(``split_sentences``), each sentence is scored, and the document's tone is the mean of the
sentences' tones (P(positive) - P(negative)) over the sentences that say something (at
least ``min_words`` words: "Thank you." and speaker labels carry no tone). The drivers are the
sentences that move the tone most in its own direction, and the counterpoints the strongest
ones against it, so that a reader can check the figure against the text.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from treum.core.corpus import DOC_INDEX
from treum.core.errors import DataValidationError

# a full stop after these never ends a sentence ("Mr. Virtanen"); after these, not before a number ("Sept. 30", "No. 5")
_TITLES = frozenset({"mr", "mrs", "ms", "dr", "prof", "messrs", "sen", "rep", "gov", "gen", "hon"})
_BEFORE_NUMBERS = frozenset({"no", "nos", "fig", "vol", "approx", "art", "sec", "jan", "feb", "mar", "apr", "jun",
                             "jul", "aug", "sep", "sept", "oct", "nov", "dec"})
_END = re.compile(r"(?<=[.!?])[\"'”’)]*\s+(?=[\"'“‘(]?[A-Z0-9])")
_SPEAKER = re.compile(r"^\s*[A-Z][\w.\- ]{0,60}:\s*$")  # "Operator:" on a line of its own
MAX_SENTENCES = 2000


def _paragraphs(text: str) -> list[str]:
    """Blocks of text: blank lines and speaker labels end one; a single line break inside one (a hard-wrapped
    file) is a space."""
    out: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if not line.strip() or _SPEAKER.match(line):
            if current:
                out.append(" ".join(current))
            current = []
            continue
        current.append(line.strip())
    if current:
        out.append(" ".join(current))
    return out


def split_sentences(text: str) -> list[str]:
    """Sentences of a document, in order: paragraphs (blank lines, speaker labels), then full stops.

    A line break inside a paragraph is a space (hard-wrapped transcripts and filings). A full stop
    ends a sentence when the next word starts with a capital or a digit, except after a title
    ("Mr. Virtanen"), an initial ("J. Doe"), or an abbreviation that precedes a number ("No. 5",
    "Sept. 30"); inside a number ("3.5") there is no space, so no end.
    """
    sentences: list[str] = []
    for block in _paragraphs(text):
        block = " ".join(block.split())
        start = 0
        for m in _END.finditer(block):
            before = block[start:m.start()].rstrip("\"'”’)")
            last = before.rsplit(" ", 1)[-1].rstrip(".!?").lower()
            nxt = block[m.end():m.end() + 1]
            if before.endswith(".") and (last in _TITLES or (len(last) == 1 and last.isalpha())
                                         or (last in _BEFORE_NUMBERS and nxt.isdigit())):
                continue
            sentences.append(block[start:m.start()].strip())
            start = m.end()
        tail = block[start:].strip()
        if tail:
            sentences.append(tail)
    return [s for s in sentences if s]


def document_corpus(text: str) -> pd.DataFrame:
    """A document's sentences as a corpus frame (``text``, ``line`` = the sentence's number), ready to predict."""
    if not isinstance(text, str) or not text.strip():
        raise DataValidationError("the document is empty; give its text")
    sentences = split_sentences(text)
    if not sentences:
        raise DataValidationError("the document has no sentence to score")
    if len(sentences) > MAX_SENTENCES:
        raise DataValidationError(f"the document has {len(sentences):,} sentences; split it into parts of at most "
                                  f"{MAX_SENTENCES:,}")
    frame = pd.DataFrame({"text": sentences, "line": np.arange(1, len(sentences) + 1)})
    frame.index = pd.RangeIndex(len(frame), name=DOC_INDEX)
    return frame


def aggregate(sentences: list[str], proba: pd.DataFrame, top: int = 5, min_words: int = 4,
              neutral_band: float = 0.1) -> dict[str, Any]:
    """The document's tone and class shares from its sentences' probabilities, with the sentences that drive it.

    The document's label is positive when its tone exceeds ``neutral_band``, negative below minus it.
    """
    p = proba[["p_negative", "p_neutral", "p_positive"]].to_numpy(dtype=float)
    tones = p[:, 2] - p[:, 0]
    words = np.array([len(s.split()) for s in sentences])
    counted = words >= min_words
    if not counted.any():
        counted = np.ones(len(sentences), dtype=bool)
    doc_tone = float(tones[counted].mean())
    calls = p.argmax(axis=1)[counted]
    mean_p = p[counted].mean(axis=0)
    sign = 1.0 if doc_tone >= 0 else -1.0
    order = np.argsort(-sign * tones, kind="stable")
    eligible = [int(i) for i in order if counted[i]]

    def row(i: int) -> dict[str, Any]:
        return {"sentence": int(i) + 1, "text": sentences[i], "tone": round(float(tones[i]), 4),
                "label": ("negative", "neutral", "positive")[int(p[i].argmax())]}

    drivers = [row(i) for i in eligible[:top] if sign * tones[i] > 0]
    counter = [row(i) for i in eligible[::-1][:top] if sign * tones[i] < 0]
    return {
        "tone": round(doc_tone, 4),
        "label": "positive" if doc_tone > neutral_band else "negative" if doc_tone < -neutral_band else "neutral",
        "probabilities": {c: round(float(v), 4) for c, v in zip(("negative", "neutral", "positive"), mean_p)},
        "sentences": len(sentences),
        "sentences_scored": int(counted.sum()),
        "shares": {c: round(float((calls == k).mean()), 4) for k, c in enumerate(("negative", "neutral", "positive"))},
        "drivers": drivers,
        "counterpoints": counter,
    }


def score_document(model: Any, text: str, top: int = 5) -> dict[str, Any]:
    """Split, score every sentence with ``model`` (a fitted sentiment model), aggregate."""
    corpus = document_corpus(text)
    proba = model.predict(corpus)
    return aggregate(corpus["text"].tolist(), proba, top=top)
