"""Housekeeping on the beat schedule: what is kept only for a while."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

from .. import clock
from ..models import Event, Key, VerificationToken


def prune(*, dry_run: bool = False) -> dict[str, int]:
    """Delete expired tokens, uploads never confirmed, and old events."""
    now = clock.now()
    tokens = VerificationToken.objects.prunable(now)
    unconfirmed = Key.objects.never_confirmed(now - timedelta(days=settings.UNCONFIRMED_RETENTION_DAYS))
    events = Event.objects.filter(at__lte=now - timedelta(days=settings.EVENT_RETENTION_DAYS))
    counts = {"tokens": tokens.count(), "unconfirmed_keys": unconfirmed.count(), "events": events.count()}
    if not dry_run:
        tokens.delete()
        Key.objects.filter(pk__in=list(unconfirmed.values_list("pk", flat=True))).delete()
        events.delete()
    return counts
