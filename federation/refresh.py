"""Scheduled refresh: every key kept current from its source.

A beat tick leases the due keys in one indexed query (`FOR UPDATE SKIP
LOCKED`, next_refresh_at pushed past a lease) and enqueues one task per key.
Two workers or two ticks never get the same key; a key whose worker died is
due again when its lease runs out.

A refresh asks the key's source by long key id (by address for sources that
can only search by address), checks the full fingerprint, and merges the
upstream copy through the one import service: new expiry dates, subkeys and
revocations arrive; an address is never published by a refresh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from keys import clock, metrics, openpgp, ratelimit
from keys.errors import KeyserverError
from keys.identifiers import Query
from keys.models import Binding, Event, Key, Origin, Source
from keys.services import imports, notices, publication
from keys.services.limits import limits
from keys.services.locking import locked_key
from keys.services.schedule import next_refresh

from .fallback import import_answer
from .sources import SourceError, upstream_for

log = logging.getLogger(__name__)
State = Binding.State
# Bindings a refresh may move (never the ones people confirmed themselves).
UPSTREAM_VALIDATIONS = (
    Binding.Validation.ORG_DIRECTORY,
    Binding.Validation.UPSTREAM_VERIFIED,
    Binding.Validation.UPSTREAM_UNVERIFIED,
)


def lease_due(now: datetime | None = None, batch: int | None = None) -> list[int]:
    """Take up to `batch` due keys for this worker; returns their ids."""
    now = now or clock.now()
    limit = batch or settings.REFRESH_BATCH
    lease_until = now + timedelta(minutes=settings.REFRESH_LEASE_MINUTES)
    if connection.vendor == "postgresql":
        # One statement: select the due rows in index order, skip rows another
        # worker holds, and push them past the lease.
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE keys_key SET next_refresh_at = %s
                WHERE id IN (
                    SELECT id FROM keys_key
                    WHERE next_refresh_at IS NOT NULL AND next_refresh_at <= %s
                    ORDER BY next_refresh_at
                    LIMIT %s
                    FOR UPDATE SKIP LOCKED
                )
                RETURNING id
                """,
                [lease_until, now, limit],
            )
            return [row[0] for row in cursor.fetchall()]
    with transaction.atomic():  # SQLite: one writer at a time anyway
        ids = list(
            Key.objects.filter(next_refresh_at__isnull=False, next_refresh_at__lte=now)
            .order_by("next_refresh_at")
            .values_list("id", flat=True)[:limit]
        )
        Key.objects.filter(id__in=ids).update(next_refresh_at=lease_until)
    return ids


@dataclass
class Refreshed:
    key_id: int
    result: str


def sources_for(key: Key) -> list[Source]:
    if key.origin == Origin.UPLOAD:
        return list(Source.objects.filter(name__in=settings.REFRESH_PEERS, enabled=True).order_by("order"))
    return [key.source] if key.source is not None and key.source.enabled else []


def refresh_key(key_id: int, *, dry_run: bool = False) -> Refreshed:
    """Refresh one key from its source and schedule the next time."""
    done = _refresh_key(key_id, dry_run=dry_run)
    if not dry_run:
        metrics.REFRESHES.labels(metrics.refresh_outcome(done.result)).inc()
    return done


def _refresh_key(key_id: int, *, dry_run: bool) -> Refreshed:
    key = Key.objects.select_related("source").get(pk=key_id)
    now = clock.now()
    was_revoked = key.revoked
    sources = sources_for(key)
    if not sources:
        if not dry_run:
            Key.objects.filter(pk=key.pk).update(
                next_refresh_at=None, last_refresh_result="no source to refresh from"
            )
        return Refreshed(key.pk, "no source")
    source = sources[0]
    if not ratelimit.allow(f"refresh-src:{source.pk}", settings.REFRESH_RATE_PER_SOURCE):
        Key.objects.filter(pk=key.pk).update(next_refresh_at=now + timedelta(minutes=1))
        return Refreshed(key.pk, "deferred: source rate limit")
    try:
        result = _refresh_from(key, source, dry_run=dry_run)
    except SourceError as exc:
        failures = key.refresh_failures + 1
        if not dry_run:
            Key.objects.filter(pk=key.pk).update(
                refresh_failures=failures,
                last_refresh_result=f"failed: {exc.message}"[:500],
                next_refresh_at=next_refresh(key, now, failures=failures),
            )
        return Refreshed(key.pk, f"failed: {exc.message}")
    if not dry_run:
        key.refresh_from_db()
        Key.objects.filter(pk=key.pk).update(
            refreshed_at=now,
            refresh_failures=0,
            last_refresh_result=result[:500],
            next_refresh_at=next_refresh(key, now, was_revoked=was_revoked),
        )
    return Refreshed(key.pk, result)


