"""Rate limits in Django's cache (Redis, or the database under `make run`).

A fixed window per bucket: `allow("mail-ip:1.2.3.4", "20/3600")` is True for
the first 20 calls in an hour.
"""

from __future__ import annotations

import contextlib
from typing import Any

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


# INCR, and start the window's expiry when the key is new: one command.
_COUNT = (
    "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end return n"
)
_scripts: dict[int, Any] = {}


def _redis_count(key: str, window: int) -> int | None:
    """On Redis, one round trip (a server-side script that increments and
    starts the window's expiry). None on any other cache backend."""
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    script = _scripts.get(id(backend))
    if script is None:
        client = backend._cache.get_client(write=True)  # type: ignore[attr-defined]
        script = _scripts[id(backend)] = client.register_script(_COUNT)
    return int(script(keys=[backend.make_and_validate_key(key)], args=[window]))


def refund(bucket: str) -> None:
    """Give back one call of a bucket (when the action did not happen after all)."""
    with contextlib.suppress(ValueError):
        cache.decr(f"rl:{bucket}")
