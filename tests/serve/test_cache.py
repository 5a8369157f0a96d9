"""The prediction cache: in-process LRU by default, Redis when configured."""

from __future__ import annotations

import os
import uuid

import pytest

from treum.serve.cache import LRUCache, RedisCache, cache_key

REDIS_URL = os.environ.get("TREUM_TEST_REDIS_URL")


def test_lru_evicts_the_least_recently_used():
    c = LRUCache(size=2)
    c.set("a", 1.0)
    c.set("b", 2.0)
    assert c.get("a") == 1.0  # a is now the most recent
    c.set("c", 3.0)
    assert c.get("b") is None and c.get("a") == 1.0 and c.get("c") == 3.0
    assert (c.hits, c.misses) == (3, 1)


def test_keys_separate_versions_instruments_bars_and_sent_data():
    keys = {cache_key("v1", "SPX", "2018-12-31"), cache_key("v2", "SPX", "2018-12-31"),
            cache_key("v1", "IXIC", "2018-12-31"), cache_key("v1", "SPX", "2018-12-28"),
            cache_key("v1", "SPX", "2018-12-31", "abc123")}
    assert len(keys) == 5


@pytest.mark.redis
@pytest.mark.skipif(not REDIS_URL, reason="set TREUM_TEST_REDIS_URL (make test-services runs these; CI does)")
def test_redis_cache_shares_answers_between_instances():
    prefix = f"treum-test-{uuid.uuid4().hex}:"
    a, b = RedisCache(REDIS_URL, ttl=30, prefix=prefix), RedisCache(REDIS_URL, ttl=30, prefix=prefix)
    assert a.get("k") is None
    a.set("k", 0.625)
    assert b.get("k") == 0.625
    assert 0 < a.client.ttl(prefix + "k") <= 30
    a.client.delete(prefix + "k")
