"""One way to lock a key: every change of a key or its bindings happens
inside `locked_key`, so two writers of the same key take turns."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction

from ..models import Key


@contextmanager
def locked_key(pk: int) -> Iterator[Key]:
    """The key's row, locked (SELECT ... FOR UPDATE) for one transaction."""
    with transaction.atomic():
        yield Key.objects.select_for_update().get(pk=pk)


@contextmanager
def locked_name(name: str) -> Iterator[None]:
    """One transaction holding a lock on `name`, for work keyed by something
    that has no row to lock (an address's notices): a PostgreSQL advisory
    lock, released at commit. SQLite (the embedded default) lets one writer
    in at a time anyway."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [name])
        yield
