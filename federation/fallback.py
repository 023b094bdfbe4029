"""Lookup with fallback: ask upstream sources when nothing local is published.

Publication rule 7: for a domain with an authoritative source (the
organisation's directory) only that source is asked, and what it returns is
published (`org_directory`), WKD included. For every other address the
fallback chain is asked in order; what comes back is stored through the one
import service as `cached` (rule 3), served only as a fallback and reduced
to the user IDs that carry the queried address. Nothing from upstream is
ever `email_confirmed`.

A source that fails is skipped and counted; after a few failures in a row it
is left alone for a while (circuit breaker). Misses are cached briefly. The
whole chain runs within FEDERATION_TOTAL_TIMEOUT.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from keys import ratelimit
from keys.errors import KeyserverError, RateLimited
from keys.identifiers import Query, domain_of
from keys.models import Binding, Key, Origin, Source
from keys.services import imports, publication
from keys.services.locking import locked_key

from .sources import SourceError, Upstream, upstream_for

log = logging.getLogger(__name__)
State = Binding.State
Validation = Binding.Validation

ORIGINS = {
    Source.Kind.LDAP: Origin.LDAP,
    Source.Kind.HKP: Origin.HKP,
    Source.Kind.VKS: Origin.VKS,
    Source.Kind.WKD: Origin.WKD,
}
# keys.openpgp.org verifies addresses before it serves them; SKS-style peers
# serve whatever was uploaded; a domain's own WKD speaks for the domain.
VALIDATION = {
    Source.Kind.VKS: Validation.UPSTREAM_VERIFIED,
    Source.Kind.WKD: Validation.UPSTREAM_VERIFIED,
    Source.Kind.HKP: Validation.UPSTREAM_UNVERIFIED,
    Source.Kind.LDAP: Validation.UPSTREAM_UNVERIFIED,
}


def chain(query: Query) -> list[Source]:
    """The sources to ask for `query`, in order (rule 7)."""
    rows = Source.objects.enabled()
    org = [s for s in rows if s.authoritative_domains]
    public = [s for s in rows if not s.authoritative_domains]
    if query.kind == "email":
        own = Source.objects.authoritative_for(domain_of(query.value), rows)
        if own:
            return own
        # Never ask a public source about the organisation's own domains
        # (above); optionally ask the directory first about everyone else.
        return (org if settings.FEDERATION_ORG_FIRST else []) + public
    return org + public


# -- health and circuit breaker --------------------------------------------------


def _breaker_open(source: Source) -> bool:
    return bool(cache.get(f"cb-open:{source.pk}"))


def _record_failure(source: Source, error: str) -> None:
    printable = "".join(c if c.isprintable() else "?" for c in error)[:500]
    rows = Source.objects.filter(pk=source.pk)
    rows.update(failures=F("failures") + 1, last_error=printable, last_error_at=timezone.now())
    failures = rows.values_list("failures", flat=True).first() or 0
    if failures >= settings.FEDERATION_BREAKER_FAILURES:
        cache.set(f"cb-open:{source.pk}", 1, settings.FEDERATION_BREAKER_SECONDS)


def _record_ok(source: Source) -> None:
    Source.objects.filter(pk=source.pk).update(failures=0, last_ok=timezone.now())


# -- the fallback itself ----------------------------------------------------------


@dataclass
class Outcome:
    asked: list[str]
    found: str | None = None  # the source that answered
    errors: list[str] | None = None


def fallback(query: Query, *, client: str) -> Outcome:
    """Ask upstream for `query` and import what matches. Lookups then read rows."""
    outcome = Outcome(asked=[], errors=[])
    candidates = [s for s in chain(query) if upstream_for(s).can_answer(query)]
    if not candidates:
        return outcome
    negative = f"neg:{query.kind}:{query.value}"
    if cache.get(negative):
        return outcome
    if not ratelimit.allow(f"fallback-ip:{client}", settings.FEDERATION_RATE_PER_CLIENT):
        raise RateLimited(_("Too many lookups from your address. Please try again later."))
    deadline = time.monotonic() + settings.FEDERATION_TOTAL_TIMEOUT
    for source in candidates:
        if _breaker_open(source):
            outcome.errors.append(f"{source.name}: skipped (failing)")  # type: ignore[union-attr]
            continue
        left = deadline - time.monotonic()
        if left <= 0.2:
            break
        upstream = upstream_for(source)
        upstream.row.timeout = min(source.timeout, left)
        outcome.asked.append(source.name)
        try:
            blocks = upstream.fetch(query)
        except SourceError as exc:
            log.info("source %s failed for %s: %s", source.name, query.kind, exc.message)
            outcome.errors.append(f"{source.name}: {exc.message}")  # type: ignore[union-attr]
            _record_failure(source, exc.message)
            continue
        _record_ok(source)
        if blocks and import_answer(blocks, source, query):
            outcome.found = source.name
            return outcome
    if not outcome.errors:
        cache.set(negative, 1, settings.FEDERATION_NEGATIVE_SECONDS)
    return outcome


def import_answer(blocks: list[bytes], source: Source, query: Query) -> list[Key]:
    """Store what a source returned and bind what matches the query.

    Keys that do not match the query (another fingerprint, no user ID for
    the address) are not kept as answers; nothing is ever email_confirmed.
    """
    matched: list[Key] = []
    for block in blocks:
        try:
            result = imports.import_keys(
                block,
                origin=ORIGINS[Source.Kind(source.kind)],
                actor=f"source:{source.name}",
                source_id=source.pk,
            )
        except KeyserverError as exc:
            log.info("source %s returned an unusable key: %s", source.name, exc.message)
            continue
        for item in result.keys:
            if _matches(item.key, query):
                _bind(item.key, source, query)
                matched.append(item.key)
    return matched


def _matches(key: Key, query: Query) -> bool:
    if query.kind == "email":
        return key.bindings.filter(address=query.value).exists()
    if query.kind == "fingerprint":
        return key.fingerprint == query.value or key.subkeys.filter(fingerprint=query.value).exists()
    return key.key_id == query.value or key.subkeys.filter(key_id=query.value).exists()


def _bind(key: Key, source: Source, query: Query) -> None:
    """Mark the addresses this answer vouches for: published for the
    organisation's own domains, cached for everything else."""
    with locked_key(key.pk) as key:
        bindings = key.bindings.filter(state=State.UNPUBLISHED)
        if query.kind == "email":
            bindings = bindings.filter(address=query.value)
        changed = False
        organisation = Source.objects.authoritative_domains()
        actor = f"source:{source.name}"
        for binding in bindings:
            if binding.domain in source.authoritative_domains:
                state, validation = State.PUBLISHED, Validation.ORG_DIRECTORY
            elif binding.domain in organisation:
                continue  # another source speaks for that domain
            else:
                state, validation = State.CACHED, VALIDATION[Source.Kind(source.kind)]
            publication.vouch(key, binding, state=state, validation=validation, actor=actor)
            changed = True
        if changed:
            publication.rebuild(key)


def check(source: Source, query: Query) -> tuple[float, str]:
    """One lookup against one source, for `manage.py check_sources`."""
    upstream: Upstream = upstream_for(source)
    started = time.monotonic()
    try:
        blocks = upstream.fetch(query)
    except SourceError as exc:
        _record_failure(source, exc.message)
        raise
    _record_ok(source)
    return time.monotonic() - started, f"{len(blocks)} answer(s)"


def final_misses() -> tuple[bool, bool]:
    """Whether a miss by key id or fingerprint, and by address, is final: no
    enabled source could be asked about it (read afresh, not the per-process
    list). The published file tree tells the front server (published_files)."""
    upstreams = [upstream_for(source) for source in Source.objects.filter(enabled=True)]
    by_id = Query("fingerprint", "0" * 40)
    by_address = Query("email", "someone@example.org")
    return (
        not any(u.can_answer(by_id) for u in upstreams),
        not any(u.can_answer(by_address) for u in upstreams),
    )
