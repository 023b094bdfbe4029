"""Housekeeping on the beat schedule: what is kept only for a while."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

from .. import clock
from ..models import Event, Key, OutboxMail, VerificationToken
from . import published_files
from .locking import locked_key
from .tree_follower import prune_log


def prune(*, dry_run: bool = False) -> dict[str, int]:
    """Delete expired tokens, uploads never confirmed, old events and old outbox rows."""
    now = clock.now()
    tokens = VerificationToken.objects.prunable(now)
    unconfirmed = Key.objects.never_confirmed(now - timedelta(days=settings.UNCONFIRMED_RETENTION_DAYS))
    events = Event.objects.filter(at__lte=now - timedelta(days=settings.EVENT_RETENTION_DAYS))
    # Mails delivered, given up or cancelled: kept a while for the admin, then gone.
    mails = OutboxMail.objects.filter(created__lte=now - timedelta(days=settings.OUTBOX_RETENTION_DAYS))
    mails = mails.exclude(state=OutboxMail.State.QUEUED)
    counts = {"tokens": tokens.count(), "unconfirmed_keys": unconfirmed.count(), "events": events.count()}
    counts["mails"] = mails.count()
    if not dry_run:
        tokens.delete()
        for key in list(unconfirmed):
            _delete(key)
        events.delete()
        mails.delete()
        counts["published_changes"] = prune_log(now)
    return counts


def _delete(key: Key) -> None:
    """Delete an upload nobody confirmed, with its published files."""
    with locked_key(key.pk) as locked:
        gone = published_files.identifiers_of(locked)
        locked.delete()
        published_files.changed(locked, gone=gone)
