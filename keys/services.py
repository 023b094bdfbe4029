"""The keyserver's domain logic. Every front-end ends here.

HKP `/pks/add`, VKS upload, the upload page (and later the Attester API,
fallback lookups, refresh and dump imports) all store keys through
`import_keys`, so the policy blocks, limits and merge rules hold on every path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.utils.translation import gettext as _

from . import clock, openpgp, ratelimit, tokens
from .errors import InvalidKey, InvalidToken, RateLimited, RemovedByPolicy
from .identifiers import domain_of, wkd_hash
from .models import Binding, Event, Key, Origin, PolicyBlock, Subkey, VerificationToken

State = Binding.State
Validation = Binding.Validation
# Bindings whose address may be served by some lookup path.
SERVED_STATES = (State.PUBLISHED, State.CACHED)


@dataclass
class KeyResult:
    key: Key
    created: bool
    changed: bool
    status: dict[str, str] = field(default_factory=dict)
    # (user ID, why it cannot be published) for user IDs that look like they
    # were meant to carry an address: SHA-1 self-signatures, bad addresses.
    problems: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ImportResult:
    keys: list[KeyResult]
    rejected: list[str]


def log(
    action: str, *, key: Key | None = None, address: str = "", actor: str = "system", detail: str = ""
) -> None:
    Event.objects.create(
        action=action,
        key=key,
        fingerprint=key.fingerprint if key else "",
        address=address,
        actor=actor[:150],
        detail=detail,
        at=clock.now(),
    )


# ---------------------------------------------------------------------------
# Import


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
    upload = openpgp.scan(data)
    results: list[KeyResult] = []
    rejected = list(upload.rejected)
    single = len(upload.candidates) + len(upload.rejected) == 1
    for candidate in upload.candidates:
        if PolicyBlock.blocks_fingerprint(candidate.fingerprint):
            if single and not upload.revocations:
                raise RemovedByPolicy()
            rejected.append(str(RemovedByPolicy.default_message))
            continue
        unchanged = _unchanged(candidate)
        if unchanged is not None:
            results.append(unchanged)
            continue
        try:
            cert = openpgp.clean(candidate)
        except InvalidKey as exc:
            if single:
                raise
            rejected.append(exc.message)
            continue
        results.append(_store(cert, origin=origin, actor=actor, source_id=source_id))
    for revocation in upload.revocations:
        key = _revocation_target(revocation)
        if key is None:
            rejected.append(_("A revocation certificate was uploaded for a key this server does not have."))
            continue
        results.append(_store_revocation(key, revocation, actor=actor))
    if not results:
        raise InvalidKey(rejected[0] if rejected else None)
    return ImportResult(results, rejected)


def _revocation_target(revocation: openpgp.Revocation) -> Key | None:
    if revocation.issuer_fpr:
        return Key.objects.filter(fingerprint=revocation.issuer_fpr).first()
    if revocation.issuer_keyid:
        return Key.objects.filter(key_id=revocation.issuer_keyid).first()
    return None


def _unchanged(candidate: openpgp.Candidate) -> KeyResult | None:
    """The stored key, when the upload holds nothing it does not have yet.

    A re-upload of a key already stored as it is (the common case: gpg
    --send-keys again, a mirror, a refresh) is answered from the stored
    copy: no verification, no lock, no write.
    """
    from .schedule import next_refresh

    key = Key.objects.filter(fingerprint=candidate.fingerprint).first()
    if key is None or not openpgp.contains(bytes(key.data), candidate):
        return None
    if key.next_refresh_at is None and key.refreshed_at is None and next_refresh(key, clock.now()):
        return None  # not scheduled yet: the full path schedules it
    return KeyResult(key, False, False, status(key), problems(openpgp.load_stored(bytes(key.data))))


def _store(cert: openpgp.CertInfo, *, origin: str, actor: str, source_id: int | None) -> KeyResult:
    """Insert or merge one verified certificate.

    1. Lock the stored row (or create it; a concurrent insert is retried as
       a merge).
    2. Merge the new copy into the stored one: nothing stored is ever lost.
    3. Update the key's fields, subkeys and bindings, and rebuild the
       published forms, all in this transaction.
    """
    with transaction.atomic():
        key = Key.objects.select_for_update().filter(fingerprint=cert.fingerprint).first()
        created = False
        if key is None:
            try:
                with transaction.atomic():
                    key = Key.objects.create(**_key_fields(cert), origin=origin, source_id=source_id)
                created = True
            except IntegrityError:
                key = Key.objects.select_for_update().get(fingerprint=cert.fingerprint)
        info = cert if created else openpgp.merge(bytes(key.data), cert.data)
        changed = created or info.data != bytes(key.data)
        if changed:
            _apply(key, info, actor=actor)
        if key.next_refresh_at is None and key.refreshed_at is None:
            from .schedule import next_refresh

            due = next_refresh(key, clock.now())
            if due is not None:
                key.next_refresh_at = due
                key.save(update_fields=["next_refresh_at"])
        if created:
            log("key_created", key=key, actor=actor, detail=origin)
        elif changed:
            log("key_updated", key=key, actor=actor)
    return KeyResult(key, created, changed, status(key), problems(info))


def problems(info: openpgp.CertInfo) -> list[tuple[str, str]]:
    return [(u.value, u.reason) for u in info.user_ids if not u.valid and not u.revoked and "@" in u.value]


def check_upload_rate(client: str) -> None:
    """Per-client upload limit, shared by every submission path."""
    if not ratelimit.allow(f"upload-ip:{client}", settings.RATE_UPLOAD_PER_CLIENT):
        raise RateLimited(_("Too many uploads from your address. Please try again later."))


def _store_revocation(key: Key, revocation: openpgp.Revocation, *, actor: str) -> KeyResult:
    with transaction.atomic():
        key = Key.objects.select_for_update().get(pk=key.pk)
        info = openpgp.add_revocation(bytes(key.data), revocation)
        changed = info.data != bytes(key.data)
        if changed:
            _apply(key, info, actor=actor)
        if changed and info.revoked:
            log("key_revoked", key=key, actor=actor)
    return KeyResult(key, False, changed, status(key))


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
        "revoked": info.revoked,
        "data": info.data,
    }


def _apply(key: Key, info: openpgp.CertInfo, *, actor: str) -> None:
    """Write a certificate's facts to the locked key and its rows."""
    for name, value in _key_fields(info).items():
        setattr(key, name, value)
    key.save()

    wanted = {s.fingerprint: s.key_id for s in info.subkeys}
    have = set(key.subkeys.values_list("fingerprint", flat=True))
    key.subkeys.exclude(fingerprint__in=wanted).delete()
    Subkey.objects.bulk_create(
        Subkey(primary=key, fingerprint=fpr, key_id=kid) for fpr, kid in wanted.items() if fpr not in have
    )

    valid = info.emails
    blocked = PolicyBlock.blocked_addresses(valid)
    bindings = {b.address: b for b in key.bindings.all()}
    for address in valid:
        if address not in bindings:
            bindings[address] = Binding.objects.create(
                key=key,
                address=address,
                domain=domain_of(address),
                wkd_hash=wkd_hash(address),
                state=State.REMOVED_BY_POLICY if address in blocked else State.UNPUBLISHED,
            )
    for address, binding in bindings.items():
        if binding.state == State.REMOVED_BY_POLICY:
            continue
        if address in blocked:
            new_state = State.REMOVED_BY_POLICY
        elif key.revoked or address not in valid:
            # Rule 5: a revoked key or user ID unpublishes its addresses.
            new_state = State.REVOKED
        elif binding.state == State.REVOKED:
            new_state = State.UNPUBLISHED  # valid again: must be confirmed anew
        else:
            continue
        if new_state != binding.state:
            was_served = binding.state in SERVED_STATES
            binding.state = new_state
            binding.save(update_fields=["state", "updated"])
            if was_served:
                log("address_" + new_state, key=key, address=address, actor=actor)
    rebuild(key, info)


