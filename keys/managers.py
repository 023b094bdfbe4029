"""Every read query of the keyserver, on the model managers.

Lookups are one indexed query each and read precomputed bytes only (the
published and per-address forms are written by keys.services.publication).
Services and the read path (federation.serve) ask these; nothing else
builds querysets of its own for the hot paths.
"""

from __future__ import annotations

import copy
import fnmatch
import time
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When

from . import clock, privacy, rows
from .rows import BindingRow, KeyRow, StoredCopy

if TYPE_CHECKING:
    from .models import Binding, Event, Key, OutboxMail, PolicyBlock, Source, Subkey, VerificationToken  # noqa: F401

# Binding states whose address some lookup path may serve (rule 3: cached
# ones only as a fallback).
PUBLISHED, CACHED = "published", "cached"
SERVED_STATES = (PUBLISHED, CACHED)
# Served by id: keys not removed, and removed keys that carry a revocation
# (rule 5: clients must learn of it).
SERVED_BY_ID = Q(blocked=False) | Q(revoked=True)


def best_first(rows: QuerySet[Any], key: str = "") -> QuerySet[Any]:
    """Publication rule 4's order: valid keys first, then revoked or expired;
    newest created first. `key` is the path to the Key ("key__" for bindings)."""
    now = clock.now()
    return rows.annotate(
        invalid=Case(
            When(Q(**{f"{key}revoked": True}) | Q(**{f"{key}expires__lte": now}), then=Value(1)),
            default=Value(0),
            output_field=IntegerField(),
        )
    ).order_by("invalid", f"-{key}created", f"{key}fingerprint")


class KeyManager(models.Manager["Key"]):
    def by_fingerprint(self, fpr: str) -> KeyRow | None:
        """The served key with this primary or subkey fingerprint (one statement)."""
        return rows.by_fingerprint(fpr)

    def by_keyid(self, keyid: str) -> list[KeyRow]:
        """Served keys whose primary key, or else a subkey, has this long key id."""
        return rows.by_keyid(keyid)

    def stored_copy(self, fpr: str) -> StoredCopy:
        """For an upload: whether the fingerprint is blocked, and what is stored (one statement)."""
        return rows.stored_copy(fpr)

    def revocation_target(self, issuer_fpr: str | None, issuer_keyid: str | None) -> Key | None:
        """The key a bare revocation certificate names as its issuer."""
        if issuer_fpr:
            return self.filter(fingerprint=issuer_fpr).first()
        if issuer_keyid:
            return self.filter(key_id=issuer_keyid).first()
        return None

    def counts(self) -> dict[str, int]:
        return {"keys": self.filter(blocked=False).count()}

    def exportable(self) -> QuerySet[Key]:
        """The keys a published keyring holds (`manage.py export_keys`): served
        by id with an address published, or revoked; oldest first."""
        rows = self.filter(SERVED_BY_ID).exclude(published_armor="")
        chosen = rows.filter(Q(bindings__state=PUBLISHED) | Q(revoked=True)).values("pk")
        return self.filter(pk__in=chosen).only("id", "published").order_by("id")

    def for_dump(self) -> QuerySet[Key]:
        """Every stored key with its source and bindings, oldest first (the JSON dump)."""
        return self.select_related("source").prefetch_related("bindings").order_by("id")

    def never_confirmed(self, cutoff: datetime) -> QuerySet[Key]:
        """Uploads older than `cutoff` whose addresses nobody ever confirmed."""
        rows = self.filter(origin="upload", first_seen__lte=cutoff, blocked=False, revoked=False)
        # A revoked key stays, so clients keep learning of the revocation (rule 5).
        return rows.exclude(bindings__verified_at__isnull=False).distinct()


