"""The mail outbox: nothing the server decided to send is lost.

Every mail is a row of OutboxMail written in the transaction of the change
that caused it (an address marked pending, a key replaced, a management
link or a welcome asked for), so a rolled-back change sends nothing and a
committed one always has its mail. Delivery is separate: after the commit a
Celery task is woken for the row, but it is only a wake-up; if the broker is
down or loses the message (Redis restarted without persistence), the sweep
on the beat schedule finds the row still queued and delivers it.

Each try claims its row (SKIP LOCKED, then a lease, so two workers never
send one row), composes the mail at that moment (a link's token is made
then, and deleted if sending fails), sends it outside any transaction and
records the outcome. Every failure (SMTP, DNS, the database, a template) is
retried with back-off until the row's deadline; then the row is failed, and
a confirmation that was never sent takes its address out of "pending".
"""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import DatabaseError, connection, transaction

from .. import clock, degraded, metrics, ratelimit
from ..models import Binding, Event, OutboxMail, VerificationToken
from . import mail, publication

Kind = OutboxMail.Kind
State = OutboxMail.State
# Mails whose address is pending while they are out: a failed one clears it.
CONFIRMATIONS = (Kind.VERIFY, Kind.WKS)
DELIVER_TASK = "keys.tasks.deliver_mail"
FIRST_RETRY_SECONDS = 30
# A claimed row is due again after this, should its worker die mid-try.
LEASE = timedelta(minutes=10)
# Waits between tries to record an outcome while the database is away.
RECORD_WAITS = (0.5, 1, 2, 4, 8, 15, 30)


def enqueue(kind: str, address: str, *, binding: Binding | None = None, **params: Any) -> OutboxMail:
    """Queue one mail in the current transaction; delivery is woken after it commits."""
    now = clock.now()
    row = OutboxMail.objects.create(
        kind=kind,
        address=address,
        binding=binding,
        params=params,
        created=now,
        next_attempt_at=now,
        deadline=now + timedelta(hours=settings.MAIL_RETRY_HOURS),
    )
    transaction.on_commit(partial(wake, row.pk), robust=True)
    metrics.MAILS.labels("queued", kind).inc()
    return row


def wake(pk: int) -> None:
    """Ask a worker to deliver one row now. Never raises: without a broker
    the row waits for the sweep."""
    try:
        # By name, as the broker routes it: the task is defined in keys.tasks.
        current_app.tasks[DELIVER_TASK].apply_async((pk,), retry=False)
    except Exception as exc:  # the broker's failures are many; each means "later"
        degraded.failed("the Celery broker", exc, "queued mails wait in the outbox for the sweep")
    else:
        degraded.answered("the Celery broker")


def sent_within(address: str, kind: str, rate: str, phase: str | None = None) -> bool:
    """True while `address` has had as many mails of `kind` (and `phase`) as
    `rate` ("count/seconds") allows: mails queued or sent count, failed ones do not."""
    return free_at(address, kind, rate, phase) is not None


def free_at(address: str, kind: str, rate: str, phase: str | None = None) -> datetime | None:
    """When `rate` allows `address` another mail of `kind` (and `phase`); None while it does now."""
    count, seconds = ratelimit.parse_rate(rate)
    window = timedelta(seconds=seconds)
    times = OutboxMail.objects.counted_times(address, [kind], clock.now() - window, phase)
    if len(times) < count:
        return None
    return times[len(times) - count] + window


def deliver(pk: int) -> str:
    """Try one queued row whose attempt is due; its state afterwards.

    Three steps, so that a database outage while the SMTP server has the
    mail never sends it twice: claim the row (it is leased, so no other
    worker takes it, and its tokens are made), send it outside any
    transaction, then record the outcome, waiting out a short database
    outage to do so.
    """
    claimed = _claim(pk)
    if claimed is None:
        return "skipped"  # sent, failed, not due, or in another worker's hands
    row, message, made = claimed
    if message is None:
        _record(row, state=State.CANCELLED, last_error="no longer needed")
    else:
        try:
            message.send()
        except Exception as exc:  # SMTP, DNS, a refused address: all retried
            _record(row, error=exc, tokens=made)
        else:
            _record(row, state=State.SENT, sent_at=clock.now(), last_error="")
    metrics.MAILS.labels("retry" if row.state == State.QUEUED else row.state, row.kind).inc()
    return row.state


