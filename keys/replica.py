"""Lookups from a streaming replica, writes and what must see them on the primary.

With DATABASE_REPLICA_URL set, the database alias "replica" is a read-only
copy of "default" that lags it by the replication delay. Only one kind of
read may go there: a read of the keys and federation tables, in a web
request with a safe method (GET, HEAD) that has not written anything, and
outside any transaction. Everything else reads the primary:

- a thread starts pinned to the primary; `ReplicaMiddleware` unpins a safe
  request, so Celery tasks, management commands, the shell and the
  in-process scheduler never read the replica;
- a write through the ORM pins the rest of the request (a fallback lookup
  stores what upstream answered, then reads it again);
- a read inside `transaction.atomic` uses the primary (it may lock rows or
  must see what the transaction wrote);
- after an unsafe request the browser carries a cookie for
  `REPLICA_PIN_SECONDS`, so the page it is sent to next (a redirect, the
  admin's change list) sees the change;
- `primary()` pins a block of code: confirmation links are read with it.

The hot lookups (keys.rows) ask `read_alias()` for their connection, the
ORM asks the router; both follow these rules.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpRequest, HttpResponse

REPLICA = "replica"
# The apps whose tables lookups read; sessions, users and the database
# cache always use the primary (a session written by the last request must
# be there, a rate-limit counter must count every request).
REPLICA_APPS = frozenset({"keys", "federation"})
PIN_COOKIE = "ks_primary"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_state = threading.local()


def has_replica() -> bool:
    return REPLICA in settings.DATABASES


def pinned() -> bool:
    return getattr(_state, "pinned", True)


def pin() -> None:
    _state.pinned = True


def set_pinned(value: bool) -> None:
    _state.pinned = value


@contextmanager
def primary() -> Iterator[None]:
    """Read the primary inside this block."""
    before = pinned()
    pin()
    try:
        yield
    finally:
        set_pinned(before)


def read_alias() -> str:
    """The alias a lookup reads now: "replica" or "default"."""
    if not has_replica() or pinned() or connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return DEFAULT_DB_ALIAS
    return REPLICA


class PrimaryReplicaRouter:
    """Django's database router for the rules above."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        instance = hints.get("instance")
        if model._meta.app_label not in REPLICA_APPS or (
            instance is not None and instance._state.db == DEFAULT_DB_ALIAS
        ):
            return DEFAULT_DB_ALIAS  # an object read from the primary: its relations too
        return read_alias()

    def db_for_write(self, model: Any, **hints: Any) -> str:
        if model._meta.app_label in REPLICA_APPS:
            pin()
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == DEFAULT_DB_ALIAS


class ReplicaMiddleware:
    """Lets a safe request read the replica until it writes; pins the
    browser to the primary for a while after an unsafe one."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not has_replica():
            return self.get_response(request)
        set_pinned(request.method not in SAFE_METHODS or PIN_COOKIE in request.COOKIES)
        try:
            response = self.get_response(request)
            wrote = pinned() and request.method not in SAFE_METHODS
        finally:
            pin()  # whatever runs next in this thread reads the primary
        if wrote:
            response.set_cookie(
                PIN_COOKIE,
                "1",
                max_age=settings.REPLICA_PIN_SECONDS,
                httponly=True,
                samesite="Lax",
                secure=settings.SESSION_COOKIE_SECURE,
            )
        return response
