"""Change notices: each published address of a key that changes is told
what changed and how to undo it, in at most one mail per interval.

1. Where a published key changes (the import service after a merge, the
   policy service, a refresh that reassigns an address), `record` writes one
   NoticeChange per address published on the key just before the change, in
   the transaction of the change: a rolled-back change tells no one.
2. `notice_mail.send_due` (the beat schedule, `manage.py send_notices`) turns the
   pending changes of an address into one OutboxMail of kind NOTICE, once
   its oldest change has waited NOTICE_DELAY_MINUTES (a burst of changes
   becomes one mail) and no notice went to the address within
   NOTICE_INTERVAL_HOURS (counted in the outbox itself).
3. keys.services.mail composes the mail at delivery, with an opt-out link
   (a token of purpose NOTICES, reusable until it expires): `opt_out` and
   `opt_in` act on it.

An address replaced by another key (Attester POST /pub, rule 4) is not a
notice: verification.replace_others already mails it at once (kind
REPLACED), so a takeover is known without waiting for the batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from .. import clock, openpgp
from ..errors import InvalidToken
from ..models import Binding, Key, NoticeChange, NoticeOptOut, VerificationToken
from . import tokens
from .limits import limits

Change = NoticeChange.Change
Via = NoticeChange.Via


def via_of(actor: str) -> str:
    """Who made a change, as the notice tells it (the actor of its event)."""
    if actor.startswith("refresh"):
        return Via.REFRESH
    if actor.startswith("admin"):
        return Via.OPERATOR
    return Via.UPLOAD


def published_addresses(key: Key) -> list[str]:
    """The addresses a notice about `key` goes to: those published on it now
    (called before the change, so a removed or revoked address is told too)."""
    if key.pk is None:
        return []
    return sorted(key.bindings.filter(state=Binding.State.PUBLISHED).values_list("address", flat=True))


def record(addresses: Iterable[str], fingerprint: str, change: str, *, actor: str, **detail: Any) -> int:
    """Note one change of a key for each address; the number noted."""
    addresses = list(addresses)
    if not settings.NOTICES_ENABLED or not addresses:
        return 0
    off = set(
        NoticeOptOut.objects.filter(digest__in=[NoticeOptOut.hash(a) for a in addresses]).values_list(
            "digest", flat=True
        )
    )
    now = clock.now()
    rows = [
        NoticeChange(
            address=a, fingerprint=fingerprint, change=change, via=via_of(actor), detail=detail, at=now
        )
        for a in addresses
        if NoticeOptOut.hash(a) not in off
    ]
    NoticeChange.objects.bulk_create(rows)
    return len(rows)


# -- what a merge changed ------------------------------------------------------------


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _subkey_changes(old: openpgp.CertInfo, new: openpgp.CertInfo) -> list[tuple[str, dict[str, Any]]]:
    before = {s.fingerprint: s for s in old.subkeys}
    added = [s.fingerprint for s in new.subkeys if s.fingerprint not in before]
    revoked = [
        s.fingerprint
        for s in new.subkeys
        if s.revoked and s.fingerprint in before and not before[s.fingerprint].revoked
    ]
    # A new expiry of subkeys (gpg --quick-set-expire FPR 2y '*'), one line per pair of dates.
    moved: dict[tuple[str | None, str | None], list[str]] = {}
    for s in new.subkeys:
        was = before.get(s.fingerprint)
        if was is not None and not s.revoked and was.expires != s.expires:
            moved.setdefault((iso(was.expires), iso(s.expires)), []).append(s.fingerprint)
    changes: list[tuple[str, dict[str, Any]]] = []
    if added:
        changes.append((Change.SUBKEY_ADDED, {"subkeys": added}))
    if revoked:
        changes.append((Change.SUBKEY_REVOKED, {"subkeys": revoked}))
    changes += [(Change.EXPIRY_CHANGED, {"old": o, "new": n, "subkeys": f}) for (o, n), f in moved.items()]
    return changes


def compare(old: openpgp.CertInfo, new: openpgp.CertInfo) -> list[tuple[str, dict[str, Any]]]:
    """The changes an owner is told of between two copies of one certificate."""
    changes = _subkey_changes(old, new)
    if old.expires != new.expires:
        changes.append((Change.EXPIRY_CHANGED, {"old": iso(old.expires), "new": iso(new.expires)}))
    if new.revoked and not old.revoked:
        changes.append((Change.KEY_REVOKED, {}))
    was_revoked = {u.value for u in old.user_ids if u.revoked}
    changes += [
        (Change.USER_ID_REVOKED, {"user_id": u.value})
        for u in new.user_ids
        if u.revoked and u.email and u.value not in was_revoked
    ]
    return changes


class Before:
    """What a notice needs of a key just before a merge changes it."""

    def __init__(self, key: Key) -> None:
        self.addresses = published_addresses(key)
        # Parsed only when someone is to be told.
        self.data = bytes(key.data) if self.addresses else b""

    def told(self, key: Key, new: openpgp.CertInfo, *, actor: str) -> int:
        """Record what the merge changed, for the addresses published before it."""
        if not self.addresses or not settings.NOTICES_ENABLED:
            return 0
        old = openpgp.load_stored(self.data, limits())
        return sum(
            record(self.addresses, key.fingerprint, change, actor=actor, **detail)
            for change, detail in compare(old, new)
        )


# -- turning pending changes into mail -----------------------------------------------


# -- opting out -----------------------------------------------------------------------


def opted_out(address: str) -> bool:
    return NoticeOptOut.objects.filter(digest=NoticeOptOut.hash(address)).exists()


def optout_target(plain: str) -> VerificationToken:
    """The live opt-out token for `plain`, or InvalidToken with a message for notices."""
    try:
        return tokens.find(plain, VerificationToken.Purpose.NOTICES)
    except InvalidToken:
        raise InvalidToken(
            _(
                "This link is invalid or expired. The next change notice carries a new one; "
                "or ask the operator of this server to stop the notices."
            )
        ) from None


def opt_out(plain: str) -> str:
    """Stop the notices of the token's address (the pending ones too); the address."""
    token = optout_target(plain)
    with transaction.atomic():
        NoticeOptOut.objects.get_or_create(
            digest=NoticeOptOut.hash(token.address), defaults={"created": clock.now()}
        )
        NoticeChange.objects.filter(address=token.address).delete()
    return token.address


def opt_in(plain: str) -> str:
    """Turn the notices of the token's address on again; the address."""
    token = optout_target(plain)
    NoticeOptOut.objects.filter(digest=NoticeOptOut.hash(token.address)).delete()
    return token.address
