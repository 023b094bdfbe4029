"""The one import service: every path that stores a key goes through `import_keys`.

Uploads (HKP, VKS, the upload page, the Attester), fallback answers,
refresh and dump imports all store keys here, so the limits, the policy
blocks and the merge rules hold on every path (publication rule 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from .. import clock, openpgp
from ..errors import InvalidKey, RemovedByPolicy
from ..models import Event, Key, Origin, Subkey
from ..rows import StoredCopy
from . import notices, publication, published_files
from .limits import limits
from .locking import locked_key
from .schedule import next_refresh, refreshable

if TYPE_CHECKING:
    from .verification import Mailing


@dataclass
class KeyResult:
    key: Key
    created: bool
    changed: bool
    # (user ID, why it cannot be published) for every user ID that cannot
    # carry a published address: refused, SHA-1 self-signatures, bad or no
    # address, revoked.
    problems: list[tuple[str, str]] = field(default_factory=list)
    # The key's (address, state, mail out) after the submission, when it read them.
    states: list[tuple[str, str, bool]] | None = None
    # What the submission's confirmation request did per address, when it made one.
    mails: dict[str, Mailing] = field(default_factory=dict)


@dataclass
class ImportResult:
    keys: list[KeyResult]
    rejected: list[str]


def problems(info: openpgp.CertInfo, uploaded: openpgp.CertInfo | None = None) -> list[tuple[str, str]]:
    """User IDs that cannot be published, with the reason: those of the
    stored result (name-only and revoked ones included, so the uploader sees
    every user ID), and those of the upload refused outright (not kept, so
    absent from the result)."""
    refused = [(u.value, u.reason) for u in (uploaded or info).user_ids if not u.stored]
    unusable = [(u.value, u.reason) for u in info.user_ids if not u.valid]
    return list(dict.fromkeys(refused + unusable))


def import_keys(
    data: bytes,
    *,
    origin: str = Origin.UPLOAD,
    actor: str = "upload",
    source_id: int | None = None,
) -> ImportResult:
    """Store every certificate in `data`, merging into what is stored.

    Raises a KeyserverError when nothing in `data` could be stored; when some
    certificates of several are refused, their reasons are in `rejected`.
    """
    configured = limits()
    upload = openpgp.scan(data, configured)
    results: list[KeyResult] = []
    rejected = list(upload.rejected)
    single = len(upload.candidates) + len(upload.rejected) == 1
    for candidate in upload.candidates:
        try:
            result = _import_candidate(candidate, configured, origin=origin, actor=actor, source_id=source_id)
        except (InvalidKey, RemovedByPolicy) as exc:
            if single and not (isinstance(exc, RemovedByPolicy) and upload.revocations):
                raise
            rejected.append(exc.message)
            continue
        results.append(result)
    for revocation in upload.revocations:
        key = Key.objects.revocation_target(revocation.issuer_fpr, revocation.issuer_keyid)
        if key is None:
            rejected.append(_("A revocation certificate was uploaded for a key this server does not have."))
            continue
        results.append(_store_revocation(key, revocation, configured, actor=actor))
    if not results:
        raise InvalidKey(rejected[0] if rejected else None)
    return ImportResult(results, rejected)


def _import_candidate(
    candidate: openpgp.Candidate,
    configured: openpgp.Limits,
    *,
    origin: str,
    actor: str,
    source_id: int | None,
) -> KeyResult:
    stored = Key.objects.stored_copy(candidate.fingerprint)
    if stored.blocked_fingerprint:
        return _revocations_only(stored, candidate, configured, actor=actor)
    unchanged = _unchanged(stored, candidate, configured)
    if unchanged is not None:
        return unchanged
    cert = openpgp.clean(candidate, configured)
    if stored.pk is None:
        created = _create(cert, origin=origin, actor=actor, source_id=source_id)
        if created is not None:
            return created
    return _store(cert, configured, origin=origin, actor=actor, source_id=source_id)


def _revocations_only(
    stored: StoredCopy, candidate: openpgp.Candidate, configured: openpgp.Limits, *, actor: str
) -> KeyResult:
    """A key removed by policy takes only its own revocations from an upload
    (a revoked copy), so clients still learn of them; anything else is refused."""
    revocations = openpgp.key_revocations(candidate)
    key = Key.objects.filter(pk=stored.pk).first() if stored.pk is not None else None
    if key is None or not revocations:
        raise RemovedByPolicy()
    results = [_store_revocation(key, r, configured, actor=actor) for r in revocations]
    if not any(r.key.revoked for r in results):
        raise RemovedByPolicy()
    return KeyResult(results[-1].key, False, any(r.changed for r in results))


def _create(cert: openpgp.CertInfo, *, origin: str, actor: str, source_id: int | None) -> KeyResult | None:
    """A key not stored yet: one insert of the key with its first published
    forms, then its subkeys and addresses in bulk. None when a concurrent
    upload stored it first (the caller merges instead)."""
    key = Key(**_key_fields(cert), origin=origin, source_id=source_id)
    key.next_refresh_at = next_refresh(key, clock.now())
    try:
        with transaction.atomic():
            publication.first_publication(key, cert)
            Subkey.objects.bulk_create(
                Subkey(primary=key, fingerprint=s.fingerprint, key_id=s.key_id) for s in cert.subkeys
            )
            Event.objects.record("key_created", key=key, actor=actor, detail=origin)
    except IntegrityError:
        return None
    return KeyResult(key, True, True, problems(cert))


# The fields of Key an unchanged upload's result carries; the others load on use.
_UNCHANGED_FIELDS = ["id", "fingerprint", "key_id", "revoked", "blocked", "origin"]


def _unchanged(
    stored: StoredCopy, candidate: openpgp.Candidate, configured: openpgp.Limits
) -> KeyResult | None:
    """The stored key, when the upload holds nothing it does not have yet.

    A re-upload of a key already stored as it is (the common case: gpg
    --send-keys again, a mirror, a refresh) is answered from the stored
    copy, read in the same statement as the policy check: no verification,
    no lock, no write.
    """
    if stored.pk is None or not openpgp.contains(stored.data, candidate):
        return None
    values = [stored.pk, stored.fingerprint, stored.key_id, stored.revoked, stored.blocked, stored.origin]
    key = Key.from_db("default", _UNCHANGED_FIELDS, values)
    if stored.never_scheduled and refreshable(key):
        return None  # not scheduled yet: the full path schedules it
    return KeyResult(key, False, False, problems(openpgp.load_stored(stored.data, configured)))


def _locked_or_created(cert: openpgp.CertInfo, *, origin: str, source_id: int | None) -> tuple[Key, bool]:
    """The stored row of the certificate's key, locked; created if new (a
    concurrent insert of the same key is retried as a merge)."""
    key = Key.objects.select_for_update().filter(fingerprint=cert.fingerprint).first()
    if key is not None:
        return key, False
    try:
        with transaction.atomic():
            return Key.objects.create(**_key_fields(cert), origin=origin, source_id=source_id), True
    except IntegrityError:
        return Key.objects.select_for_update().get(fingerprint=cert.fingerprint), False


def _store(
    cert: openpgp.CertInfo, configured: openpgp.Limits, *, origin: str, actor: str, source_id: int | None
) -> KeyResult:
    """Insert or merge one verified certificate.

    1. Lock the stored row (or create it).
    2. Merge the new copy into the stored one: nothing stored is ever lost.
    3. If that changed anything, update the key's fields, subkeys and
       bindings, and rebuild the published forms, all in this transaction.
    """
    with transaction.atomic():
        key, created = _locked_or_created(cert, origin=origin, source_id=source_id)
        info = cert if created else openpgp.merge(bytes(key.data), cert.data, configured)
        changed = created or info.data != bytes(key.data)
        if changed:
            _apply(key, info, actor=actor)
        _schedule_first_refresh(key)
        if created:
            Event.objects.record("key_created", key=key, actor=actor, detail=origin)
        elif changed:
            Event.objects.record("key_updated", key=key, actor=actor)
    return KeyResult(key, created, changed, problems(info, cert))


def _schedule_first_refresh(key: Key) -> None:
    if key.next_refresh_at is None and key.refreshed_at is None:
        due = next_refresh(key, clock.now())
        if due is not None:
            key.next_refresh_at = due
            key.save(update_fields=["next_refresh_at"])


def _store_revocation(
    key: Key, revocation: openpgp.Revocation, configured: openpgp.Limits, *, actor: str
) -> KeyResult:
    with locked_key(key.pk) as key:
        info = openpgp.add_revocation(bytes(key.data), revocation, configured)
        changed = info.data != bytes(key.data)
        if changed:
            _apply(key, info, actor=actor)
            if info.revoked:
                Event.objects.record("key_revoked", key=key, actor=actor)
    return KeyResult(key, False, changed)


def _key_fields(info: openpgp.CertInfo) -> dict[str, object]:
    return {
        "fingerprint": info.fingerprint,
        "version": info.version,
        "key_id": info.key_id,
        "algorithm": info.algorithm,
        "algorithm_id": info.algorithm_id,
        "bits": info.bits,
        "created": info.created,
        "expires": info.expires,
        "encryption_expires": openpgp.encryption_expires(info),
        "revoked": info.revoked,
        "data": info.data,
    }


def _apply(key: Key, info: openpgp.CertInfo, *, actor: str) -> None:
    """Write a certificate's facts to the locked key and its rows; the
    addresses published until now are told what changed (change notices)."""
    before = notices.Before(key)
    for name, value in _key_fields(info).items():
        setattr(key, name, value)
    key.save()
    wanted = {s.fingerprint: s.key_id for s in info.subkeys}
    have = dict(key.subkeys.values_list("fingerprint", "key_id"))
    key.subkeys.exclude(fingerprint__in=wanted).delete()
    Subkey.objects.bulk_create(
        Subkey(primary=key, fingerprint=fpr, key_id=kid) for fpr, kid in wanted.items() if fpr not in have
    )
    gone = published_files.Identifiers(
        {f for f in have if f not in wanted}, {k for f, k in have.items() if f not in wanted}
    )
    publication.sync_bindings(key, info, actor=actor)
    publication.rebuild(key, info, gone=gone)
    before.told(key, info, actor=actor)


def stored_certificate(key: Key) -> openpgp.CertInfo:
    """What the stored certificate says (for the admin's summary)."""
    return openpgp.load(bytes(key.data), limits())
