"""Expiry reminders: each published address of a key that stops working
soon is mailed, once per threshold (EXPIRY_REMINDER_DAYS) of that expiry
date, the exact commands to extend the key and send it here.

A key stops working at its primary key's expiry or when its last
encryption subkey expires, whichever comes first (`usable_until`). An
uploaded extension moves that date: the old date's records no longer
match, its queued mails are cancelled at delivery (keys.services.mail), and
the new date's thresholds remind in their turn. Keys already expired,
revoked or removed by policy get nothing.

Safe to run twice at once: the record of a key, date and threshold is
unique, so of two runs only the one that writes it sends the mails.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q

from .. import clock
from ..models import Binding, Event, ExpiryReminder, Key, OutboxMail
from ..models.reminders import usable_until
from . import outbox


def _windows(now: datetime) -> list[tuple[int, datetime, datetime]]:
    """(threshold, from, to]: a key whose date falls in a window has crossed
    that threshold and no nearer one."""
    days = [d for d in settings.EXPIRY_REMINDER_DAYS if d > 0]
    bounds = [0, *days]
    return [
        (bounds[i + 1], now + timedelta(days=bounds[i]), now + timedelta(days=bounds[i + 1]))
        for i in range(len(days))
    ]


def _due(threshold: int, start: datetime, end: datetime, limit: int) -> list[Key]:
    """Keys with a published address whose date is in (start, end] and that
    were not reminded for `threshold` of that date (two indexed ranges,
    the exact date checked in Python)."""
    near = Q(expires__gt=start, expires__lte=end) | Q(
        encryption_expires__gt=start, encryption_expires__lte=end
    )
    published = Binding.objects.filter(key=OuterRef("pk"), state=Binding.State.PUBLISHED)
    keys = Key.objects.filter(near, revoked=False, blocked=False).filter(Exists(published))
    keys = keys.only("id", "fingerprint", "expires", "encryption_expires").order_by("id")
    due: list[Key] = []
    done = set(
        ExpiryReminder.objects.filter(
            threshold_days=threshold, expires__gt=start, expires__lte=end
        ).values_list("key_id", "expires")
    )
    for key in keys.iterator(chunk_size=500):
        until = usable_until(key)
        if until is None or not start < until <= end or (key.pk, until) in done:
            continue
        due.append(key)
        if len(due) >= limit:
            break
    return due


def send_due(limit: int | None = None) -> dict[str, int]:
    """Remind the keys that crossed a threshold since the last run (at most
    `limit` keys, EXPIRY_REMINDER_BATCH by default); counts of keys and mails."""
    limit = limit or settings.EXPIRY_REMINDER_BATCH
    now = clock.now()
    counts = {"keys": 0, "mails": 0}
    for threshold, start, end in _windows(now):
        for key in _due(threshold, start, end, limit - counts["keys"]):
            mails = _remind(key.pk, threshold, now)
            if mails is not None:
                counts["keys"] += 1
                counts["mails"] += mails
        if counts["keys"] >= limit:
            break
    return counts


def _remind(pk: int, threshold: int, now: datetime) -> int | None:
    """Record the threshold (and the farther ones it covers) and queue a
    mail to each published address; None when another run did it first or
    the key changed meanwhile."""
    try:
        with transaction.atomic():
            key = Key.objects.filter(pk=pk, revoked=False, blocked=False).first()
            until = usable_until(key) if key is not None else None
            if key is None or until is None or until <= now:
                return None
            bindings = list(key.bindings.filter(state=Binding.State.PUBLISHED).order_by("id"))
            ExpiryReminder.objects.create(
                key=key, expires=until, threshold_days=threshold, created=now, mails=len(bindings)
            )
            # A key first seen 5 days before its date gets the 7-day mail
            # only, never the 30-day one after it.
            ExpiryReminder.objects.bulk_create(
                [
                    ExpiryReminder(key=key, expires=until, threshold_days=farther, created=now)
                    for farther in settings.EXPIRY_REMINDER_DAYS
                    if farther > threshold
                ],
                ignore_conflicts=True,
            )
            for binding in bindings:
                outbox.enqueue(
                    OutboxMail.Kind.EXPIRY,
                    binding.address,
                    binding=binding,
                    expires=until.isoformat(),
                    threshold=threshold,
                    locale=binding.locale,
                )
            Event.objects.record(
                "expiry_reminder", key=key, actor="reminders", detail=f"{until:%Y-%m-%d} -{threshold}d"
            )
    except IntegrityError:
        return None  # the other run wrote this record first, and sends its mails
    return len(bindings)