def rebuild(key: Key, info: openpgp.CertInfo | None = None) -> None:
    """Recompute the published certificate, its armor and per-address forms.

    Called with the key row locked, in the transaction that changed it
    (publication rule 2), so lookups only ever read precomputed bytes.
    """
    info = info or openpgp.load(bytes(key.data))
    bindings = list(key.bindings.all())
    published = [b.address for b in bindings if b.state == State.PUBLISHED]
    if key.blocked and not key.revoked:
        key.published, key.published_armor, key.published_user_ids = b"", "", []
    elif key.blocked:
        # Removed, but revoked: the revocation alone stays available by id,
        # so clients that have the key learn of it (rule 5).
        data = openpgp.publishable(info, [])
        key.published, key.published_armor, key.published_user_ids = data, openpgp.armor(data), []
    else:
        data = openpgp.publishable(info, published)
        key.published = data
        key.published_armor = openpgp.armor(data)
        key.published_user_ids = [
            u.value for u in info.user_ids if u.valid and u.email in published and not info.revoked
        ]
    cached = [b.address for b in bindings if b.state == State.CACHED]
    if cached and not key.blocked and not key.revoked:
        served = published + cached
        key.fallback = openpgp.publishable(info, served)
        key.fallback_armor = openpgp.armor(bytes(key.fallback))
        key.fallback_user_ids = [u.value for u in info.user_ids if u.valid and u.email in served]
    else:
        key.fallback, key.fallback_armor, key.fallback_user_ids = b"", "", []
    key.save(
        update_fields=[
            "published",
            "published_armor",
            "published_user_ids",
            "fallback",
            "fallback_armor",
            "fallback_user_ids",
            "updated",
        ]
    )
    for binding in bindings:
        is_served = binding.state in SERVED_STATES and not key.blocked and not key.revoked
        certificate = openpgp.publishable(info, [binding.address]) if is_served else b""
        if bytes(binding.certificate) != certificate:
            binding.certificate = certificate
            binding.save(update_fields=["certificate", "updated"])


