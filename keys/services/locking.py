"""One way to lock a key: every change of a key or its bindings happens
inside `locked_key`, so two writers of the same key take turns."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import transaction

from ..models import Key


@contextmanager
def locked_key(pk: int) -> Iterator[Key]:
    """The key's row, locked (SELECT ... FOR UPDATE) for one transaction."""
    with transaction.atomic():
        yield Key.objects.select_for_update().get(pk=pk)
