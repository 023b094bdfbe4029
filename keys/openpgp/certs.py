"""Verified certificates as plain values, and the forms derived from them.

`describe` reads the packets of one certificate that Sequoia verified (or
that we stored, which is the same thing) and decides: which user IDs are
valid under our policy (SHA-1 and weaker self-signatures do not count, as
under Sequoia's standard policy), expiry, revocation, subkeys; it keeps the
newest few signatures per component and assembles the stored form from them.
`publishable` cuts that form down to the user IDs of chosen addresses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.utils.translation import gettext as _

from ..errors import InvalidEmail
from ..identifiers import normalize_email
from .packets import (
    CERT_REVOCATION,
    CERTIFICATIONS,
    DIRECT_KEY,
    KEY_REVOCATION,
    PUBSUB,
    SIG,
    SUBKEY_BINDING,
    SUBKEY_REVOCATION,
    UID,
    WEAK_HASHES,
    Packet,
    Signature,
    issued_by,
    key_algorithm,
    key_fingerprint,
    parse_signature,
)

EPOCH = datetime.fromtimestamp(0, UTC)


@dataclass
class UserIdInfo:
    value: str
    email: str | None  # normalised, when the user ID carries a valid address
    valid: bool
    revoked: bool
    reason: str  # why it is not valid; empty when valid
    stored: bool = True  # False: refused outright (control characters), not kept


@dataclass
class SubkeyInfo:
    fingerprint: str
    key_id: str
    algorithm: str
    bits: int | None
    created: datetime
    expires: datetime | None
    revoked: bool
    flags: int | None


@dataclass
class Component:
    """A primary key, user ID or subkey packet with the signatures kept for it."""

    packet: Packet
    signatures: list[Packet]

    @property
    def raw(self) -> bytes:
        return self.packet.raw + b"".join(s.raw for s in self.signatures)


@dataclass
class CertInfo:
    """A verified, cleaned certificate and what we read from it."""

    fingerprint: str
    version: int
    key_id: str
    algorithm: str
    algorithm_id: int
    bits: int | None
    created: datetime
    expires: datetime | None
    revoked: bool
    user_ids: list[UserIdInfo]
    subkeys: list[SubkeyInfo]
    components: list[Component] = field(repr=False)

    @property
    def data(self) -> bytes:
        """The stored form: only verified packets, no third-party signatures."""
        return b"".join(c.raw for c in self.components)

    @property
    def emails(self) -> list[str]:
        """Addresses of valid, unrevoked user IDs, in order, once each."""
        seen: list[str] = []
        for uid in self.user_ids:
            if uid.valid and uid.email and uid.email not in seen:
                seen.append(uid.email)
        return seen

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires is not None and self.expires <= (now or datetime.now(UTC))


def uid_text(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")


# C0 and C1 control characters and DEL. NUL cannot be stored as text by
# PostgreSQL at all; the others break line-based formats (HKP's machine
# readable index, mail headers) and terminals. No real user ID needs them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def has_control_characters(value: str) -> bool:
    return _CONTROL.search(value) is not None


def printable_uid(value: str) -> str:
    """The user ID with each control character shown as U+FFFD."""
    return _CONTROL.sub("\ufffd", value)


def uid_address(value: str) -> str | None:
    """The normalised address a user ID carries, or None.

    `Name <addr>` or a bare `addr`, as GnuPG and Sequoia read them.
    """
    match = re.search(r"<([^<>]+)>\s*$", value)
    candidate = match.group(1) if match else value.strip()
    if "\ufffd" in candidate or "@" not in candidate or " " in candidate:
        return None
    try:
        return normalize_email(candidate)
    except InvalidEmail:
        return None


# -- describe ------------------------------------------------------------------

Signed = tuple[Packet, Signature]


def _newest(sigs: list[Signed], keep: int) -> list[Signed]:
    return sorted(sigs, key=lambda s: s[1].created or EPOCH, reverse=True)[:keep]


def _split(sigs: list[Signed], kinds: set[int], revocation: int) -> tuple[list[Signed], list[Signed]]:
    """(signatures of `kinds` that are not revocations, the revocations)."""
    wanted = [s for s in sigs if s[1].type in kinds | {revocation}]
    return [s for s in wanted if s[1].type != revocation], [s for s in wanted if s[1].type == revocation]


def _packets(sigs: list[Signed]) -> list[Packet]:
    return [p for p, _s in sigs]


def _group(packets: list[Packet], fpr: str, keyid: str) -> list[tuple[Packet, list[Signed]]]:
    """The primary key, then each user ID and subkey, each with the
    self-signatures that follow it."""
    groups: list[tuple[Packet, list[Signed]]] = [(packets[0], [])]
    for pkt in packets[1:]:
        if pkt.tag == SIG:
            sig = parse_signature(pkt.body)
            if issued_by(sig, fpr, keyid):
                groups[-1][1].append((pkt, sig))
        elif pkt.tag in (UID, PUBSUB):
            groups.append((pkt, []))
    return groups


@dataclass
class _Reader:
    """What describing one certificate collects, component by component."""

    created: datetime
    keep: int
    user_ids: list[UserIdInfo] = field(default_factory=list)
    subkeys: list[SubkeyInfo] = field(default_factory=list)
    # The signatures that speak for the primary key's expiry.
    binding_sigs: list[Signature] = field(default_factory=list)

    def primary(self, pkt: Packet, sigs: list[Signed]) -> tuple[Component, bool]:
        others, revocations = _split(sigs, {DIRECT_KEY}, KEY_REVOCATION)
        direct = _newest(others, self.keep)
        self.binding_sigs += [s for _p, s in direct]
        return Component(pkt, _packets(_newest(revocations, self.keep) + direct)), bool(revocations)

    def user_id(self, pkt: Packet, sigs: list[Signed]) -> Component | None:
        certs, revs = _split(sigs, CERTIFICATIONS, CERT_REVOCATION)
        if not certs:
            return None  # no verified self-signature: not stored
        strong = [s for s in certs if s[1].hash_algo not in WEAK_HASHES]
        newest = _newest(strong or certs, 1)[0][1]
        revoked = any((r[1].created or self.created) >= (newest.created or self.created) for r in revs)
        value = uid_text(pkt.body)
        if has_control_characters(value):
            reason = _(
                "This user ID contains control characters (such as a NUL byte) and is not kept. "
                "Add it again without them."
            )
            self.user_ids.append(UserIdInfo(printable_uid(value), None, False, revoked, reason, stored=False))
            return None
        email = uid_address(value)
        reason = self._reason(newest, weak=not strong, revoked=revoked, email=email)
        if strong and not revoked:
            self.binding_sigs.append(newest)
        self.user_ids.append(UserIdInfo(value, email, not reason, revoked, reason))
        return Component(pkt, _packets(_newest(revs, self.keep) + _newest(certs, self.keep)))

    @staticmethod
    def _reason(newest: Signature, *, weak: bool, revoked: bool, email: str | None) -> str:
        """Why a user ID cannot be published; empty when it can."""
        if weak:
            return _(
                "Its self-signature uses %(hash)s, which is no longer accepted. "
                "Re-sign it with a current GnuPG (for example: gpg --quick-set-expire "
                "FINGERPRINT 2y) and upload again."
            ) % {"hash": WEAK_HASHES[newest.hash_algo]}
        if revoked:
            return _("This user ID has been revoked.")
        if email is None:
            return _(
                "This user ID has no email address, so it is never served: only confirmed addresses are."
            )
        return ""

    def subkey(self, pkt: Packet, sigs: list[Signed]) -> Component | None:
        bind, revs = _split(sigs, {SUBKEY_BINDING}, SUBKEY_REVOCATION)
        if not bind:
            return None  # no verified binding: not stored
        _version, fpr, keyid = key_fingerprint(pkt.body)
        algo, bits, created = key_algorithm(pkt.body)
        newest = _newest(bind, 1)[0][1]
        expires = created + timedelta(seconds=newest.key_expiry) if newest.key_expiry else None
        self.subkeys.append(
            SubkeyInfo(fpr, keyid, algo, bits, created, expires, bool(revs), newest.key_flags)
        )
        return Component(pkt, _packets(_newest(revs, self.keep) + _newest(bind, self.keep)))

    def expiry(self) -> datetime | None:
        """The newest valid self-signature on the primary key (a direct-key
        signature or a valid user ID's binding) says it (RFC 9580, 5.2.3.13)."""
        if not self.binding_sigs:
            return None
        binding = max(self.binding_sigs, key=lambda s: (s.created or EPOCH, s.primary_uid))
        return self.created + timedelta(seconds=binding.key_expiry) if binding.key_expiry else None


def describe(packets: list[Packet], *, keep: int) -> CertInfo:
    """Read the verified packets of one certificate and assemble its stored form."""
    primary = packets[0]
    version, fpr, keyid = key_fingerprint(primary.body)
    algo, bits, created = key_algorithm(primary.body)
    groups = _group(packets, fpr, keyid)
    reader = _Reader(created, keep)
    first, revoked = reader.primary(*groups[0])
    components = [first]
    for pkt, sigs in groups[1:]:
        component = reader.user_id(pkt, sigs) if pkt.tag == UID else reader.subkey(pkt, sigs)
        if component is not None:
            components.append(component)
    return CertInfo(
        fingerprint=fpr,
        version=version,
        key_id=keyid,
        algorithm=algo,
        algorithm_id=primary.body[5],
        bits=bits,
        created=created,
        expires=reader.expiry(),
        revoked=revoked,
        user_ids=reader.user_ids,
        subkeys=reader.subkeys,
        components=components,
    )


# -- derived forms -----------------------------------------------------------------


def publishable(info: CertInfo, emails: Iterable[str]) -> bytes:
    """The key reduced to the user IDs that carry one of `emails`.

    Rule 5 of DESIGN.md: a revoked key keeps its revocation and subkeys but
    no user IDs. Name-only user IDs are never published.
    """
    wanted = set(emails)
    valid = {u.value for u in info.user_ids if u.valid}
    out: list[bytes] = []
    for component in info.components:
        if component.packet.tag == UID:
            value = uid_text(component.packet.body)
            if info.revoked or value not in valid or uid_address(value) not in wanted:
                continue
        out.append(component.raw)
    return b"".join(out)


def can_encrypt(info: CertInfo, now: datetime | None = None) -> bool:
    """Whether the key has a live subkey usable for encryption."""
    moment = now or datetime.now(UTC)
    return any(
        s.flags is not None and s.flags & 0x0C and not s.revoked and (s.expires is None or s.expires > moment)
        for s in info.subkeys
    )


def encryption_expires(info: CertInfo) -> datetime | None:
    """When the key's last unrevoked encryption subkey expires: past that,
    nobody can encrypt to it (even while the primary key is valid). None
    when one never expires, or when the key has no encryption subkey."""
    ends = [s.expires for s in info.subkeys if s.flags is not None and s.flags & 0x0C and not s.revoked]
    if not ends or any(end is None for end in ends):
        return None
    return max(end for end in ends if end is not None)
