"""The sentiment task and its text data: readers, stratified folds, scoring, documents, the corpus path of a run.

The research files are never read here: every test writes its own small fixture.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from treum.commands import run as stages
from treum.commands.compose import compose_leaderboard
from treum.core.errors import DataValidationError, TreumError
from treum.core.plugins import PluginSettings, create_plugin_registry
from treum.core.task import build_task
from treum.plugins.datasets import text_data
from treum.plugins.tasks.sentiment import COLUMNS, mcnemar_pvalue, sentiment_metrics
from treum.plugins.tasks.sentiment_documents import aggregate, score_document, split_sentences

PLUGINS = create_plugin_registry(PluginSettings())


def task(**cfg):
    return build_task(PLUGINS.task("sentiment"), cfg)


# readers ---------------------------------------------------------------------------------------
def test_phrasebank_lines_are_read_as_latin1_with_crlf_and_an_at_sign_inside_the_sentence(tmp_path):
    path = tmp_path / "pb.txt"
    path.write_bytes("Profit rose to EUR 5 mn in Espoo \xe4 .@positive\r\n\r\nEmail ir@firm.fi for details@neutral\r\n"
                     .encode("latin-1"))
    corpus = PLUGINS.dataset("phrasebank").load({"path": str(path)})
    assert corpus["label"].tolist() == ["positive", "neutral"]
    assert corpus["text"].tolist()[1] == "Email ir@firm.fi for details"  # split at the last '@'
    assert "\xe4" in corpus["text"].iloc[0] and corpus["line"].tolist() == [1, 3]


@pytest.mark.parametrize("content, message", [
    ("A sentence without its label\n", "line 1: no '@label'"),
    ("Fine.@positive\nProfit fell.@bearish\n", "line 2: label 'bearish' is not one of"),
    ("Fine.@positive\n   @neutral\n", "line 2: empty text"),
])
def test_a_bad_phrasebank_line_is_named(tmp_path, content, message):
    path = tmp_path / "pb.txt"
    path.write_text(content, encoding="latin-1")
    with pytest.raises(DataValidationError, match=message):
        PLUGINS.dataset("phrasebank").load({"path": str(path)})


def test_semeval_scores_become_classes_by_their_sign_within_the_neutral_band(tmp_path):
    path = tmp_path / "semeval.json"
    path.write_text(json.dumps([
        {"id": 1, "company": "A", "title": "A beats forecasts", "sentiment": 0.6},
        {"id": 2, "company": "B", "title": "B cuts jobs", "sentiment": -0.4},
        {"id": 3, "company": "C", "title": "C holds its meeting", "sentiment": 0.05},
    ]))
    plain = PLUGINS.dataset("semeval_headlines").load({"path": str(path)})
    assert plain["label"].tolist() == ["positive", "negative", "positive"]
    banded = PLUGINS.dataset("semeval_headlines").load({"path": str(path), "neutral_band": 0.1})
    assert banded["label"].tolist() == ["positive", "negative", "neutral"]
    assert banded["score"].tolist() == [0.6, -0.4, 0.05] and banded["company"].tolist() == ["A", "B", "C"]
    path.write_text(json.dumps([{"id": 1, "title": "x", "sentiment": "high"}]))
    with pytest.raises(DataValidationError, match="item 1: sentiment 'high' is not a number"):
        PLUGINS.dataset("semeval_headlines").load({"path": str(path)})


def test_a_text_file_names_its_missing_columns_and_normalises_labels(tmp_path):
    path = tmp_path / "mine.csv"
    pd.DataFrame({"sentence": ["Up a lot", "Down"], "tag": ["Positive", " negative "]}).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"no column\(s\) \['text', 'label'\].*data.text_column"):
        PLUGINS.dataset("text_file").load({"path": str(path)})
    corpus = PLUGINS.dataset("text_file").load({"path": str(path), "text_column": "sentence", "label_column": "tag"})
    assert corpus["label"].tolist() == ["positive", "negative"] and corpus["line"].tolist() == [2, 3]


def test_a_missing_research_file_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv(text_data.SEARCH_ENV, str(tmp_path / "nowhere"))
    assert text_data.search_dirs()[0] == tmp_path / "nowhere"  # the variable comes first
    monkeypatch.setattr(text_data, "search_dirs", lambda: [tmp_path / "nowhere", tmp_path / "shared/data"])
    spec = PLUGINS.dataset("phrasebank")
    why = spec.missing({"path": None})
    assert "financial_phrasebank_50agree.txt" in why and "TREUM_TEXT_DATA" in why and "data.path=" in why
    with pytest.raises(DataValidationError, match="is not on this machine"):
        spec.load({"path": None})
    (tmp_path / "nowhere").mkdir()
    (tmp_path / "nowhere" / text_data.PHRASEBANK_FILE).write_text("Sales rose .@positive\n", encoding="latin-1")
    assert spec.missing({"path": None}) is None and len(spec.load({})) == 1


# the task --------------------------------------------------------------------------------------
def sample_frame():
    corpus = PLUGINS.dataset("sentiment_sample").load({})
    return corpus.join(task().make_targets(corpus))


def test_stratified_folds_hold_every_text_out_once_keep_the_mix_and_validate_on_training_rows():
    frame = sample_frame()
    folds = task(folds=5).row_folds(frame, seed=0)
    tested = np.concatenate([f.test for f in folds])
    assert len(folds) == 5 and sorted(tested) == list(range(len(frame)))
    shares = frame["target"].value_counts(normalize=True).sort_index()
    for f in folds:
        assert not set(f.test) & set(f.train) and not set(f.test) & set(f.valid) and not set(f.train) & set(f.valid)
        fold_shares = frame["target"].iloc[f.test].value_counts(normalize=True).sort_index()
        assert np.allclose(fold_shares.to_numpy(), shares.to_numpy(), atol=0.03)
        assert len(f.valid) == pytest.approx(0.1 * (len(f.train) + len(f.valid)), abs=1)
    assert [list(f.test) for f in task().row_folds(frame, 0)] == [list(f.test) for f in folds]  # seeded
    assert [list(f.test) for f in task().row_folds(frame, 1)] != [list(f.test) for f in folds]


def test_too_few_texts_of_a_class_for_the_folds_is_an_error_that_says_what_to_do():
    frame = sample_frame()
    negatives = frame.index[frame["label"] == "negative"]
    small = frame.drop(negatives[3:])  # three negative texts left: too few for five folds
    with pytest.raises(ValueError, match="at least 10 texts of each class.*'negative': 3.*task.folds"):
        task().row_folds(small, 0)


def test_copies_of_a_text_stay_on_one_side_of_every_fold():
    frame = sample_frame()
    normal = frame["text"].str.lower()
    assert normal.duplicated().sum() > 10  # the template sentences repeat, as research corpora do
    for f in task().row_folds(frame, 0):
        test_texts = set(normal.iloc[f.test])
        assert not test_texts & set(normal.iloc[f.train]) and not test_texts & set(normal.iloc[f.valid])
        assert not set(normal.iloc[f.train]) & set(normal.iloc[f.valid])


def test_metrics_by_hand():
    y = np.array([0, 1, 2, 2, 1, 0])
    proba = np.array([[.8, .1, .1], [.1, .8, .1], [.1, .2, .7], [.6, .2, .2], [.2, .5, .3], [.3, .3, .4]])
    m = sentiment_metrics(y, proba, np.array([0, 0, 0, 1, 1, 1]), n_boot=200, seed=0)
    assert m["accuracy"] == pytest.approx(4 / 6) and m["n"] == 6
    # per class F1: negative p=1/2 r=1/2, neutral 1, positive p=1/2 r=1/2
    assert m["macro_f1"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    # polarity: rows 0, 2, 3, 5 (labels 0, 2, 2, 0): calls P(pos) > P(neg): no, yes, no, yes -> right, right, wrong, wrong
    assert m["polarity_accuracy"] == pytest.approx(0.5) and m["polarity_n"] == 4
    assert m["accuracy_std"] == pytest.approx(np.std([1.0, 1 / 3], ddof=1))
    assert m["accuracy_ci_low"] <= m["accuracy"] <= m["accuracy_ci_high"]
    assert mcnemar_pvalue(np.array([True] * 10), np.array([False] * 10)) < 0.01
    assert mcnemar_pvalue(np.array([True, False]), np.array([False, True])) == pytest.approx(1.0)


def test_probabilities_that_do_not_sum_to_one_are_refused():
    pred = pd.DataFrame({"p_negative": [0.2], "p_neutral": [0.2], "p_positive": [0.2]})
    assert any("sum to" in p for p in task().check_predictions(pred))


def test_a_served_answer_is_scored_against_a_polarity_outcome():
    t = task()
    logged = t.log_fields({"p_negative": 0.1, "p_neutral": 0.2, "p_positive": 0.7})
    assert logged["prediction_class"] == "positive" and logged["prediction_value"] == pytest.approx(0.6)
    assert t.score_outcome(logged, 1) == (True, pytest.approx(-0.4))
    assert t.score_outcome(logged, -1)[0] is False
    with pytest.raises(ValueError, match="-1 \\(negative\\), 0 \\(neutral\\) or 1"):
        t.score_outcome(logged, 0.5)


# a run over a corpus -----------------------------------------------------------------------------
def test_a_corpus_run_cross_validates_every_model_on_the_same_folds():
    cfg = compose_leaderboard(["task=sentiment", "data=sentiment_sample"], PLUGINS)
    prep = stages.prepare(cfg, PLUGINS)
    assert prep.row_folds is not None and prep.segments is None and "5-fold" in stages.describe_split(prep)
    assert "label" not in prep.frame.columns and "target" in prep.frame.columns  # the label only as the target
    base = stages.evaluate_baselines(prep, PLUGINS, [], None)
    for res in base.values():
        assert res.predictions.index.equals(prep.frame.index)  # each text once, in the corpus's order
        assert sorted(res.predictions["fold"].unique()) == [0, 1, 2, 3, 4]
    # the template sentences are easy for word features, and the majority gets the majority share
    assert base["tfidf_lr"].metrics["accuracy"] > 0.95
    assert base["majority"].metrics["accuracy"] == pytest.approx(0.55, abs=0.01)
    table = stages.leaderboard_frame(prep, {}, base, "tfidf_lr")
    assert table.loc[table["model"] == "majority", "mcnemar_pvalue"].iloc[0] < 1e-6


def test_a_task_and_a_data_set_of_different_kinds_are_refused_with_the_fitting_choices():
    cfg = compose_leaderboard(["task=sentiment", "data=sp500"], PLUGINS)
    with pytest.raises(TreumError, match="reads labelled text.*'sp500' is bars in time.*phrasebank"):
        stages.prepare(cfg, PLUGINS)
    cfg = compose_leaderboard(["task=direction", "data=sentiment_sample"], PLUGINS)
    with pytest.raises(TreumError, match="task 'direction' reads bars in time.*sentiment_sample"):
        stages.prepare(cfg, PLUGINS)


# documents ---------------------------------------------------------------------------------------
DOCUMENT = """Operator:
Good morning, and welcome to the third-quarter call of Aldena Inc. Mr. Virtanen will begin.

