"""Rate limits in Django's cache (Redis, or the database under `make run`;
while Redis is away, the process's memory: keys.cache).

A fixed window per bucket: `allow("mail-ip:1.2.3.4", "20/3600")` is True for
the first 20 calls in an hour. Windows are aligned on the epoch (an hourly
limit starts again at the full hour), so `window_end` can tell a refused
client when to try again without storing anything more.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

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


def window_end(rate: str) -> datetime:
    """When the current window of `rate` ends: a refused call may succeed then."""
    _limit, window = parse_rate(rate)
    start = int(time.time()) // window * window
    return datetime.fromtimestamp(start + window, UTC)


def seconds_left(rate: str) -> int:
    """Seconds until the current window of `rate` ends (a Retry-After)."""
    return max(1, int((window_end(rate) - datetime.now(UTC)).total_seconds()) + 1)


def _count(bucket: str, rate: str) -> bool:
    limit, window = parse_rate(rate)
    key = f"rl:{bucket}:{int(time.time()) // window}"
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