def status(key: Key) -> dict[str, str]:
    """The VKS status of each address of a key; a revoked key has none."""
    if key.revoked:
        return {}
    names = {
        State.PUBLISHED: "published",
        State.PENDING: "pending",
        State.REVOKED: "revoked",
        State.UNPUBLISHED: "unpublished",
        State.CACHED: "unpublished",
    }
    return {
        b.address: "pending" if b.awaiting_confirmation else names[State(b.state)]
        for b in key.bindings.order_by("id")
        if b.state in names
    }


# ---------------------------------------------------------------------------
# Confirmation by email


def request_verification(
    key: Key,
    addresses: Iterable[str],
    *,
    client: str,
    locale: str = "",
    actor: str = "",
    replace: bool = False,
) -> dict[str, str]:
    """Mail a confirmation link to each requested address (publication rule 8).

    Addresses already published are left alone. A repeat for the same address
    within its limit answers `pending` and sends nothing (a 429 there would
    tell a stranger that someone else asked). The client's own limit is a 429.
    """
    from .tasks import send_verification_mail

    requested = list(dict.fromkeys(a for a in addresses))[: settings.MAX_MAILS_PER_UPLOAD]
    if not requested:
        return status(key)
    limited = False
    with transaction.atomic():
        key = Key.objects.select_for_update().get(pk=key.pk)
        if key.revoked or key.blocked:
            return status(key)
        organisation = _organisation_domains()
        for binding in key.bindings.filter(address__in=requested).order_by("id"):
            if binding.state not in (State.UNPUBLISHED, State.PENDING, State.CACHED):
                continue
            if binding.domain in organisation:
                continue  # rule 7: not published over the organisation's directory
            address_bucket = f"mail-addr:{binding.address}"
            if not ratelimit.allow(address_bucket, settings.RATE_MAIL_PER_ADDRESS):
                _mark_pending(binding)
                continue
            if not ratelimit.allow(f"mail-ip:{client}", settings.RATE_MAIL_PER_CLIENT):
                ratelimit.refund(address_bucket)
                limited = True
                break
            _mark_pending(binding)
            log("verification_requested", key=key, address=binding.address, actor=actor or client)
            transaction.on_commit(partial(send_verification_mail.delay, binding.pk, locale, replace))
    if limited:
        # What was sent before the limit stays sent (committed above).
        raise RateLimited(
            _("Too many confirmation mails were requested from your address. Please try again later.")
        )
    return status(key)


