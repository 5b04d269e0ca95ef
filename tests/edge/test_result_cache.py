"""LZ4 result cache: exact round trip, LRU under a byte budget, invalidation, counters."""

from __future__ import annotations

import numpy as np

from edge.serving.result_cache import ResultCache, decode_value, encode_value


def rows(seed: int, hidden: int = 384, routes: int = 9) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    e = rng.standard_normal(hidden).astype(np.float32)
    return e / np.linalg.norm(e), rng.standard_normal(routes).astype(np.float32)


def test_round_trip_is_bit_exact() -> None:
    e, lg = rows(0)
    for shuffle in (True, False):
        e2, lg2 = decode_value(encode_value(e, lg, shuffle), shuffle)
        assert e2.dtype == np.float32 and np.array_equal(e2, e) and np.array_equal(lg2, lg)


def test_lru_eviction_stays_within_budget() -> None:
    cache = ResultCache(max_bytes=10_000)
    for i in range(40):
        cache.put(("m", "1", "d", f"text {i}"), *rows(i))
        assert cache.used_bytes <= 10_000
    assert 0 < len(cache) < 40 and cache.stats.evictions == 40 - len(cache)
    assert cache.get(("m", "1", "d", "text 0")) is None  # oldest evicted
    newest = cache.get(("m", "1", "d", "text 39"))
    assert newest is not None and np.array_equal(newest[0], rows(39)[0])


def test_recently_used_entry_survives() -> None:
    cache = ResultCache(max_bytes=6_000)
    cache.put(("m", "1", "d", "keep"), *rows(1))
    for i in range(30):
        assert cache.get(("m", "1", "d", "keep")) is not None
        cache.put(("m", "1", "d", f"other {i}"), *rows(100 + i))
    assert cache.get(("m", "1", "d", "keep")) is not None


def test_key_includes_version_and_adapter_set_and_clear_invalidates() -> None:
    cache = ResultCache(max_bytes=1 << 20)
    cache.put(("m", "1.0.0", "default", "hello"), *rows(1))
    assert cache.get(("m", "2.0.0", "default", "hello")) is None
    assert cache.get(("m", "1.0.0", "other", "hello")) is None
    assert cache.get(("m", "1.0.0", "default", "hello")) is not None
    assert (cache.stats.hits, cache.stats.misses) == (1, 2)
    cache.clear()
    assert len(cache) == 0 and cache.used_bytes == 0 and cache.get(("m", "1.0.0", "default", "hello")) is None


def test_disabled_cache_stores_nothing() -> None:
    cache = ResultCache(max_bytes=0)
    cache.put(("m", "1", "d", "x"), *rows(0))
    assert len(cache) == 0 and not cache.enabled
