"""Celery tasks of the keys app: wake-ups for the mail outbox, its sweep,
change notices and housekeeping on the beat schedule.

A task here carries a row id, never a mail: the row in the outbox is the
mail (keys.services.outbox), so a message the broker loses only delays it.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import DatabaseError, transaction

from . import heartbeat as beats
from .models import Binding, Key, OutboxMail
from .services import notice_mail, outbox, reconfirmation, reminders
from .services.housekeeping import prune

Kind = OutboxMail.Kind


@shared_task(
    name=outbox.DELIVER_TASK,
    autoretry_for=(DatabaseError,),
    retry_backoff=5,
    retry_backoff_max=60,
    max_retries=5,
)
def deliver_mail(pk: int) -> str:
    """Deliver one row of the outbox now (failures are recorded on the row
    and retried by the sweep; a database outage retries this wake-up)."""
    return outbox.deliver(pk)


@shared_task(name="keys.tasks.sweep_outbox")
def sweep_outbox() -> dict[str, int]:
    """Deliver every queued mail whose attempt is due."""
    return outbox.sweep()


@shared_task
def housekeeping_task() -> dict[str, int]:
    """Prune expired tokens, uploads never confirmed and old events."""
    return prune()


@shared_task(name="keys.tasks.send_notices")
def send_notices_task() -> dict[str, int]:
    """Queue one change notice per address whose pending changes are due."""
    return notice_mail.send_due()


@shared_task(name="keys.tasks.send_expiry_reminders")
def send_expiry_reminders_task() -> dict[str, int]:
    """Mail the published addresses of keys that expire soon (a batch)."""
    return reminders.send_due()


@shared_task(name="keys.tasks.reconfirm_addresses")
def reconfirm_addresses_task() -> dict[str, int]:
    """Ask old confirmations again; unpublish those past their grace (a batch)."""
    return reconfirmation.run()


@shared_task(name="keys.tasks.heartbeat", ignore_result=True)
def heartbeat(queue: str) -> None:
    """Sent by beat to each queue: the worker that runs it is alive there."""
    beats.worker_answered(queue)


# Messages queued by a version before the outbox still name these tasks:
# each becomes a row of the outbox, then goes the same way as a new mail.


def _queue_then_deliver(kind: str, address: str, binding: Binding | None = None, **params: Any) -> None:
    with transaction.atomic():
        outbox.enqueue(kind, address, binding=binding, **params)


@shared_task(name="keys.tasks.send_verification_mail")
def send_verification_mail(binding_id: int, locale: str = "", replace: bool = False) -> None:
    binding = Binding.objects.filter(pk=binding_id).first()
    if binding is not None and binding.awaiting_confirmation:
        _queue_then_deliver(Kind.VERIFY, binding.address, binding, locale=locale, replace=replace)


@shared_task(name="keys.tasks.send_replaced_notice")
def send_replaced_notice_mail(address: str, new_fingerprint: str, old_fingerprints: list[str]) -> None:
    _queue_then_deliver(Kind.REPLACED, address, fingerprint=new_fingerprint, replaced=old_fingerprints)


@shared_task(name="keys.tasks.send_welcome_mail")
def send_welcome_mail(address: str, armored_key: str, locale: str = "") -> None:
    _queue_then_deliver(Kind.WELCOME, address, armored=armored_key, locale=locale)


@shared_task(name="keys.tasks.send_manage_mail")
def send_manage_mail(address: str, key_ids: list[int], locale: str = "") -> None:
    if Key.objects.filter(pk__in=key_ids).exists():
        _queue_then_deliver(Kind.MANAGE, address, keys=key_ids, locale=locale)