def _organisation_domains() -> set[str]:
    """Domains the organisation's directory is the only authority for (rule 7)."""
    from federation.lookup import authoritative_domains

    return authoritative_domains()


def _mark_pending(binding: Binding) -> None:
    """A confirmation mail is on its way to the binding's address.

    A cached binding (found upstream or in a mirrored dump) stays cached, and
    so stays served as a fallback answer, until its owner confirms: asking
    for a confirmation must never hide a key that lookups find today.
    """
    if binding.awaiting_confirmation:
        return
    binding.pending_since = clock.now()
    if binding.state == State.CACHED:
        binding.save(update_fields=["pending_since", "updated"])
        return
    binding.state = State.PENDING
    binding.save(update_fields=["state", "pending_since", "updated"])


def unconfirmed_addresses(key: Key) -> list[str]:
    """Addresses of a key that are neither published nor pending."""
    return list(
        key.bindings.filter(Q(state=State.UNPUBLISHED) | Q(state=State.CACHED, pending_since__isnull=True))
        .order_by("id")
        .values_list("address", flat=True)
    )


def verification_target(plain: str) -> VerificationToken:
    """The token behind a confirmation link, for the page that shows it."""
    token = tokens.find(plain, VerificationToken.Purpose.VERIFY)
    binding = token.key.bindings.filter(address=token.address).first()
    if binding is None or binding.state in (State.REVOKED, State.REMOVED_BY_POLICY):
        raise InvalidToken(_("This address can no longer be confirmed for this key."))
    return token


def confirm(plain: str, *, actor: str = "") -> Binding:
    """Publish the address of a verification token (single use)."""
    with transaction.atomic():
        token = tokens.find(plain, VerificationToken.Purpose.VERIFY, for_update=True)
        key = Key.objects.select_for_update().get(pk=token.key.pk)
        binding = key.bindings.filter(address=token.address).first()
        token.used_at = clock.now()
        token.save(update_fields=["used_at"])
        if (
            binding is None
            or key.revoked
            or key.blocked
            or binding.state in (State.REVOKED, State.REMOVED_BY_POLICY)
            or PolicyBlock.blocked_addresses([binding.address])
            or binding.domain in _organisation_domains()
        ):
            raise InvalidToken(_("This address can no longer be confirmed for this key."))
        _publish(key, binding, Validation.EMAIL_CONFIRMED, actor=actor or "email")
        if token.replace:
            replace_others(binding.address, keep=key, actor=actor or "email")
    return binding


def _publish(key: Key, binding: Binding, validation: str, *, actor: str) -> None:
    """Publish a binding of a locked key and rebuild its published forms."""
    if binding.state == State.PUBLISHED and binding.validation == validation:
        return
    binding.state = State.PUBLISHED
    binding.validation = validation
    binding.verified_at = clock.now()
    binding.pending_since = None
    binding.save()
    rebuild(key)
    log("address_published", key=key, address=binding.address, actor=actor, detail=validation)


def publish(key: Key, address: str, validation: str, *, actor: str, replace: bool = False) -> Binding:
    """Publish an address proven another way than by mail (OIDC, directory)."""
    with transaction.atomic():
        key = Key.objects.select_for_update().get(pk=key.pk)
        binding = key.bindings.filter(address=address).first()
        if (
            binding is None
            or key.revoked
            or key.blocked
            or binding.state
            in (
                State.REVOKED,
                State.REMOVED_BY_POLICY,
            )
        ):
            raise InvalidKey(_("This key has no valid user ID for %(address)s.") % {"address": address})
        _publish(key, binding, validation, actor=actor)
        if replace:
            replace_others(address, keep=key, actor=actor)
    return binding


