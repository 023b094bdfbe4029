"""Housekeeping on the beat schedule: what is kept only for a while."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q

from . import clock
from .models import Event, Key, Origin, VerificationToken


def prune(*, dry_run: bool = False) -> dict[str, int]:
    """Delete expired tokens, uploads never confirmed, and old events."""
    now = clock.now()
    tokens = VerificationToken.objects.filter(
        Q(expires__lte=now) | Q(used_at__isnull=False, purpose="verify")
    )
    cutoff = now - timedelta(days=settings.UNCONFIRMED_RETENTION_DAYS)
    # Uploads whose addresses nobody ever confirmed: no verified binding.
    unconfirmed = (
        Key.objects.filter(origin=Origin.UPLOAD, first_seen__lte=cutoff, blocked=False)
        .exclude(bindings__verified_at__isnull=False)
        .distinct()
    )
    events = Event.objects.filter(at__lte=now - timedelta(days=settings.EVENT_RETENTION_DAYS))
    counts = {"tokens": tokens.count(), "unconfirmed_keys": unconfirmed.count(), "events": events.count()}
    if not dry_run:
        tokens.delete()
        Key.objects.filter(pk__in=list(unconfirmed.values_list("pk", flat=True))).delete()
        events.delete()
    return counts