Net sales rose 12.5% to EUR 310 mn, and operating
profit increased to EUR 41 mn. We raised our outlook for the year.

Demand in the U.S. was strong. However, margins in Asia fell sharply and we closed two plants.

Thank you.
"""


def test_a_document_is_split_into_sentences_despite_abbreviations_decimals_and_hard_wraps():
    sentences = split_sentences(DOCUMENT)
    assert sentences == [
        "Good morning, and welcome to the third-quarter call of Aldena Inc.",
        "Mr. Virtanen will begin.",
        "Net sales rose 12.5% to EUR 310 mn, and operating profit increased to EUR 41 mn.",
        "We raised our outlook for the year.",
        "Demand in the U.S. was strong.",
        "However, margins in Asia fell sharply and we closed two plants.",
        "Thank you.",
    ]
    assert split_sentences("Revenue grew in Q4. Margins fell.") == ["Revenue grew in Q4.", "Margins fell."]
    assert split_sentences("The note is due Sept. 30 and J. Doe signed it.") == [
        "The note is due Sept. 30 and J. Doe signed it."]


class KeywordModel:
    """A stand-in sentiment model: positive on rose/raised/strong/increased, negative on fell/closed."""

    def predict(self, frame):
        rows = []
        for text in frame["text"]:
            pos = sum(w in text for w in ("rose", "raised", "strong", "increased"))
            neg = sum(w in text for w in ("fell", "closed"))
            rows.append([0.1 + 0.4 * neg, 0.8 - 0.4 * (pos + neg) / 2, 0.1 + 0.4 * pos])
        arr = np.array(rows)
        return pd.DataFrame(arr / arr.sum(1, keepdims=True), columns=list(COLUMNS), index=frame.index)


def test_a_document_s_tone_and_the_sentences_that_drive_it():
    doc = score_document(KeywordModel(), DOCUMENT, top=2)
    assert doc["sentences"] == 7 and doc["sentences_scored"] == 6  # "Thank you." has no tone to count
    assert doc["tone"] > 0 and doc["label"] == "positive"
    assert [d["sentence"] for d in doc["drivers"]] == [3, 4]  # the two strongest positive sentences, in order
    assert doc["counterpoints"][0]["text"].startswith("However, margins") and doc["counterpoints"][0]["tone"] < 0
    assert sum(doc["probabilities"].values()) == pytest.approx(1, abs=1e-3)


def test_aggregate_of_an_all_negative_document_names_negative_drivers():
    sentences = ["Sales fell in every market this year.", "We closed the plant in Oulu last week."]
    proba = KeywordModel().predict(pd.DataFrame({"text": sentences}))
    doc = aggregate(sentences, proba)
    assert doc["label"] == "negative" and all(d["tone"] < 0 for d in doc["drivers"]) and doc["counterpoints"] == []


def test_max_texts_keeps_a_seeded_stratified_subset_in_order(tmp_path):
    path = tmp_path / "pb.txt"
    path.write_text("\n".join(text_data.sample_lines(400)), encoding="latin-1")
    full = PLUGINS.dataset("phrasebank").load({"path": str(path)})
    part = PLUGINS.dataset("phrasebank").load({"path": str(path), "max_texts": 100})
    again = PLUGINS.dataset("phrasebank").load({"path": str(path), "max_texts": 100})
    assert len(part) == 100 and part.equals(again) and list(part["line"]) == sorted(part["line"])
    shares = full["label"].value_counts(normalize=True)
    assert (part["label"].value_counts(normalize=True) - shares).abs().max() < 0.02
    with pytest.raises(DataValidationError, match="max_texts=10 is too few"):
        PLUGINS.dataset("phrasebank").load({"path": str(path), "max_texts": 10})
