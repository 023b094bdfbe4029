"""The entry points of import_dump's worker processes.

A spawned worker starts without Django: this module imports nothing of the
project at its top, sets Django up first (`start`), and only then loads the
import code (`run_batch`).
"""

from __future__ import annotations

from typing import Any


def start(database: dict[str, Any]) -> None:
    """Set Django up, on the very database of the parent (a test's, say)."""
    import django

    django.setup()
    from django.db import connections

    connections["default"].settings_dict.update(database)


def run_batch(batch: list[bytes], bind: bool) -> Any:
    from .import_batches import import_batch  # after start(): Django is set up

    return import_batch(batch, bind)
