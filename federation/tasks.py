"""Celery tasks for federation: the refresh tick and one refresh per key."""

from __future__ import annotations

from celery import shared_task

from . import refresh


@shared_task(acks_late=True)
def refresh_due_task() -> int:
    """The beat tick (attester/celery.py): lease the due keys and enqueue one
    task per key."""
    ids = refresh.lease_due()
    for key_id in ids:
        refresh_key_task.delay(key_id)
    return len(ids)


@shared_task(acks_late=True)
def refresh_key_task(key_id: int) -> str:
    return refresh.refresh_key(key_id).result