class BindingManager(models.Manager["Binding"]):
    def locale_of(self, address: str) -> str:
        """The language its owner last confirmed the address in ("" if none is known)."""
        found = (
            self.filter(address=address)
            .exclude(locale="")
            .order_by(models.F("verified_at").desc(nulls_last=True), "-id")
            .values_list("locale", flat=True)
            .first()
        )
        return found or ""

    def served(self, address: str, states: tuple[str, ...] = (PUBLISHED,)) -> list[BindingRow]:
        """Bindings of an address in `states` with their keys, best first (one statement)."""
        return rows.by_address(address, states)

    def wkd(self, domain: str, wkd_hash: str) -> list[tuple[bytes, datetime, str]]:
        """The certificates WKD serves for (domain, hash), in serving order,
        with when their keys changed and their validation levels (one statement on binding_wkd; only
        published bindings, never cached ones)."""
        return rows.wkd(domain, wkd_hash)

    def of_key(self, key: Key) -> QuerySet[Binding]:
        return self.filter(key=key).order_by("id")

    def states(self, key: Key) -> list[tuple[str, str, bool]]:
        """(address, state, a confirmation mail out) of each binding, in order (one statement)."""
        return rows.states(key.pk)

    def is_published(self, fingerprint: str, address: str) -> bool:
        return self.filter(
            key__fingerprint=fingerprint, address=address, state=PUBLISHED, key__blocked=False
        ).exists()

    def published_key_ids(self, address: str) -> list[int]:
        """Primary keys (row ids) of the keys that publish `address`."""
        rows = self.filter(address=address, state=PUBLISHED, key__blocked=False)
        return list(rows.values_list("key_id", flat=True).distinct())

    def manageable_key_ids(self, address: str) -> list[int]:
        """The keys whose owner may manage them through `address`: those that
        publish it, and revoked keys on which it was confirmed once (a revoked
        key publishes no user IDs, its owner still wants to remove it)."""
        published = models.Q(state=PUBLISHED)
        revoked = models.Q(state=self.model.State.REVOKED, verified_at__isnull=False)
        rows = self.filter(published | revoked, address=address, key__blocked=False)
        return list(rows.values_list("key_id", flat=True).distinct())

    def published_elsewhere(self, address: str, keep: Key) -> list[int]:
        rows = self.filter(address=address, state=PUBLISHED).exclude(key=keep)
        return list(rows.values_list("key_id", flat=True))

    def published_count(self) -> int:
        return self.filter(state=PUBLISHED).count()


class SubkeyManager(models.Manager["Subkey"]):
    def fingerprints_of(self, key_pks: list[int]) -> dict[int, list[str]]:
        """Subkey fingerprints per key (the HKP vindex page)."""
        found: dict[int, list[str]] = {}
        for primary, fingerprint in self.filter(primary_id__in=key_pks).values_list(
            "primary_id", "fingerprint"
        ):
            found.setdefault(primary, []).append(fingerprint)
        return found


class PolicyBlockManager(models.Manager["PolicyBlock"]):
    def blocks_fingerprint(self, fingerprint: str) -> bool:
        return self.filter(fingerprint=fingerprint).exists()

    def blocked_fingerprints(self, fingerprints: Iterable[str]) -> set[str]:
        return set(self.filter(fingerprint__in=list(fingerprints)).values_list("fingerprint", flat=True))

    def for_dump(self) -> QuerySet[PolicyBlock]:
        return self.order_by("id")

    def blocked_addresses(self, addresses: Iterable[str]) -> set[str]:
        """The addresses of `addresses` that a pattern removes from distribution."""
        patterns = [
            p.lower() for p in self.exclude(address_pattern="").values_list("address_pattern", flat=True)
        ]
        return {a for a in addresses if any(fnmatch.fnmatchcase(a, p) for p in patterns)}


class EventManager(models.Manager["Event"]):
    def record(
        self,
        action: str,
        *,
        key: Key | None = None,
        address: str = "",
        actor: str = "system",
        detail: str = "",
    ) -> Event:
        """Write one line of the audit trail."""
        return self.create(
            action=action,
            key=key,
            fingerprint=key.fingerprint if key else "",
            address=address,
            actor=privacy.client_for_log(actor)[:150],
            detail=detail,
            at=clock.now(),
        )


class VerificationTokenManager(models.Manager["VerificationToken"]):
    def live(self, digest: str, purpose: str, *, for_update: bool = False) -> VerificationToken | None:
        """The unused, unexpired token with this digest, or None."""
        rows = self.select_related("key")
        if for_update:
            rows = rows.select_for_update()
        token = rows.filter(digest=digest, purpose=purpose).first()
        if token is None or token.used_at is not None or token.expires <= clock.now():
            return None
        return token

    def prunable(self, now: datetime) -> QuerySet[VerificationToken]:
        """Expired tokens, and verify tokens already used (single use)."""
        return self.filter(Q(expires__lte=now) | Q(used_at__isnull=False, purpose="verify"))


