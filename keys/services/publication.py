"""The one owner of publication: binding states and the published forms.

Nothing else writes `Binding.state` or the precomputed answers (the
published and fallback certificates of a key, the per-address certificate
of a binding). Every function here runs on a key its caller holds locked
(`locking.locked_key`), in the transaction that changes it; every state
change stamps `updated` and writes its event, and `rebuild` recomputes the
answers before the transaction commits (publication rule 2), so lookups
never parse OpenPGP and never see a half-made change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from .. import clock, openpgp
from ..identifiers import domain_of, wkd_hash
from ..models import Binding, Event, Key, PolicyBlock
from . import published_files
from .limits import limits

State = Binding.State
Validation = Binding.Validation
# Bindings whose address some lookup path may serve (rule 3: cached ones as a fallback).
SERVED_STATES = (State.PUBLISHED, State.CACHED)
# States from which an address may be asked to confirm.
CONFIRMABLE = (State.UNPUBLISHED, State.PENDING, State.CACHED)


def _move(
    key: Key,
    binding: Binding,
    state: str,
    *,
    actor: str,
    event: str | None,
    detail: str = "",
    **fields: object,
) -> None:
    """The one write of a binding's state: the fields, `updated`, the event."""
    binding.state = state
    for name, value in fields.items():
        setattr(binding, name, value)
    binding.save(update_fields=["state", *fields, "updated"])
    if event:
        Event.objects.record(event, key=key, address=binding.address, actor=actor, detail=detail)


# -- what the certificate says -------------------------------------------------------


def _follow_certificate(binding: Binding, *, blocked: bool, revoked: bool, valid: bool) -> str | None:
    """The state the certificate now asks for, or None to keep the binding as it is."""
    if binding.state == State.REMOVED_BY_POLICY:
        return None
    if blocked:
        return State.REMOVED_BY_POLICY
    if revoked or not valid:
        return State.REVOKED  # rule 5: a revoked key or user ID unpublishes its addresses
    if binding.state == State.REVOKED:
        return State.UNPUBLISHED  # valid again: must be confirmed anew
    return None


def sync_bindings(key: Key, info: openpgp.CertInfo, *, actor: str) -> None:
    """Give each valid address of the certificate a binding, and move the
    bindings the certificate no longer supports (revocations, policy)."""
    valid = info.emails
    blocked = PolicyBlock.objects.blocked_addresses(valid)
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
        new_state = _follow_certificate(
            binding, blocked=address in blocked, revoked=key.revoked, valid=address in valid
        )
        if new_state is None or new_state == binding.state:
            continue
        was_served = binding.state in SERVED_STATES
        _move(key, binding, new_state, actor=actor, event=f"address_{new_state}" if was_served else None)


def first_publication(key: Key, info: openpgp.CertInfo) -> None:
    """Insert a new key with its first published forms and its addresses.

    What `sync_bindings` and `rebuild` would make of a key with no binding
    yet, in one insert each: no address is published or cached, so the
    published form is the key without user IDs and no address has a form.
    """
    valid = info.emails
    blocked = PolicyBlock.objects.blocked_addresses(valid)
    key.published, key.published_armor, key.published_user_ids = _published_form(key, info, [])
    key.fallback, key.fallback_armor, key.fallback_user_ids = EMPTY
    key.save(force_insert=True)

    def state(address: str) -> str:
        if address in blocked:
            return State.REMOVED_BY_POLICY
        return State.REVOKED if key.revoked else State.UNPUBLISHED

    Binding.objects.bulk_create(
        Binding(key=key, address=a, domain=domain_of(a), wkd_hash=wkd_hash(a), state=state(a)) for a in valid
    )
    ids = published_files.Identifiers(
        {key.fingerprint, *(s.fingerprint for s in info.subkeys)},
        {key.key_id, *(s.key_id for s in info.subkeys)},
        set(valid),
    )
    published_files.changed(key, ids=ids)


# -- state changes ------------------------------------------------------------------


def publish(key: Key, binding: Binding, validation: str, *, actor: str) -> None:
    """Publish a binding (its address was proven) and rebuild the answers."""
    if binding.state == State.PUBLISHED and binding.validation == validation:
        return
    _move(
        key,
        binding,
        State.PUBLISHED,
        actor=actor,
        event="address_published",
        detail=validation,
        validation=validation,
        verified_at=clock.now(),
        pending_since=None,
    )
    rebuild(key)


def renew(key: Key, binding: Binding, *, actor: str) -> None:
    """A published address was confirmed again (re-confirmation): it stays
    published, its confirmation is dated now. Nothing served changes."""
    _move(
        key,
        binding,
        State.PUBLISHED,
        actor=actor,
        event="address_reconfirmed",
        detail=binding.validation,
        verified_at=clock.now(),
    )


def mark_pending(binding: Binding) -> None:
    """A confirmation mail is on its way to the binding's address.

    A cached binding (found upstream or in a mirrored dump) stays cached, and
    so stays served as a fallback answer, until its owner confirms: asking
    for a confirmation must never hide a key that lookups find today. The
    caller writes the event (it knows why).
    """
    if binding.awaiting_confirmation:
        return
    binding.pending_since = clock.now()
    if binding.state == State.CACHED:
        binding.save(update_fields=["pending_since", "updated"])
        return
    binding.state = State.PENDING
    binding.save(update_fields=["state", "pending_since", "updated"])


def clear_pending(binding: Binding) -> None:
    """No confirmation mail is out for the binding any more (its delivery
    failed for good): pending goes back to unpublished, a cached binding
    stays cached. The caller writes the event."""
    if not binding.awaiting_confirmation:
        return
    binding.pending_since = None
    if binding.state == State.CACHED:
        binding.save(update_fields=["pending_since", "updated"])
        return
    binding.state = State.UNPUBLISHED
    binding.save(update_fields=["state", "pending_since", "updated"])