def replace_others(address: str, *, keep: Key, actor: str) -> list[str]:
    """Unpublish `address` on every key but `keep` (publication rule 4).

    The owner is told by mail which keys were replaced; nothing is sent when
    nothing changed.
    """
    from .tasks import send_replaced_notice

    replaced: list[str] = []
    others = (
        Binding.objects.filter(address=address, state=State.PUBLISHED)
        .exclude(key=keep)
        .values_list("key_id", flat=True)
    )
    for key_pk in list(others):
        key = Key.objects.select_for_update().get(pk=key_pk)
        key.bindings.filter(address=address, state=State.PUBLISHED).update(state=State.UNPUBLISHED)
        rebuild(key)
        log("address_replaced", key=key, address=address, actor=actor, detail=keep.fingerprint)
        replaced.append(key.fingerprint)
    if replaced:
        transaction.on_commit(partial(send_replaced_notice.delay, address, keep.fingerprint, replaced))
    return replaced


def upload_token(key: Key) -> str:
    return tokens.issue(VerificationToken.Purpose.UPLOAD, key)


def key_for_upload_token(plain: str) -> Key:
    return tokens.find(plain, VerificationToken.Purpose.UPLOAD).key


# ---------------------------------------------------------------------------
# Lookups: one indexed query each, precomputed bytes only.


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


def published_bindings(address: str, *, state: str | tuple[str, ...] = State.PUBLISHED) -> list[Binding]:
    """Bindings of an address in `state` (per-address certificates), best first."""
    states = (state,) if isinstance(state, str) else state
    rows = Binding.objects.filter(address=address, state__in=states, key__blocked=False).select_related("key")
    return list(best_first(rows.defer("key__data"), "key__"))


# Served by id: keys not removed, and removed keys that carry a revocation.
SERVED_BY_ID = Q(blocked=False) | Q(revoked=True)


def key_by_fingerprint(fpr: str) -> Key | None:
    """The key with this primary or subkey fingerprint."""
    key = Key.objects.defer("data").filter(SERVED_BY_ID, fingerprint=fpr).first()
    if key is None:
        key = best_first(Key.objects.filter(SERVED_BY_ID, subkeys__fingerprint=fpr)).defer("data").first()
    return key


def keys_by_keyid(keyid: str) -> list[Key]:
    """Keys whose primary key or a subkey has this long key id."""
    keys = list(best_first(Key.objects.filter(SERVED_BY_ID, key_id=keyid)).defer("data"))
    if not keys:
        keys = list(
            best_first(Key.objects.filter(SERVED_BY_ID, subkeys__key_id=keyid).distinct()).defer("data")
        )
    return keys


def stats() -> dict[str, int]:
    return {
        "keys": Key.objects.filter(blocked=False).count(),
        "published_addresses": Binding.objects.filter(state=State.PUBLISHED).count(),
    }


# ---------------------------------------------------------------------------
# Self-service management (as keys.openpgp.org's /manage)


def request_manage_link(address: str, *, client: str, locale: str = "") -> None:
    """Mail management links for the published keys of `address`.

    The caller answers the same whether or not the address is known: no
    enumeration. The client's limit is a 429; the address's limit is silent.
    """
    from .tasks import send_manage_mail

    if not ratelimit.allow(f"manage-ip:{client}", settings.RATE_MANAGE_PER_CLIENT):
        raise RateLimited()
    key_ids = list(
        Binding.objects.filter(address=address, state=State.PUBLISHED, key__blocked=False)
        .values_list("key_id", flat=True)
        .distinct()
    )
    if not key_ids or not ratelimit.allow(f"manage-addr:{address}", settings.RATE_MANAGE_PER_ADDRESS):
        return
    log("manage_link_requested", address=address, actor=client)
    transaction.on_commit(partial(send_manage_mail.delay, address, key_ids, locale))


def key_for_manage_token(plain: str) -> Key:
    key = tokens.find(plain, VerificationToken.Purpose.MANAGE).key
    if key.blocked:
        raise InvalidToken()
    return key


