"""Administration: removal by policy, purge, unpublishing, fingerprint audits.

A policy block is enforced inside the import service too, so no path
(upload, fallback, refresh, dump import) brings a removed key or address
back.
"""

from __future__ import annotations

from .. import clock
from ..models import Binding, Event, Key, PolicyBlock
from . import notices, publication, published_files
from .locking import locked_key

State = Binding.State


def mark_fingerprint_verified(binding: Binding, *, actor: str) -> None:
    """Staff compared the fingerprint out of band with the owner."""
    with locked_key(binding.key_id) as key:
        binding = key.bindings.get(pk=binding.pk)
        binding.validation = Binding.Validation.FINGERPRINT_VERIFIED
        binding.last_audited_at = clock.now()
        binding.save(update_fields=["validation", "last_audited_at", "updated"])
        Event.objects.record("fingerprint_verified", key=key, address=binding.address, actor=actor)
        # The answers' bytes are the same, but their Key-Validation header is not.
        published_files.changed(key)


def purge(key: Key, *, actor: str) -> None:
    """Delete a key and everything bound to it; a policy block keeps it out."""
    with locked_key(key.pk) as key:
        PolicyBlock.objects.get_or_create(
            fingerprint=key.fingerprint, defaults={"reason": "purged", "created_by": actor}
        )
        Event.objects.record("key_purged", actor=actor, detail=key.fingerprint)
        Event.objects.filter(key=key).update(key=None)
        told = notices.published_addresses(key)
        gone = published_files.identifiers_of(key)
        key.delete()
        published_files.changed(key, gone=gone)
        notices.record(told, key.fingerprint, notices.Change.KEY_REMOVED, actor=actor)


def unpublish(binding: Binding, *, actor: str) -> None:
    """Take one address off its key (staff or the owner)."""
    with locked_key(binding.key_id) as key:
        publication.unpublish(key, [key.bindings.get(pk=binding.pk)], actor=actor)


def remove_key_by_policy(key: Key, *, reason: str, actor: str, tell: bool = True) -> None:
    """Take a key out of distribution for good: no path brings it back.
    `tell`: its published addresses get a change notice (not when the owner
    asked for it: the one who asked is the one who would be told)."""
    with locked_key(key.pk) as key:
        PolicyBlock.objects.get_or_create(
            fingerprint=key.fingerprint, defaults={"reason": reason, "created_by": actor}
        )
        told = notices.published_addresses(key) if tell else []
        publication.remove_key(key, actor=actor, reason=reason)
        notices.record(told, key.fingerprint, notices.Change.KEY_REMOVED, actor=actor)


def remove_address_by_policy(address: str, *, reason: str, actor: str) -> None:
    """Block an address (or pattern) on every key, now and for later uploads."""
    block, _created = PolicyBlock.objects.get_or_create(
        address_pattern=address, defaults={"reason": reason, "created_by": actor}
    )
    apply_policy_block(block, actor=actor)


def apply_policy_block(block: PolicyBlock, *, actor: str) -> None:
    """Apply a new or changed block to what is stored already."""
    if block.fingerprint:
        key = Key.objects.filter(fingerprint=block.fingerprint).first()
        if key and not key.blocked:
            remove_key_by_policy(key, reason=block.reason, actor=actor)
    if not block.address_pattern:
        return
    candidates = Binding.objects.exclude(state=State.REMOVED_BY_POLICY)
    if "*" not in block.address_pattern and "?" not in block.address_pattern:
        candidates = candidates.filter(address=block.address_pattern.lower())
    for binding in candidates:
        if not PolicyBlock.objects.blocked_addresses([binding.address]):
            continue
        with locked_key(binding.key_id) as key:
            locked = key.bindings.get(pk=binding.pk)
            told = notices.published_addresses(key) if locked.state == State.PUBLISHED else []
            publication.remove_address(key, locked, actor=actor, reason=block.reason)
            notices.record(
                told, key.fingerprint, notices.Change.ADDRESS_REMOVED, actor=actor, address=locked.address
            )