def _claim(pk: int) -> tuple[OutboxMail, EmailMessage | None, list[str]] | None:
    now = clock.now()
    with transaction.atomic():
        row = (
            OutboxMail.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("binding__key")
            .filter(pk=pk, state=State.QUEUED, next_attempt_at__lte=now)
            .first()
        )
        if row is None:
            return None
        row.attempts += 1
        row.next_attempt_at = now + LEASE  # due again if this worker dies before it records
        row.save(update_fields=["attempts", "next_attempt_at"])
        made: list[str] = []
        try:
            with transaction.atomic():
                message = mail.compose(row, made)
        except DatabaseError:
            raise
        except Exception as exc:  # a mail that cannot be composed is tried again later, then failed
            _attempt_failed(row, exc, now)
            row.save(update_fields=["state", "last_error", "next_attempt_at"])
            return None
    return row, message, made


def _record(
    row: OutboxMail, *, error: Exception | None = None, tokens: list[str] | None = None, **fields: Any
) -> None:
    """Write the outcome of a try; a database that is away is waited for
    (about a minute), since the try itself cannot be undone."""
    for wait in (*RECORD_WAITS, None):
        try:
            with transaction.atomic():
                if error is not None:
                    VerificationToken.objects.filter(digest__in=tokens or []).delete()
                    _attempt_failed(row, error, clock.now())
                    row.save(update_fields=["state", "last_error", "next_attempt_at"])
                else:
                    for name, value in fields.items():
                        setattr(row, name, value)
                    row.save(update_fields=list(fields))
            return
        except DatabaseError:
            if wait is None or connection.in_atomic_block:
                raise
            connection.close()
            time.sleep(wait)


def _attempt_failed(row: OutboxMail, error: Exception, now: datetime) -> None:
    row.last_error = f"{type(error).__name__}: {error}"[:1000]
    delay = min(FIRST_RETRY_SECONDS * 2 ** (row.attempts - 1), settings.MAIL_RETRY_MAX_SECONDS)
    row.next_attempt_at = now + timedelta(seconds=delay * random.uniform(1.0, 1.2))
    if row.next_attempt_at > row.deadline:
        row.state = State.FAILED
        _given_up(row)


def _given_up(row: OutboxMail) -> None:
    """A confirmation that never left: its address is not pending any more
    (unless another of its mails is out)."""
    binding = row.binding
    if row.kind not in CONFIRMATIONS or binding is None or not binding.awaiting_confirmation:
        return
    others = OutboxMail.objects.filter(
        binding=binding, kind__in=CONFIRMATIONS, state__in=[State.QUEUED, State.SENT]
    )
    if others.exclude(pk=row.pk).exists():
        return
    publication.clear_pending(binding)
    Event.objects.record(
        "verification_mail_failed",
        key=binding.key,
        address=binding.address,
        actor="outbox",
        detail=row.last_error,
    )


def sweep(limit: int = 500) -> dict[str, int]:
    """Deliver the rows whose attempt is due (the beat schedule runs this).
    With the database away it is the next sweep's turn: logged once, not
    as a failed task per beat."""
    try:
        outcomes = Counter(deliver(pk) for pk in OutboxMail.objects.due(clock.now(), limit))
    except DatabaseError as error:
        degraded.failed("the database", error, "the outbox is swept again once it answers")
        return {"database unavailable": 1}
    degraded.answered("the database")
    return dict(outcomes)


def resend(rows: list[OutboxMail]) -> int:
    """Queue a new copy of each row (the admin's action); a confirmation
    marks its address pending again if it can still be confirmed."""
    queued = 0
    for row in rows:
        with transaction.atomic():
            binding = row.binding
            if row.kind == Kind.VERIFY:
                if binding is None or binding.state not in publication.CONFIRMABLE:
                    continue
                publication.mark_pending(binding)
            enqueue(row.kind, row.address, binding=binding, **row.params)
            queued += 1
    return queued
