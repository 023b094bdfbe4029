"""Rate limits in Django's cache (Redis, or the database under `make run`).

A fixed window per bucket: `allow("mail-ip:1.2.3.4", "20/3600")` is True for
the first 20 calls in an hour.
"""

from __future__ import annotations

import contextlib

from django.core.cache import cache


def parse_rate(rate: str) -> tuple[int, int]:
    count, seconds = rate.split("/", 1)
    return int(count), int(seconds)


def allow(bucket: str, rate: str) -> bool:
    limit, window = parse_rate(rate)
    key = f"rl:{bucket}"
    if cache.add(key, 1, timeout=window):
        return limit >= 1
    try:
        return cache.incr(key) <= limit
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window)
        return True


def refund(bucket: str) -> None:
    """Give back one call of a bucket (when the action did not happen after all)."""
    with contextlib.suppress(ValueError):
        cache.decr(f"rl:{bucket}")