class OutboxMailManager(models.Manager["OutboxMail"]):
    def due(self, now: datetime, limit: int) -> list[int]:
        """Queued mails whose next attempt is due, oldest first."""
        rows = self.filter(state="queued", next_attempt_at__lte=now).order_by("next_attempt_at", "id")
        return list(rows.values_list("id", flat=True)[:limit])

    def counted(self, address: str, kinds: Iterable[str], since: datetime) -> int:
        """Mails of these kinds queued or sent to `address` since `since`
        (what the per-address limits count: failed ones were never sent)."""
        rows = self.filter(address=address, kind__in=list(kinds), created__gte=since)
        return rows.filter(state__in=["queued", "sent"]).count()

    def counted_times(
        self, address: str, kinds: Iterable[str], since: datetime, phase: str | None = None
    ) -> list[datetime]:
        """When the mails `counted` counts were queued, oldest first (only those
        of one `phase` of their kind, such as a WKS request, when given)."""
        rows = self.filter(address=address, kind__in=list(kinds), created__gte=since)
        if phase is not None:
            rows = rows.filter(params__phase=phase)
        return list(
            rows.filter(state__in=["queued", "sent"]).order_by("created").values_list("created", flat=True)
        )

    def queue_summary(self) -> tuple[int, datetime | None]:
        """Queued mails and when the oldest was queued (the partial index on
        queued rows keeps this cheap however many were sent)."""
        summary = self.filter(state="queued").aggregate(n=models.Count("id"), oldest=models.Min("created"))
        return summary["n"], summary["oldest"]

    def outstanding_for(self, binding_id: int) -> bool:
        """A confirmation mail of this binding is queued or was sent."""
        return self.filter(binding_id=binding_id, kind="verify", state__in=["queued", "sent"]).exists()


class SourceManager(models.Manager["Source"]):
    """Upstream sources; the ones named in FEDERATION_SOURCES are synced once
    per process, before the first read, so the environment and the admin
    agree on what is configured."""

    _synced = False

    def sync_configured(self) -> None:
        """Create or update the sources named in FEDERATION_SOURCES (environment)."""
        for order, entry in enumerate(settings.FEDERATION_SOURCES):
            self.update_or_create(
                name=entry["name"],
                defaults={
                    "kind": entry["kind"],
                    "url": entry.get("url", ""),
                    "authoritative_domains": [d.lower() for d in entry.get("domains", [])],
                    "order": entry.get("order", (order + 1) * 10),
                    "enabled": entry.get("enabled", True),
                    "timeout": float(entry.get("timeout", settings.FEDERATION_SOURCE_TIMEOUT)),
                    "options": entry.get("options", {}),
                },
            )

    # (when read, the rows) of the enabled sources: every miss and every
    # confirmation asks, and the list changes only when an operator edits it.
    _enabled: tuple[float, list[Source]] | None = None

    def enabled(self) -> list[Source]:
        """The enabled sources, in order: read at most every
        SOURCES_CACHE_SECONDS per process (at once after a change made in
        this process); copies, so a caller may adjust them."""
        if not SourceManager._synced and settings.FEDERATION_SOURCES:
            self.sync_configured()
            SourceManager._synced = True
        now = time.monotonic()
        cached = SourceManager._enabled
        if cached is None or now - cached[0] >= settings.SOURCES_CACHE_SECONDS:
            cached = (now, list(self.filter(enabled=True).order_by("order", "name")))
            SourceManager._enabled = cached
        return [copy.copy(source) for source in cached[1]]

    def for_dump(self) -> QuerySet[Source]:
        return self.order_by("id")

    @staticmethod
    def forget(**_kwargs: object) -> None:
        """Drop the cached list (connected to Source's save and delete signals)."""
        SourceManager._enabled = None

    def authoritative_for(self, domain: str, rows: list[Source] | None = None) -> list[Source]:
        """The sources that are the only authority for `domain` (rule 7)."""
        return [
            s for s in (rows if rows is not None else self.enabled()) if domain in s.authoritative_domains
        ]

    def authoritative_domains(self) -> set[str]:
        """Every domain some enabled source is the only authority for (one query)."""
        return {d for s in self.enabled() for d in s.authoritative_domains}
