"""Labelled financial text read from a path: the Financial PhraseBank, SemEval-2017 headlines, a CSV/JSON of (text, label).

No package ships labelled financial news, so the two research sets are files the user has
(their licences are research-only: they are never copied into the project). A config's
``path`` names the file; with ``path: null`` treum looks for the file's usual name in
``$TREUM_TEXT_DATA``, ``./shared/data`` and ``../shared/data``, and says where to put it when
it is in none of them. ``sentiment_sample`` is a small corpus the project writes itself (from
templates, in the PhraseBank format) so that tests and contract checks need no research file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from treum.core.corpus import make_corpus, validate_corpus
from treum.core.errors import DataValidationError
from treum.core.hookspecs import hookimpl
from treum.core.specs import DatasetSpec

CLASSES = ("negative", "neutral", "positive")
PHRASEBANK_FILE = "financial_phrasebank_50agree.txt"
SEMEVAL_FILE = "semeval2017_task5_headlines.json"
SEARCH_ENV = "TREUM_TEXT_DATA"
RESEARCH_CAVEAT = "research licence (non-commercial): evaluate on it, do not ship models trained on it"


def search_dirs() -> list[Path]:
    """Where a research file is looked for when a config gives no path, in order: ``$TREUM_TEXT_DATA``, then
    ``shared/data`` and ``../shared/data`` from the working folder and from the project's checkout."""
    dirs = [Path(p) for p in os.environ.get(SEARCH_ENV, "").split(os.pathsep) if p]
    checkout = Path(__file__).resolve().parents[3]  # treum/plugins/datasets/ -> the checkout (editable installs)
    found = dirs + [Path("shared/data"), Path("../shared/data"), checkout / "shared/data", checkout.parent / "shared/data"]
    return list(dict.fromkeys(found))


def find_file(cfg: Any, default_name: str) -> Path | None:
    """The configured ``path``, else the first ``default_name`` in ``search_dirs()``; None if there is none."""
    given = (cfg or {}).get("path")
    if given:
        path = Path(str(given)).expanduser()
        return path if path.is_file() else None
    for folder in search_dirs():
        if (folder / default_name).is_file():
            return folder / default_name
    return None


def missing_file(cfg: Any, default_name: str, what: str) -> str | None:
    """Why the file cannot be read here (None when it can): the error every reader raises."""
    if find_file(cfg, default_name) is not None:
        return None
    given = (cfg or {}).get("path")
    if given:
        return f"{given}: no such file; set data.path to the {what} file"
    places = ", ".join(str(d) for d in search_dirs())
    return (f"the {what} file '{default_name}' is not on this machine (looked in {places}); put it in one of "
            f"those folders, set ${SEARCH_ENV} to its folder, or set data.path=/path/to/{default_name}")


def _require(cfg: Any, default_name: str, what: str) -> Path:
    path = find_file(cfg, default_name)
    if path is None:
        raise DataValidationError(missing_file(cfg, default_name, what) or what)
    return path


def at_most(corpus: pd.DataFrame, cfg: Any) -> pd.DataFrame:
    """A stratified random subset of ``data.max_texts`` texts (seeded, in the corpus's order), for quick runs."""
    n = (cfg or {}).get("max_texts")
    if not n or len(corpus) <= int(n):
        return corpus
    if int(n) < 30:
        raise DataValidationError(f"data.max_texts={n} is too few to cross-validate; give 30 or more (or null)")
    share = int(n) / len(corpus)
    keep = corpus.groupby("label", group_keys=False).sample(frac=share, random_state=0).index
    out = corpus.loc[np.sort(keep)]
    out.index = pd.RangeIndex(len(out), name=corpus.index.name)
    return out


