"""Periodic re-confirmation: a mailbox changes hands, so an address
confirmed by mail long ago (RECONFIRM_DAYS; 0: never) is asked to confirm
again, and is unpublished if it does not within RECONFIRM_GRACE_DAYS of
the mail.

Only addresses proven by their mailbox (`email_confirmed`, `wks_confirmed`):
the organisation's directory and OIDC issuers vouch for theirs elsewhere.
A Web Key Service confirmation made again counts as a re-confirmation. The link is a confirmation link as any
other (a VERIFY token, single use, stored hashed, made at delivery by
keys.services.mail), valid for the grace; confirming through it keeps the
address published and dates its confirmation now
(keys.services.verification.confirm calls `confirmed`). Once unpublished,
the owner confirms again the usual way (upload, request-verify).

Each request is a Reconfirmation row; at most one is open per address (a
unique constraint, so two runs at once never mail twice), and none is made
within the grace of the last, whatever its outcome.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from .. import clock
from ..models import Binding, Event, Key, OutboxMail, Reconfirmation
from . import outbox, publication
from .locking import locked_key

Outcome = Reconfirmation.Outcome
State = Binding.State
Validation = Binding.Validation
MAILBOX_PROOFS = Binding.MAILBOX_PROOFS


def applies(binding: Binding, key: Key) -> bool:
    """Whether the address is one re-confirmation is for."""
    return (
        binding.state == State.PUBLISHED
        and binding.validation in MAILBOX_PROOFS
        and not key.revoked
        and not key.blocked
    )


def _due(now: datetime, limit: int) -> QuerySet[Binding]:
    cutoff = now - timedelta(days=settings.RECONFIRM_DAYS)
    recent = Reconfirmation.objects.filter(binding=OuterRef("pk")).filter(
        Q(outcome=Outcome.OPEN) | Q(requested_at__gt=now - timedelta(days=settings.RECONFIRM_GRACE_DAYS))
    )
    old = Q(verified_at__lt=cutoff) | Q(verified_at__isnull=True, created__lt=cutoff)
    rows = Binding.objects.filter(old, state=State.PUBLISHED, validation__in=MAILBOX_PROOFS)
    rows = rows.filter(key__revoked=False, key__blocked=False).exclude(Exists(recent))
    return rows.order_by("verified_at", "id")[:limit]


def request_due(limit: int | None = None) -> int:
    """Mail the addresses whose confirmation is older than RECONFIRM_DAYS
    (at most `limit`, RECONFIRM_BATCH by default); how many were mailed."""
    if settings.RECONFIRM_DAYS <= 0:
        return 0
    now = clock.now()
    sent = 0
    for pk in list(_due(now, limit or settings.RECONFIRM_BATCH).values_list("pk", flat=True)):
        try:
            with transaction.atomic():
                binding = (
                    Binding.objects.select_for_update(skip_locked=True, of=("self",))
                    .select_related("key")
                    .filter(pk=pk)
                    .first()
                )
                if binding is None or not applies(binding, binding.key):
                    continue  # another run has it, or it changed meanwhile
                request = Reconfirmation.objects.create(binding=binding, requested_at=now)
                request.mail = outbox.enqueue(
                    OutboxMail.Kind.RECONFIRM,
                    binding.address,
                    binding=binding,
                    reconfirmation=request.pk,
                    locale=binding.locale,
                )
                request.save(update_fields=["mail"])
                Event.objects.record(
                    "reconfirmation_requested", key=binding.key, address=binding.address, actor="reconfirm"
                )
        except IntegrityError:
            continue  # another run opened it first
        sent += 1
    return sent


def confirmed(key: Key, binding: Binding, *, again: bool, actor: str) -> None:
    """The address was confirmed by mail (its key held locked): close its
    open request. `again`: it was published by mail before, and stays so,
    confirmed as of now; otherwise the caller just published it."""
    if again:
        publication.renew(key, binding, actor=actor)
    Reconfirmation.objects.filter(binding=binding, outcome=Outcome.OPEN).update(
        outcome=Outcome.CONFIRMED, closed_at=clock.now()
    )


def _mailed_at(request: Reconfirmation) -> datetime | None:
    """When the request's mail left: None while it is still being tried.
    A mail row pruned by housekeeping left when it was queued."""
    mail = request.mail
    if mail is None:
        return request.requested_at
    return mail.sent_at if mail.state == OutboxMail.State.SENT else None


def expire_due(limit: int | None = None) -> dict[str, int]:
    """Close the open requests past their grace: the address is unpublished
    (event "reconfirmation_expired"); a request whose mail never left, or
    whose address no longer applies, is closed without a change."""
    now = clock.now()
    grace = timedelta(days=settings.RECONFIRM_GRACE_DAYS)
    counts = {"expired": 0, "not_sent": 0, "moot": 0}
    candidates = Reconfirmation.objects.filter(outcome=Outcome.OPEN, requested_at__lte=now - grace)
    rows = candidates.order_by("requested_at").values_list("pk", "binding__key_id")
    for pk, key_pk in list(rows[: limit or settings.RECONFIRM_BATCH]):
        outcome = _expire_one(pk, key_pk, now, grace)
        if outcome:
            counts[outcome] += 1
    return counts


def _expire_one(pk: int, key_pk: int, now: datetime, grace: timedelta) -> str | None:
    # The key first, then the request: the order verification.confirm takes them in.
    with locked_key(key_pk) as key:
        request = (
            Reconfirmation.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("binding", "mail")
            .filter(pk=pk, outcome=Outcome.OPEN)
            .first()
        )
        if request is None:
            return None
        binding = request.binding
        if request.mail is not None and request.mail.state in (
            OutboxMail.State.FAILED,
            OutboxMail.State.CANCELLED,
        ):
            outcome = Outcome.NOT_SENT
        elif not applies(binding, key):
            outcome = Outcome.MOOT
        else:
            mailed = _mailed_at(request)
            if mailed is None or mailed + grace > now:
                return None
            publication.unpublish(
                key, [binding], actor="reconfirm", event="reconfirmation_expired", detail=f"{mailed:%Y-%m-%d}"
            )
            outcome = Outcome.EXPIRED
        request.outcome = outcome
        request.closed_at = now
        request.save(update_fields=["outcome", "closed_at"])
    return str(outcome)


def run(limit: int | None = None) -> dict[str, int]:
    """One run of the job: expire what is past its grace, then mail what is
    due. Off (RECONFIRM_DAYS=0): nothing, not even the requests still open."""
    if settings.RECONFIRM_DAYS <= 0:
        return {}
    counts = expire_due(limit)
    counts["requested"] = request_due(limit)
    return counts