def _refresh_from(key: Key, source: Source, *, dry_run: bool) -> str:
    """1. Fetch by long key id (or by address), 2. merge the copy whose full
    fingerprint is ours, 3. check that the source still gives each of the
    addresses it vouched for to this key."""
    upstream = upstream_for(source)
    keyid_query = Query("keyid", key.key_id)
    if upstream.can_answer(keyid_query):
        blocks = upstream.fetch(keyid_query)
    else:
        blocks = []
        # A removed key is still asked by all of its addresses: the import
        # takes only its own revocation from the answer (imports._revocations_only).
        bindings = key.bindings.all() if key.blocked else key.bindings.exclude(state=State.REMOVED_BY_POLICY)
        for address in bindings.values_list("address", flat=True):
            blocks += upstream.fetch(Query("email", address))
    copy = _same_key(blocks, key.fingerprint)
    if copy is None:
        result = "missing upstream"
    elif dry_run:
        result = "would merge the upstream copy"
    else:
        result = _merge(key, source, copy)
    moved = _check_addresses(key, source, dry_run=dry_run)
    return result + (f"; {moved}" if moved else "")


def _merge(key: Key, source: Source, copy: bytes) -> str:
    """Merge the upstream copy through the one import service. A key removed
    by policy or by its owner takes only its own revocation from it; a copy
    without one is refused there, which is an answer of the source, not a
    failure: the key is asked again at the next refresh."""
    before = bytes(key.data)
    try:
        imports.import_keys(copy, origin=key.origin, actor=f"refresh:{source.name}", source_id=key.source_id)
    except KeyserverError as exc:
        return f"refused: {exc.message}"
    return "updated" if bytes(Key.objects.get(pk=key.pk).data) != before else "unchanged"


def _same_key(blocks: list[bytes], fingerprint: str) -> bytes | None:
    """The upstream copy whose full fingerprint is ours (key ids collide)."""
    for block in blocks:
        try:
            upload = openpgp.parse(block, limits())
        except KeyserverError:
            continue
        for cert in upload.certs:
            if cert.fingerprint == fingerprint:
                return cert.data
    return None


def _check_addresses(key: Key, source: Source, *, dry_run: bool) -> str:
    """Addresses this source vouched for that it now gives to another key, or
    to none. By default the bindings stay and an event says so; with
    REFRESH_REASSIGN the address moves to the source's current key (the
    newest created, if several) or, if it has none, is unpublished."""
    upstream = upstream_for(source)
    bindings = list(
        key.bindings.filter(state__in=[State.PUBLISHED, State.CACHED], validation__in=UPSTREAM_VALIDATIONS)
    )
    changed: list[str] = []
    for binding in bindings:
        query = Query("email", binding.address)
        if not upstream.can_answer(query):
            continue
        blocks = upstream.fetch(query)
        if key.fingerprint in {c.fingerprint for b in blocks for c in _certs(b)}:
            continue
        changed.append(binding.address)
        if not dry_run:
            _moved_upstream(key, binding, source, query, blocks)
    if not changed:
        return ""
    verb = "reassigned" if settings.REFRESH_REASSIGN else "kept"
    return f"{verb} {len(changed)} address(es) the source now gives elsewhere"


def _moved_upstream(key: Key, binding: Binding, source: Source, query: Query, blocks: list[bytes]) -> None:
    actor = f"refresh:{source.name}"
    if not settings.REFRESH_REASSIGN:
        Event.objects.record("upstream_changed", key=key, address=binding.address, actor=actor, detail="kept")
        return
    with locked_key(key.pk) as locked:
        told = notices.published_addresses(locked) if binding.state == State.PUBLISHED else []
        publication.unpublish(locked, locked.bindings.filter(pk=binding.pk), actor=actor, event=None)
        notices.record(
            told, key.fingerprint, notices.Change.ADDRESS_MOVED, actor=actor, address=binding.address
        )
    others = [k for k in import_answer(blocks, source, query) if k.pk != key.pk]
    newest = max(others, key=lambda k: k.created).fingerprint if others else "none"
    Event.objects.record("address_reassigned", key=key, address=binding.address, actor=actor, detail=newest)


def _certs(block: bytes) -> list[openpgp.CertInfo]:
    try:
        return openpgp.parse(block, limits()).certs
    except KeyserverError:
        return []
