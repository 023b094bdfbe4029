"""Change notices leave: the pending changes of an address become one
OutboxMail of kind NOTICE (keys.services.notices says when and why).

Apart from keys.services.notices so that recording a change (called by the
import service) does not depend on the outbox, whose mail composer needs the
server key, which is published through the import service.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef

from .. import clock
from ..models import Binding, NoticeChange, OutboxMail
from . import outbox
from .locking import locked_name
from .notices import iso, opted_out


def _rate() -> str:
    return f"1/{settings.NOTICE_INTERVAL_HOURS * 3600}"


def due_at(address: str) -> datetime | None:
    """When the pending changes of `address` may leave; None when it has none."""
    oldest = NoticeChange.objects.filter(address=address).order_by("at").values_list("at", flat=True).first()
    if oldest is None:
        return None
    waited = oldest + timedelta(minutes=settings.NOTICE_DELAY_MINUTES)
    free = outbox.free_at(address, OutboxMail.Kind.NOTICE, _rate())
    return max(waited, free) if free else waited


def send_due(limit: int = 500) -> dict[str, int]:
    """Queue one notice for each address whose pending changes are due."""
    counts = {"queued": 0, "waiting": 0, "dropped": 0}
    if not settings.NOTICES_ENABLED:
        return counts
    now = clock.now()
    quiet = now - timedelta(minutes=settings.NOTICE_DELAY_MINUTES)
    # Addresses told within the interval wait in SQL, so they never fill the
    # batch and starve the others (an interval of one mail per address).
    recent = OutboxMail.objects.filter(
        address=OuterRef("address"),
        kind=OutboxMail.Kind.NOTICE,
        state__in=[OutboxMail.State.QUEUED, OutboxMail.State.SENT],
        created__gte=now - timedelta(hours=settings.NOTICE_INTERVAL_HOURS),
    )
    due = NoticeChange.objects.filter(at__lte=quiet)
    counts["waiting"] = due.filter(Exists(recent)).values("address").distinct().count()
    addresses = (
        due.exclude(Exists(recent)).order_by("address").values_list("address", flat=True).distinct()[:limit]
    )
    for address in list(addresses):
        counts[_send(address)] += 1
    return counts


def _send(address: str) -> str:
    # One run at a time per address, and the interval checked under that
    # lock: two runs at once (the beat job and `manage.py send_notices`)
    # never send an address two notices.
    with locked_name(f"notices:{address}"):
        if outbox.sent_within(address, OutboxMail.Kind.NOTICE, _rate()):
            return "waiting"
        rows = list(NoticeChange.objects.select_for_update().filter(address=address).order_by("at", "id"))
        if not rows:
            return "waiting"  # another run took them
        NoticeChange.objects.filter(pk__in=[r.pk for r in rows]).delete()
        if opted_out(address):
            return "dropped"
        changes = [
            {
                "fingerprint": r.fingerprint,
                "change": r.change,
                "via": r.via,
                "detail": r.detail,
                "at": iso(r.at),
            }
            for r in rows
        ]
        outbox.enqueue(
            OutboxMail.Kind.NOTICE, address, changes=changes, locale=Binding.objects.locale_of(address)
        )
    return "queued"