def vouch(
    key: Key, binding: Binding, *, state: str, validation: str, actor: str, verified: bool = True
) -> None:
    """An upstream vouches for an address: published (the organisation's
    directory for its own domains) or cached (everything else). The caller
    rebuilds once it has moved every binding it wants to."""
    event = f"address_{state}"
    if verified:
        _move(key, binding, state, actor=actor, event=event, validation=validation, verified_at=clock.now())
    else:
        _move(key, binding, state, actor=actor, event=event, validation=validation)


def unpublish(
    key: Key,
    bindings: Iterable[Binding],
    *,
    actor: str,
    event: str | None = "address_unpublished",
    detail: str = "",
) -> None:
    """Take addresses off a key (owner, admin, replacement, refresh)."""
    changed = False
    for binding in bindings:
        if binding.state in (State.PUBLISHED, State.PENDING, State.CACHED):
            _move(key, binding, State.UNPUBLISHED, actor=actor, event=event, detail=detail)
            changed = True
    if changed:
        rebuild(key)


def remove_address(key: Key, binding: Binding, *, actor: str, reason: str) -> None:
    """Remove one address of a key from distribution (a policy block matched it)."""
    _move(
        key, binding, State.REMOVED_BY_POLICY, actor=actor, event="address_removed_by_policy", detail=reason
    )
    rebuild(key)


def remove_key(key: Key, *, actor: str, reason: str) -> None:
    """Take a whole key out of distribution: every address, the key itself."""
    key.blocked = True
    key.save(update_fields=["blocked", "updated"])
    for binding in key.bindings.exclude(state=State.REMOVED_BY_POLICY):
        _move(key, binding, State.REMOVED_BY_POLICY, actor=actor, event=None)
    rebuild(key)
    Event.objects.record("key_removed_by_policy", key=key, actor=actor, detail=reason)


@dataclass(frozen=True)
class RestoredBinding:
    """One address of a key as a dump (keys.services.restore) recorded it."""

    address: str
    state: str
    validation: str = ""
    pending_since: datetime | None = None
    verified_at: datetime | None = None
    last_audited_at: datetime | None = None
    locale: str = ""
    created: datetime | None = None
    updated: datetime | None = None


def restore(key: Key, bindings: Iterable[RestoredBinding], *, blocked: bool, actor: str) -> None:
    """Give a key just stored from a dump the removal and the binding states
    it had where the dump was written, exactly, and rebuild its answers.

    The restore of a backup, not a decision: one event for the key, and the
    bindings keep their timestamps (written after the rebuild, which would
    stamp them anew).
    """
    if key.blocked != blocked:
        key.blocked = blocked
        key.save(update_fields=["blocked", "updated"])
    have = {b.address: b for b in key.bindings.all()}
    stamps: dict[int, dict[str, datetime]] = {}
    for item in bindings:
        binding = have.get(item.address) or Binding(
            key=key, address=item.address, domain=domain_of(item.address), wkd_hash=wkd_hash(item.address)
        )
        binding.state = item.state
        binding.validation = item.validation
        binding.pending_since = item.pending_since
        binding.verified_at = item.verified_at
        binding.last_audited_at = item.last_audited_at
        binding.locale = item.locale
        binding.save()
        have[item.address] = binding
        stamps[binding.pk] = {
            name: value for name, value in (("created", item.created), ("updated", item.updated)) if value
        }
    Event.objects.record("key_restored", key=key, actor=actor, detail="dump")
    rebuild(key)
    for pk, values in stamps.items():
        if values:
            Binding.objects.filter(pk=pk).update(**values)


# -- the precomputed answers ---------------------------------------------------------

Form = tuple[bytes, str, list[str]]
EMPTY: Form = (b"", "", [])


def _form(info: openpgp.CertInfo, addresses: list[str]) -> Form:
    data = openpgp.publishable(info, addresses)
    user_ids = [] if info.revoked else [u.value for u in info.user_ids if u.valid and u.email in addresses]
    return data, openpgp.armor(data), user_ids


def _published_form(key: Key, info: openpgp.CertInfo, published: list[str]) -> Form:
    if key.blocked and not key.revoked:
        return EMPTY
    if key.blocked:
        # Removed, but revoked: the revocation alone stays available by id,
        # so clients that have the key learn of it (rule 5).
        return _form(info, [])
    return _form(info, published)


def _fallback_form(key: Key, info: openpgp.CertInfo, published: list[str], cached: list[str]) -> Form:
    """The key reduced to its published and cached addresses, served by id
    only when nothing of it is published (rule 3)."""
    if not cached or key.blocked or key.revoked:
        return EMPTY
    return _form(info, published + cached)


def rebuild(
    key: Key, info: openpgp.CertInfo | None = None, *, gone: published_files.Identifiers | None = None
) -> None:
    """Recompute the published certificate, its armor and per-address forms,
    and the published files (`gone`: identifiers the key no longer has).

    Called with the key row locked, in the transaction that changed it
    (publication rule 2), so lookups only ever read precomputed bytes.
    """
    info = info or openpgp.load_stored(bytes(key.data), limits())
    bindings = list(key.bindings.all())
    published = [b.address for b in bindings if b.state == State.PUBLISHED]
    cached = [b.address for b in bindings if b.state == State.CACHED]
    key.published, key.published_armor, key.published_user_ids = _published_form(key, info, published)
    key.fallback, key.fallback_armor, key.fallback_user_ids = _fallback_form(key, info, published, cached)
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
    published_files.changed(key, gone=gone)
