"""The shared cache on Redis, kept working when Redis is not.

Rate limits, the federation's negative cache and circuit breakers, and the
JWKS cache live in Django's cache. When Redis does not answer, this backend
keeps them in the process's own memory instead of raising, and asks Redis
again a few seconds later; the outage is logged once when it starts and once
when it ends (keys.degraded).

Why memory and not the database: the database is what the outage may be
about next, and every counter there would be a write per request just when
the server is under strain; a per-process counter still bounds each client
(to the limit times the number of worker processes) for the minutes Redis is
away. The one limit that protects other people's mailboxes, mails per
address, does not live here at all: it counts the outbox's rows.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError

from . import degraded

RETRY_SECONDS = 5.0
CONSEQUENCE = "rate limits and upstream caches are kept per process until it answers"

# INCR, and start the window's expiry when the key is new: one round trip.
_COUNT = (
    "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end return n"
)


class ResilientRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._memory = LocMemCache(f"redis-fallback-{id(self)}", {"OPTIONS": {"MAX_ENTRIES": 50_000}})
        self._retry_at = 0.0
        self._script: Any = None

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if time.monotonic() >= self._retry_at:
            try:
                result = getattr(super(), name)(*args, **kwargs)
            except RedisError as exc:
                self._unreachable(exc)
            else:
                degraded.answered("Redis")
                return result
        return getattr(self._memory, name)(*args, **kwargs)

    def _unreachable(self, error: Exception) -> None:
        self._retry_at = time.monotonic() + RETRY_SECONDS
        degraded.failed("Redis", error, CONSEQUENCE)

    def count(self, key: str, window: int) -> int | None:
        """Increment a rate-limit counter, starting its window's expiry, in
        one round trip; None when Redis is away (the caller counts in the
        fallback with add and incr)."""
        if time.monotonic() < self._retry_at:
            return None
        try:
            if self._script is None:
                self._script = self._client().register_script(_COUNT)
            return int(self._script(keys=[self.make_and_validate_key(key)], args=[window]))
        except RedisError as exc:
            self._unreachable(exc)
            return None

    def add(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("add", *args, **kwargs)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get", *args, **kwargs)

    def set(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("set", *args, **kwargs)

    def touch(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("touch", *args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("delete", *args, **kwargs)

    def get_many(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_many", *args, **kwargs)

    def has_key(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("has_key", *args, **kwargs)

    def incr(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("incr", *args, **kwargs)

    def set_many(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("set_many", *args, **kwargs)

    def delete_many(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("delete_many", *args, **kwargs)

    def clear(self) -> Any:
        """Delete this server's keys only (those under its KEY_PREFIX), not
        the whole Redis database, which other programs (or another
        keyserver, or a parallel test run) may share."""
        self._memory.clear()
        if time.monotonic() < self._retry_at:
            return None
        try:
            client = self._client()
            pattern = self.make_key("*").replace(":1:*", ":*")  # every version
            batch: list[bytes] = []
            for name in client.scan_iter(match=pattern, count=1000):
                batch.append(name)
                if len(batch) >= 1000:
                    client.delete(*batch)
                    batch = []
            if batch:
                client.delete(*batch)
        except RedisError as exc:
            self._unreachable(exc)
        return None

    def ping(self) -> None:
        """Ask Redis itself (for /readyz), whatever the fallback does; raises when away."""
        self._client().ping()

    def _client(self) -> Any:
        # RedisCache keeps its client wrapper in a cached property the stubs do not declare.
        return self._cache.get_client(write=True)  # type: ignore[attr-defined]
