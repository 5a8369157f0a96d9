"""Prediction cache keyed by (model version id, instrument, last bar time, bars digest).

In-process LRU by default; Redis when ``serve.cache_url`` names one, so that
several router replicas share their answers.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from typing import Any


class LRUCache:
    def __init__(self, size: int = 4096):
        self.size = size
        self._data: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: str) -> Any | None:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
            self.misses += 1
            return None

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class RedisCache:
    """The same interface over Redis; values are JSON, entries expire after ``ttl`` seconds."""

    def __init__(self, url: str, ttl: int = 3600, prefix: str = "treum:pred:"):
        import redis

        self.client = redis.Redis.from_url(url)
        self.client.ping()
        self.ttl, self.prefix = ttl, prefix
        self.hits = self.misses = 0

    def get(self, key: str) -> Any | None:
        raw = self.client.get(self.prefix + key)
        if raw is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(raw)

    def set(self, key: str, value: Any) -> None:
        self.client.set(self.prefix + key, json.dumps(value), ex=self.ttl)


def cache_key(model_id: str, instrument: str, last_bar: str, digest: str = "stored") -> str:
    return f"{model_id}|{instrument}|{last_bar}|{digest}"


def make_cache(size: int, url: str | None):
    """Redis at ``url`` (its password from $TREUM_CACHE_PASSWORD when the URL has none: an exported Serve
    config leaves it out), else an in-process LRU of ``size`` entries."""
    if not url:
        return LRUCache(size)
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(url)
    password = os.environ.get("TREUM_CACHE_PASSWORD")
    if password and parts.password is None:
        netloc = f"{quote(parts.username or '', safe='')}:{quote(password, safe='')}@{parts.netloc.rpartition('@')[2]}"
        url = urlunsplit(parts._replace(netloc=netloc))
    return RedisCache(url)
