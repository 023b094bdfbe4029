"""Untrusted bytes in, verified certificates out; merges of stored keys.

How an upload is read:

1. `scan`: dearmor (one or several armor blocks) or take binary; cap the size.
   Frame the packets with our own parser (RFC 9580, 4.2) before any deep
   parsing: refuse secret keys and compressed data, split into certificates,
   drop user attributes, trust, marker, padding and private packets, drop
   third-party signatures (we never keep them), and count user IDs, subkeys
   and signatures against the limits. This is cheap and bounds the work
   Sequoia does next (its `Cert.user_ids` is quadratic, its memory about 60x
   the input).
2. `clean`: let Sequoia canonicalise the rest. Sequoia moves signatures that
   fail verification to the end of its serialisation instead of dropping
   them, so a private-tag sentinel packet is appended and everything after it
   is cut off: what remains is exactly what Sequoia verified. A forged
   self-signature or revocation never reaches storage.
3. `certs.describe` reads the verified packets.

The limits are passed in (`Limits`); this package never reads settings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pysequoia
from django.utils.translation import gettext as _

from ..errors import InvalidKey, KeyTooLarge, NoKeyUploaded, SecretKeyRefused
from .certs import CertInfo, describe
from .packets import (
    COMPRESSED,
    DROPPED_TAGS,
    KEY_REVOCATION,
    MAX_RSA_BITS,
    PUBKEY,
    PUBSUB,
    SECKEY,
    SECSUB,
    SENTINEL,
    SIG,
    UATTR,
    UID,
    Packet,
    dearmor,
    is_armored,
    issued_by,
    iter_packets,
    key_algorithm,
    key_fingerprint,
    parse_signature,
)


@dataclass(frozen=True)
class Limits:
    """What one upload may hold (DESIGN.md, Limits and abuse)."""

    max_bytes: int = 1024 * 1024  # dearmored
    max_user_ids: int = 100
    max_subkeys: int = 100
    max_signatures: int = 1000  # self-signatures and revocations, before verification
    max_keys: int = 20  # certificates per upload
    keep_signatures: int = 8  # newest verified signatures kept per component


DEFAULT_LIMITS = Limits()


@dataclass
class Revocation:
    """A bare key revocation certificate (no key attached)."""

    issuer_keyid: str | None
    issuer_fpr: str | None
    data: bytes


@dataclass
class Candidate:
    """One certificate of an upload, framed and prefiltered but not verified yet."""

    fingerprint: str
    data: bytes


@dataclass
class Scan:
    """An upload framed and prefiltered: nothing in it verified yet."""

    candidates: list[Candidate]
    revocations: list[Revocation]
    rejected: list[str]  # one reason per certificate refused by the prefilter


@dataclass
class Upload:
    certs: list[CertInfo]
    revocations: list[Revocation]
    rejected: list[str]  # one reason per certificate that was refused


def _split_certs(packets: Iterable[Packet]) -> tuple[list[list[Packet]], list[Packet]]:
    """Group packets into certificates; packets before the first key are loose.

    A dropped user attribute takes its signatures with it: they certify the
    attribute, not the user ID before it.
    """
    certs: list[list[Packet]] = []
    loose: list[Packet] = []
    in_attribute = False
    for pkt in packets:
        if pkt.tag in (SECKEY, SECSUB):
            raise SecretKeyRefused()
        if pkt.tag == COMPRESSED:
            raise InvalidKey(_("Compressed packets are not accepted in keys."))
        if pkt.tag == UATTR:
            in_attribute = True
        if pkt.tag in (PUBKEY, UID, PUBSUB):
            in_attribute = False
        if pkt.tag in DROPPED_TAGS or (pkt.tag == SIG and in_attribute):
            continue
        if pkt.tag == PUBKEY:
            certs.append([pkt])
        elif pkt.tag in (SIG, UID, PUBSUB):
            (certs[-1] if certs else loose).append(pkt)
        else:
            raise InvalidKey(_("This data holds something other than public keys."))
    return certs, loose


def _check_rsa_size(primary: Packet) -> None:
    algo, bits, _created = key_algorithm(primary.body)
    if algo == "RSA" and bits and bits > MAX_RSA_BITS:
        raise InvalidKey(
            _(
                "RSA keys larger than %(bits)s bits are not supported by this server "
                "(this key has %(size)s bits)."
            )
            % {"bits": MAX_RSA_BITS, "size": bits}
        )


def _check_counts(uids: int, subkeys: int, sigs: int, limits: Limits) -> None:
    if uids > limits.max_user_ids:
        raise InvalidKey(
            _("This key has %(n)s user IDs; at most %(max)s are accepted.")
            % {"n": uids, "max": limits.max_user_ids}
        )
    if subkeys > limits.max_subkeys:
        raise InvalidKey(
            _("This key has %(n)s subkeys; at most %(max)s are accepted.")
            % {"n": subkeys, "max": limits.max_subkeys}
        )
    if sigs > limits.max_signatures:
        raise InvalidKey(
            _("This key has %(n)s self-signatures; at most %(max)s are accepted.")
            % {"n": sigs, "max": limits.max_signatures}
        )


def _prefilter(packets: list[Packet], limits: Limits) -> Candidate:
    """Drop third-party signatures and enforce the limits, before Sequoia."""
    _version, fpr, keyid = key_fingerprint(packets[0].body)
    _check_rsa_size(packets[0])
    counts = {SIG: 0, UID: 0, PUBSUB: 0}
    kept: list[bytes] = []
    for pkt in packets:
        if pkt.tag == SIG and not issued_by(parse_signature(pkt.body), fpr, keyid):
            continue  # third-party certification: never stored
        if pkt.tag in counts:
            counts[pkt.tag] += 1
        kept.append(pkt.raw)
    _check_counts(counts[UID], counts[PUBSUB], counts[SIG], limits)
    return Candidate(fpr, b"".join(kept))


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__


def _verified(data: bytes) -> list[Packet]:
    """The packets of one certificate that Sequoia verified, in its order."""
    try:
        cert = pysequoia.Cert.from_bytes(data + SENTINEL)
        out = bytes(cert)
    except Exception as exc:  # pysequoia raises plain errors with Rust messages
        raise InvalidKey(_("The key could not be read: %(error)s") % {"error": _short(exc)}) from None
    verified: list[Packet] = []
    for pkt in iter_packets(out):
        if pkt.tag == 63:
            break
        verified.append(pkt)
    return verified


def _clean(cert_bytes: bytes, limits: Limits) -> CertInfo:
    packets = _verified(cert_bytes)
    if not packets or packets[0].tag != PUBKEY:
        raise InvalidKey()
    return describe(packets, keep=limits.keep_signatures)


def _loose_revocations(loose: list[Packet]) -> list[Revocation]:
    revocations: list[Revocation] = []
    for pkt in loose:
        if pkt.tag != SIG:
            raise InvalidKey(_("A user ID or subkey was found without its key."))
        sig = parse_signature(pkt.body)
        if sig.type != KEY_REVOCATION:
            raise InvalidKey(_("A signature was found without its key."))
        revocations.append(Revocation(sig.issuer_keyid, sig.issuer_fpr, pkt.raw))
    return revocations


def key_revocations(candidate: Candidate) -> list[Revocation]:
    """The key revocation signatures of a candidate (those right after its
    primary key), as bare revocation certificates, not verified yet: what a
    key removed by policy still accepts of an upload."""
    revocations: list[Revocation] = []
    for pkt in list(iter_packets(candidate.data))[1:]:
        if pkt.tag != SIG:
            break
        sig = parse_signature(pkt.body)
        if sig.type == KEY_REVOCATION:
            revocations.append(Revocation(sig.issuer_keyid, sig.issuer_fpr, pkt.raw))
    return revocations


def scan(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Scan:
    """Frame an upload and prefilter each certificate, without Sequoia.

    Cheap: packet headers, the primary key's fingerprint and signature
    issuers only. Raises for input that is not usable at all (garbage,
    secret keys, too large, nothing in it); a bad certificate among several
    is reported in `rejected` instead. `clean` then verifies a candidate.
    """
    if not data or not data.strip():
        raise NoKeyUploaded()
    if len(data) > limits.max_bytes * 2:
        raise KeyTooLarge()
    binary = dearmor(data) if is_armored(data) else data
    if len(binary) > limits.max_bytes:
        raise KeyTooLarge(_("The key is larger than %(max)s KiB.") % {"max": limits.max_bytes // 1024})
    groups, loose = _split_certs(iter_packets(binary))
    revocations = _loose_revocations(loose)
    if not groups and not revocations:
        raise NoKeyUploaded()
    if len(groups) > limits.max_keys:
        raise KeyTooLarge(_("Too many keys in one upload."))
    candidates: list[Candidate] = []
    rejected: list[str] = []
    for group in groups:
        try:
            candidates.append(_prefilter(group, limits))
        except InvalidKey as exc:
            if len(groups) == 1:
                raise
            rejected.append(exc.message)
    return Scan(candidates, revocations, rejected)


def clean(candidate: Candidate, limits: Limits = DEFAULT_LIMITS) -> CertInfo:
    """Verify a candidate with Sequoia and keep only what verified."""
    return _clean(candidate.data, limits)


def parse(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Upload:
    """Read an upload: armored or binary, one or several certificates.

    Raises for input that is not usable at all (garbage, secret keys, too
    large, nothing in it); a single bad certificate among several is reported
    in `rejected` instead.
    """
    scanned = scan(data, limits)
    certs: list[CertInfo] = []
    rejected = list(scanned.rejected)
    for candidate in scanned.candidates:
        try:
            certs.append(clean(candidate, limits))
        except InvalidKey as exc:
            if len(scanned.candidates) + len(scanned.rejected) == 1:
                raise
            rejected.append(exc.message)
    return Upload(certs, scanned.revocations, rejected)


def load(data: bytes, limits: Limits = DEFAULT_LIMITS) -> CertInfo:
    """Read a certificate we stored ourselves, verifying it again."""
    return _clean(data, limits)


def load_stored(data: bytes, limits: Limits = DEFAULT_LIMITS) -> CertInfo:
    """Read a stored certificate without verifying it again.

    The stored form holds only packets Sequoia verified, in the order
    `describe` wrote them, so describing it again gives the same facts as
    `load` at a fraction of the cost.
    """
    packets = list(iter_packets(data))
    if not packets or packets[0].tag != PUBKEY:
        raise InvalidKey()
    return describe(packets, keep=limits.keep_signatures)


def contains(stored: bytes, candidate: Candidate) -> bool:
    """Whether every packet of `candidate` is already in the stored form.

    Then merging it would change nothing (a merge never loses anything), so
    an unchanged re-upload needs no verification and no write. Packets are
    compared by tag and body: old and new packet headers frame the same
    packet.
    """
    have = {(p.tag, p.body) for p in iter_packets(stored)}
    return all((p.tag, p.body) in have for p in iter_packets(candidate.data))


def merge(stored: bytes, new: bytes, limits: Limits = DEFAULT_LIMITS) -> CertInfo:
    """Merge a new copy of a key into the stored one; nothing is lost.

    Both sides are verified forms of the same primary key. Sequoia's merge
    unions the components; the result is cleaned again.
    """
    try:
        merged = pysequoia.Cert.from_bytes(stored).merge(pysequoia.Cert.from_bytes(new))
        data = bytes(merged)
    except Exception as exc:
        raise InvalidKey(_("The key could not be merged: %(error)s") % {"error": _short(exc)}) from None
    return _clean(data, limits)


def add_revocation(stored: bytes, revocation: Revocation, limits: Limits = DEFAULT_LIMITS) -> CertInfo:
    """Splice a bare revocation certificate into the stored key.

    Sequoia cannot read a lone signature as a certificate; appended to the
    key, canonicalisation verifies it (a forged one is cut off) and puts it
    in place.
    """
    return _clean(stored + revocation.data, limits)


def encrypt(info: CertInfo, message: bytes) -> str:
    """`message` encrypted to the key's encryption subkeys, armored."""
    try:
        return pysequoia.encrypt(message, [pysequoia.Cert.from_bytes(info.data)]).decode("ascii")
    except Exception as exc:
        raise InvalidKey(_("Cannot encrypt to this key: %(error)s") % {"error": _short(exc)}) from None