def owner_unpublish(plain: str, address: str, *, actor: str) -> Binding:
    key = key_for_manage_token(plain)
    binding = key.bindings.filter(address=address).first()
    if binding is None:
        raise InvalidKey(_("This address is not on this key."))
    unpublish(binding, actor=actor)
    return binding


def owner_remove_key(plain: str, *, actor: str) -> Key:
    """The owner removes the whole key: every address at once, for good."""
    key = key_for_manage_token(plain)
    remove_key_by_policy(key, reason="removed by its owner", actor=actor)
    return key


# ---------------------------------------------------------------------------
# Administration


def mark_fingerprint_verified(binding: Binding, *, actor: str) -> None:
    """Staff compared the fingerprint out of band with the owner."""
    with transaction.atomic():
        key = Key.objects.select_for_update().get(pk=binding.key_id)
        binding = key.bindings.get(pk=binding.pk)
        binding.validation = Validation.FINGERPRINT_VERIFIED
        binding.last_audited_at = clock.now()
        binding.save(update_fields=["validation", "last_audited_at", "updated"])
        log("fingerprint_verified", key=key, address=binding.address, actor=actor)


def purge(key: Key, *, actor: str) -> None:
    """Delete a key and everything bound to it; a policy block keeps it out."""
    with transaction.atomic():
        key = Key.objects.select_for_update().get(pk=key.pk)
        PolicyBlock.objects.get_or_create(
            fingerprint=key.fingerprint, defaults={"reason": "purged", "created_by": actor}
        )
        log("key_purged", actor=actor, detail=key.fingerprint)
        Event.objects.filter(key=key).update(key=None)
        key.delete()


def unpublish(binding: Binding, *, actor: str) -> None:
    with transaction.atomic():
        key = Key.objects.select_for_update().get(pk=binding.key_id)
        binding = key.bindings.get(pk=binding.pk)
        if binding.state in (State.PUBLISHED, State.PENDING, State.CACHED):
            binding.state = State.UNPUBLISHED
            binding.save(update_fields=["state", "updated"])
            rebuild(key)
            log("address_unpublished", key=key, address=binding.address, actor=actor)


def remove_key_by_policy(key: Key, *, reason: str, actor: str) -> None:
    """Take a key out of distribution for good: no path brings it back."""
    with transaction.atomic():
        key = Key.objects.select_for_update().get(pk=key.pk)
        PolicyBlock.objects.get_or_create(
            fingerprint=key.fingerprint, defaults={"reason": reason, "created_by": actor}
        )
        key.blocked = True
        key.save(update_fields=["blocked", "updated"])
        key.bindings.update(state=State.REMOVED_BY_POLICY)
        rebuild(key)
        log("key_removed_by_policy", key=key, actor=actor, detail=reason)


def remove_address_by_policy(address: str, *, reason: str, actor: str) -> None:
    """Block an address (or pattern) on every key, now and for later uploads."""
    block, _created = PolicyBlock.objects.get_or_create(
        address_pattern=address, defaults={"reason": reason, "created_by": actor}
    )
    apply_policy_block(block, actor=actor)


def apply_policy_block(block: PolicyBlock, *, actor: str) -> None:
    if block.fingerprint:
        key = Key.objects.filter(fingerprint=block.fingerprint).first()
        if key and not key.blocked:
            remove_key_by_policy(key, reason=block.reason, actor=actor)
    if block.address_pattern:
        candidates = Binding.objects.exclude(state=State.REMOVED_BY_POLICY)
        if "*" not in block.address_pattern and "?" not in block.address_pattern:
            candidates = candidates.filter(address=block.address_pattern.lower())
        for binding in candidates.select_related("key"):
            if not PolicyBlock.blocked_addresses([binding.address]):
                continue
            with transaction.atomic():
                key = Key.objects.select_for_update().get(pk=binding.key_id)
                key.bindings.filter(pk=binding.pk).update(state=State.REMOVED_BY_POLICY)
                rebuild(key)
                log(
                    "address_removed_by_policy",
                    key=key,
                    address=binding.address,
                    actor=actor,
                    detail=block.reason,
                )
