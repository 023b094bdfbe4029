"""Rate limits in Django's cache (Redis, or the database under `make run`).

A fixed window per bucket: `allow("mail-ip:1.2.3.4", "20/3600")` is True for
the first 20 calls in an hour.
"""

from __future__ import annotations

import contextlib
import ipaddress

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest


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


def client_ip(request: HttpRequest) -> str:
    """The client's address; X-Forwarded-For is believed only from trusted proxies."""
    remote = request.META.get("REMOTE_ADDR", "") or "unknown"
    trusted = settings.TRUSTED_PROXIES
    if not trusted or not _in(remote, trusted):
        return remote
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, trusted):
            return hop
    return remote


def _in(address: str, networks: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)