def parse_phrasebank(text: str, source: str) -> pd.DataFrame:
    """``sentence@label`` lines (the label after the last ``@``); blank lines are skipped."""
    texts, labels, lines = [], [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        sentence, sep, label = line.rpartition("@")
        if not sep:
            raise DataValidationError(f"{source}, line {number}: no '@label' at the end of {line[:60]!r}; "
                                      "each line is sentence@label (negative, neutral or positive)")
        texts.append(sentence.strip())
        labels.append(label.strip().lower())
        lines.append(number)
    return validate_corpus(make_corpus(texts, labels, lines), source, CLASSES)


def load_phrasebank(cfg: Any) -> pd.DataFrame:
    path = _require(cfg, PHRASEBANK_FILE, "Financial PhraseBank")
    encoding = (cfg or {}).get("encoding") or "latin-1"
    try:
        raw = path.read_bytes().decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise DataValidationError(f"{path}: cannot read it as {encoding} ({exc}); the PhraseBank is latin-1 "
                                  "(data.encoding=latin-1)") from None
    return at_most(parse_phrasebank(raw, str(path)), cfg)


def semeval_label(score: float, band: float) -> str:
    """A continuous sentiment score in [-1, 1] as a class: neutral within ``band`` of zero."""
    return "positive" if score > band else "negative" if score < -band else "neutral"


def load_semeval(cfg: Any) -> pd.DataFrame:
    """SemEval-2017 task 5 headlines: a JSON list of {id, company, title, sentiment}."""
    path = _require(cfg, SEMEVAL_FILE, "SemEval-2017 headlines")
    band = float((cfg or {}).get("neutral_band") or 0.0)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataValidationError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(rows, list):
        raise DataValidationError(f"{path}: expected a JSON list of {{id, company, title, sentiment}}")
    texts, labels, scores, companies = [], [], [], []
    for i, row in enumerate(rows, start=1):
        missing = [k for k in ("title", "sentiment") if not isinstance(row, dict) or k not in row]
        if missing:
            raise DataValidationError(f"{path}, item {i}: missing {missing}")
        try:
            score = float(row["sentiment"])
        except (TypeError, ValueError):
            raise DataValidationError(f"{path}, item {i}: sentiment {row['sentiment']!r} is not a number") from None
        texts.append(str(row["title"]))
        labels.append(semeval_label(score, band))
        scores.append(score)
        companies.append(str(row.get("company", "")))
    corpus = make_corpus(texts, labels, list(range(1, len(texts) + 1)), score=scores, company=companies)
    return at_most(validate_corpus(corpus, str(path), CLASSES), cfg)


def load_text_file(cfg: Any) -> pd.DataFrame:
    """A user's CSV or JSON (a list of records) with a text and a label column."""
    cfg = cfg or {}
    if not cfg.get("path"):
        raise DataValidationError("data=text_file needs data.path=/path/to/file.csv (or .json) with text and label columns")
    path = Path(str(cfg["path"])).expanduser()
    if not path.is_file():
        raise DataValidationError(f"{path}: no such file (set data.path to a CSV or JSON of text and label)")
    encoding = cfg.get("encoding") or "utf-8"
    try:
        if path.suffix.lower() == ".csv":
            raw = pd.read_csv(path, encoding=encoding)
            first_line = 2  # the header is line 1
        elif path.suffix.lower() == ".json":
            raw = pd.DataFrame(json.loads(path.read_text(encoding=encoding)))
            first_line = 1
        else:
            raise DataValidationError(f"{path}: unsupported file type '{path.suffix}' (use .csv or .json)")
    except DataValidationError:
        raise
    except (UnicodeDecodeError, LookupError) as exc:
        raise DataValidationError(f"{path}: cannot read it as {encoding} ({exc}); set data.encoding") from None
    except (ValueError, OSError) as exc:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise DataValidationError(f"{path}: not a readable {path.suffix.lstrip('.').upper()} of text and label "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    text_col, label_col = cfg.get("text_column") or "text", cfg.get("label_column") or "label"
    missing = [c for c in (text_col, label_col) if c not in raw.columns]
    if missing:
        raise DataValidationError(f"{path}: no column(s) {missing} (columns: {list(raw.columns)}); "
                                  "set data.text_column and data.label_column")
    labels = raw[label_col].astype(str).str.strip().str.lower()
    corpus = make_corpus(raw[text_col].tolist(), labels.tolist(), list(range(first_line, first_line + len(raw))))
    return at_most(validate_corpus(corpus, str(path), CLASSES), cfg)


# the packaged sample: sentences the project writes itself ------------------------------------
_COMPANIES = ("Aldena", "Borvik Group", "Castelle Oyj", "Dunmore Bank", "Eskola Foods", "Fjordline",
              "Granmark", "Halvard Steel", "Isomet", "Jurva Energy", "Kestrel Paper", "Lumora")
_TEMPLATES = {
    "positive": (
        "{c} said its operating profit rose to EUR {a} mn from EUR {b} mn a year earlier .",
        "{c} raised its full-year outlook after net sales grew by {p} % .",
        "Net profit at {c} increased to EUR {a} mn , beating analysts ' forecasts .",
        "{c} won a EUR {a} mn order that will lift its order book .",
        "Shares in {c} jumped {p} % after the company reported record quarterly earnings .",
    ),
    "negative": (
        "{c} swung to an operating loss of EUR {a} mn from a profit of EUR {b} mn .",
        "{c} cut its guidance and warned that sales would fall by {p} % .",
        "Net sales at {c} decreased by {p} % as demand weakened .",
        "{c} will lay off {n} employees after orders collapsed .",
    ),
    "neutral": (
        "{c} is headquartered in Helsinki and employs about {n} people .",
        "The annual general meeting of {c} will be held on {d} May .",
        "{c} will publish its interim report on {d} October .",
        "The agreement between {c} and the city covers the period to {y} .",
        "{c} operates {n} stores in the Nordic countries .",
        "The company 's board proposed that {c} pay a dividend in line with its policy .",
        "{c} supplies packaging materials to food producers .",
    ),
}
SAMPLE_SHARES = {"negative": 0.15, "neutral": 0.55, "positive": 0.30}  # about the PhraseBank's mix


def sample_lines(n: int = 240, seed: int = 0) -> list[str]:
    """``n`` PhraseBank-format lines made from templates (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    out = []
    for label, share in SAMPLE_SHARES.items():
        for _ in range(int(round(n * share))):
            template = _TEMPLATES[label][rng.integers(len(_TEMPLATES[label]))]
            a, b = sorted(rng.uniform(1, 90, 2).round(1), reverse=label == "positive")
            sentence = template.format(c=_COMPANIES[rng.integers(len(_COMPANIES))], a=a, b=b,
                                       p=int(rng.integers(2, 40)), n=int(rng.integers(20, 4000)),
                                       d=int(rng.integers(1, 28)), y=int(rng.integers(2027, 2035)))
            out.append(f"{sentence}@{label}")
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def load_sample(cfg: Any) -> pd.DataFrame:
    n = int((cfg or {}).get("n") or 240)
    return parse_phrasebank("\n".join(sample_lines(n)), "sentiment_sample")


@hookimpl
def treum_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            "phrasebank", "Financial PhraseBank v1.0, 50%-agree: 4,846 news sentences labelled negative/neutral/positive",
            load_phrasebank, source="Malo et al. 2014, read from data.path", frequency="none",
            caveat=RESEARCH_CAVEAT, kind="corpus",
            missing=lambda cfg: missing_file(cfg, PHRASEBANK_FILE, "Financial PhraseBank"),
        ),
        DatasetSpec(
            "semeval_headlines", "SemEval-2017 task 5 financial headlines; the score's sign is the class "
            "(neutral within data.neutral_band of zero)",
            load_semeval, source="Cortis et al. 2017, read from data.path", frequency="none",
            caveat=RESEARCH_CAVEAT, kind="corpus",
            missing=lambda cfg: missing_file(cfg, SEMEVAL_FILE, "SemEval-2017 headlines"),
        ),
        DatasetSpec(
            "text_file", "your labelled text: a CSV or JSON with text and label (negative/neutral/positive) columns",
            load_text_file, source="data.path", frequency="none", kind="corpus",
        ),
        DatasetSpec(
            "sentiment_sample", "240 template sentences the project writes itself, in the PhraseBank format "
            "(for tests and contract checks; not a benchmark)",
            load_sample, source="treum (generated)", frequency="none",
            caveat="template sentences, not real news: figures on it say nothing about real text", kind="corpus",
        ),
    ]
