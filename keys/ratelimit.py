"""Rate limits in Django's cache (Redis, or the database under `make run`).

A fixed window per bucket: `allow("mail-ip:1.2.3.4", "20/3600")` is True for
the first 20 calls in an hour.
"""

from __future__ import annotations

import contextlib

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache


def parse_rate(rate: str) -> tuple[int, int]:
    count, seconds = rate.split("/", 1)
    return int(count), int(seconds)


def allow(bucket: str, rate: str) -> bool:
    """Count one call; True while the bucket is within its limit."""
    limit, window = parse_rate(rate)
    key = f"rl:{bucket}"
    count = _redis_count(key, window)
    if count is not None:
        return count <= limit
    if cache.add(key, 1, timeout=window):
        return limit >= 1
    try:
        return cache.incr(key) <= limit
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window)
        return True


def _redis_count(key: str, window: int) -> int | None:
    """On Redis, one round trip: INCR, and an expiry only if the key has none
    (a new window). None on any other cache backend."""
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    name = backend.make_and_validate_key(key)
    client = backend._cache.get_client(name, write=True)  # type: ignore[attr-defined]
    pipe = client.pipeline(transaction=True)
    pipe.incr(name)
    pipe.expire(name, window, nx=True)
    count, _expiry = pipe.execute()
    return int(count)


def refund(bucket: str) -> None:
    """Give back one call of a bucket (when the action did not happen after all)."""
    with contextlib.suppress(ValueError):
        cache.decr(f"rl:{bucket}")
