"""Rate limits in Django's cache (Redis, or the database under `make run`;
while Redis is away, the process's memory: keys.cache).

A fixed window per bucket: `allow("mail-ip:1.2.3.4", "20/3600")` is True for
the first 20 calls in an hour.
"""

from __future__ import annotations

import contextlib

from django.core.cache import cache, caches

from . import metrics
from .cache import ResilientRedisCache


def parse_rate(rate: str) -> tuple[int, int]:
    count, seconds = rate.split("/", 1)
    return int(count), int(seconds)


def allow(bucket: str, rate: str) -> bool:
    """Count one call; True while the bucket is within its limit."""
    allowed = _count(bucket, rate)
    if not allowed:
        metrics.RATE_LIMITED.labels(bucket.split(":", 1)[0]).inc()
    return allowed


def _count(bucket: str, rate: str) -> bool:
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
    """On Redis, one round trip (keys.cache); None on any other backend, or
    while Redis is away."""
    backend = caches["default"]
    return backend.count(key, window) if isinstance(backend, ResilientRedisCache) else None


def refund(bucket: str) -> None:
    """Give back one call of a bucket (when the action did not happen after all)."""
    with contextlib.suppress(ValueError):
        cache.decr(f"rl:{bucket}")
