"""The one OpenPGP seam: the only module that imports the OpenPGP library.

It turns untrusted bytes into plain Python values and builds the certificates
the keyserver stores and publishes. Sequoia (pysequoia) verifies; this module
decides what to keep.

How an upload is read (`parse`):

1. Dearmor (one or several armor blocks) or take binary; cap the size.
2. Frame the packets with a small parser of our own (RFC 9580, 4.2) before any
   deep parsing: refuse secret keys and compressed data, split into
   certificates, drop user attributes, trust, marker, padding and private
   packets, drop third-party signatures (we never keep them), and count user
   IDs, subkeys and signatures against the limits. This is cheap and bounds
   the work Sequoia does next (its `Cert.user_ids` is quadratic, its memory
   about 60x the input).
3. Let Sequoia canonicalise the rest. Sequoia moves signatures that fail
   verification to the end of its serialisation instead of dropping them, so
   a private-tag sentinel packet is appended and everything after it is cut
   off: what remains is exactly what Sequoia verified. A forged self-signature
   or revocation never reaches storage.
4. Read the verified packets: validity of each user ID under our policy
   (SHA-1 and weaker self-signatures do not count, as under Sequoia's standard
   policy), expiry, revocation, subkeys; keep the newest few signatures per
   component and assemble the stored certificate from them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

from django.conf import settings
from django.utils.translation import gettext as _

from .errors import InvalidKey, KeyTooLarge, NoKeyUploaded, SecretKeyRefused
from .identifiers import normalize_email

os.environ["RUST_BACKTRACE"] = "0"

import pysequoia

# Packet tags (RFC 9580, 5).
SIG, SECKEY, PUBKEY, SECSUB, COMPRESSED, MARKER = 2, 5, 6, 7, 8, 10
TRUST, UID, PUBSUB, UATTR, PADDING = 12, 13, 14, 17, 21
DROPPED_TAGS = {MARKER, TRUST, UATTR, PADDING, 60, 61, 62, 63}

# Signature types (RFC 9580, 5.2.1).
CERTIFICATIONS = {0x10, 0x11, 0x12, 0x13}
SUBKEY_BINDING, DIRECT_KEY = 0x18, 0x1F
KEY_REVOCATION, SUBKEY_REVOCATION, CERT_REVOCATION = 0x20, 0x28, 0x30

# Hash algorithms that no longer make a valid self-signature (MD5, SHA-1,
# RIPEMD-160), as Sequoia's standard policy has it.
WEAK_HASHES = {1: "MD5", 2: "SHA-1", 3: "RIPEMD-160"}

ALGORITHMS = {
    1: "RSA",
    2: "RSA",
    3: "RSA",
    16: "ElGamal",
    17: "DSA",
    18: "ECDH",
    19: "ECDSA",
    22: "EdDSA",
    25: "X25519",
    26: "X448",
    27: "Ed25519",
    28: "Ed448",
}
_CURVES = {
    "2b06010401da470f01": ("Ed25519", 255),
    "2b060104019755010501": ("Curve25519", 255),
    "2a8648ce3d030107": ("NIST P-256", 256),
    "2b81040022": ("NIST P-384", 384),
    "2b81040023": ("NIST P-521", 521),
    "2b2403030208010107": ("brainpoolP256r1", 256),
    "2b240303020801010b": ("brainpoolP384r1", 384),
    "2b240303020801010d": ("brainpoolP512r1", 512),
    "2b06010401da470f02": ("Ed448", 448),
    "2b656f": ("X448", 448),
}
MAX_RSA_BITS = 4096
# No packet of a key comes near this; refusing it early avoids reading (or
# allocating) a claimed multi-gigabyte body.
MAX_PACKET_BYTES = 16 * 1024 * 1024

# A new-format packet with private tag 63 and a 16-byte body, appended after
# the last component: everything Sequoia emits after it failed verification.
_SENTINEL = bytes([0xC0 | 63, 16]) + b"ks-sentinel-pkt!"

_ARMOR_BEGIN = re.compile(rb"^-----BEGIN PGP ([A-Z ,0-9/]+)-----\s*$")
_ARMOR_END = re.compile(rb"^-----END PGP ([A-Z ,0-9/]+)-----\s*$")
_ARMOR_HEADER = re.compile(rb"^[A-Za-z][A-Za-z0-9-]*: ")


@dataclass
class Packet:
    tag: int
    raw: bytes  # header and body, as framed
    body: bytes


@dataclass
class Signature:
    version: int
    type: int
    hash_algo: int
    created: datetime | None
    issuer_keyid: str | None
    issuer_fpr: str | None
    key_expiry: int | None  # seconds after key creation; 0 or None: never
    key_flags: int | None
    primary_uid: bool


@dataclass
class UserIdInfo:
    value: str
    email: str | None  # normalised, when the user ID carries a valid address
    valid: bool
    revoked: bool
    reason: str  # why it is not valid; empty when valid


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
    data: bytes  # the stored form: only verified packets, no third-party sigs
    _components: list[tuple[Packet, list[Packet]]] = field(repr=False, default_factory=list)

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


@dataclass
class Revocation:
    """A bare key revocation certificate (no key attached)."""

    issuer_keyid: str | None
    issuer_fpr: str | None
    data: bytes


@dataclass
class Upload:
    certs: list[CertInfo]
    revocations: list[Revocation]
    rejected: list[str]  # one reason per certificate that was refused


# ---------------------------------------------------------------------------
# Armor


def is_armored(data: bytes) -> bool:
    return b"-----BEGIN PGP" in data[:4096]


def dearmor(data: bytes) -> bytes:
    """Decode every armor block in `data` and concatenate their contents.

    Lenient as RFC 9580 (6.1) asks: the CRC line is ignored; armor headers
    are skipped. Secret-key blocks are refused here already.
    """
    out = bytearray()
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    i = 0
    found = False
    while i < len(lines):
        begin = _ARMOR_BEGIN.match(lines[i].strip())
        i += 1
        if not begin:
            continue
        found = True
        kind = begin.group(1)
        if b"PRIVATE" in kind or b"SECRET" in kind:
            raise SecretKeyRefused()
        while i < len(lines) and _ARMOR_HEADER.match(lines[i].strip()):
            i += 1
        body: list[bytes] = []
        ended = False
        while i < len(lines):
            line = lines[i].strip()
            i += 1
            if _ARMOR_END.match(line):
                ended = True
                break
            if line.startswith(b"=") and len(line) == 5:
                continue  # CRC24, ignored
            body.append(line)
        if not ended:
            raise InvalidKey(_("The armored key is cut off: its END line is missing."))
        try:
            out += base64.b64decode(b"".join(body), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidKey(_("The armored key is damaged (invalid base64).")) from None
    if not found:
        raise InvalidKey()
    return bytes(out)


def armor(data: bytes) -> str:
    return pysequoia.armor(data, pysequoia.ArmorKind.PublicKey)


# ---------------------------------------------------------------------------
# Packet framing (RFC 9580, 4.2)


def _read_packets(stream: BinaryIO) -> Iterator[tuple[int, bytes, int]]:
    """(tag, raw packet, header length) for each packet of a stream.

    Only the header is interpreted; partial and indeterminate lengths are
    refused (they have no place in a transferable public key).
    """
    while header := stream.read(1):
        ctb = header[0]
        if not ctb & 0x80:
            raise InvalidKey(_("This is not OpenPGP data."))
        head = bytearray(header)
        if ctb & 0x40:
            tag = ctb & 0x3F
            first = stream.read(1)
            head += first
            if not first:
                raise InvalidKey(_("The key data is truncated."))
            if first[0] < 192:
                length = first[0]
            elif first[0] < 224:
                second = stream.read(1)
                head += second
                if not second:
                    raise InvalidKey(_("The key data is truncated."))
                length = ((first[0] - 192) << 8) + second[0] + 192
            elif first[0] == 255:
                four = stream.read(4)
                head += four
                if len(four) < 4:
                    raise InvalidKey(_("The key data is truncated."))
                length = int.from_bytes(four, "big")
            else:
                raise InvalidKey(_("Partial body lengths are not allowed in keys."))
        else:
            tag = (ctb >> 2) & 0x0F
            size = {0: 1, 1: 2, 2: 4}.get(ctb & 0x03)
            if size is None:
                raise InvalidKey(_("Packets of indeterminate length are not allowed in keys."))
            raw_length = stream.read(size)
            head += raw_length
            if len(raw_length) < size:
                raise InvalidKey(_("The key data is truncated."))
            length = int.from_bytes(raw_length, "big")
        if length > MAX_PACKET_BYTES:
            raise InvalidKey(_("A packet of %(n)s bytes is too large for a key.") % {"n": length})
        body = stream.read(length)
        if len(body) < length:
            raise InvalidKey(_("The key data is truncated."))
        yield tag, bytes(head) + body, len(head)


def iter_packets(data: bytes) -> Iterator[Packet]:
    for tag, raw, head_length in _read_packets(io.BytesIO(data)):
        yield Packet(tag, raw, raw[head_length:])


# ---------------------------------------------------------------------------
# Key and signature packet fields


def key_fingerprint(body: bytes) -> tuple[int, str, str]:
    """(version, fingerprint, key id) of a public key packet body."""
    if not body:
        raise InvalidKey()
    version = body[0]
    if version == 4:
        fpr = hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()
        return 4, fpr, fpr[-16:]
    if version == 6:
        fpr = hashlib.sha256(b"\x9b" + len(body).to_bytes(4, "big") + body).hexdigest().upper()
        return 6, fpr, fpr[:16]
    if version in (2, 3):
        raise InvalidKey(_("Version 3 keys are obsolete and not accepted."))
    raise InvalidKey(_("Key version %(version)s is not supported.") % {"version": version})


def key_algorithm(body: bytes) -> tuple[str, int | None, datetime]:
    """(algorithm name, size in bits, creation time) of a key packet body."""
    if len(body) < 6:
        raise InvalidKey(_("The key data is truncated."))
    created = datetime.fromtimestamp(int.from_bytes(body[1:5], "big"), UTC)
    algo = body[5]
    material = body[6:] if body[0] == 4 else body[10:]
    name = ALGORITHMS.get(algo, f"algorithm {algo}")
    bits: int | None = None
    if algo in (1, 2, 3, 16, 17) and len(material) >= 2:
        bits = int.from_bytes(material[:2], "big")
    elif algo in (18, 19, 22) and material:
        oid = material[1 : 1 + material[0]].hex()
        curve = _CURVES.get(oid)
        if curve:
            name = f"{name} {curve[0]}"
            bits = curve[1]
    elif algo in (25, 27):
        bits = 255
    elif algo in (26, 28):
        bits = 448
    return name, bits, created


def _subpackets(data: bytes) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while pos < len(data):
        first = data[pos]
        if first < 192:
            length, pos = first, pos + 1
        elif first < 255:
            if pos + 1 >= len(data):
                return
            length, pos = ((first - 192) << 8) + data[pos + 1] + 192, pos + 2
        else:
            length, pos = int.from_bytes(data[pos + 1 : pos + 5], "big"), pos + 5
        if length == 0 or pos + length > len(data):
            return
        yield data[pos] & 0x7F, data[pos + 1 : pos + length]
        pos += length


def parse_signature(body: bytes) -> Signature:
    """The fields of a signature packet we decide on (RFC 9580, 5.2)."""
    if len(body) < 6:
        raise InvalidKey(_("A signature in the key is malformed."))
    version = body[0]
    if version == 3:
        return Signature(
            3,
            body[2],
            body[16] if len(body) > 16 else 0,
            datetime.fromtimestamp(int.from_bytes(body[3:7], "big"), UTC),
            body[7:15].hex().upper(),
            None,
            None,
            None,
            False,
        )
    if version not in (4, 6):
        raise InvalidKey(_("A signature in the key has an unsupported version."))
    size = 2 if version == 4 else 4
    sig_type, hash_algo = body[1], body[3]
    pos = 4
    hashed_len = int.from_bytes(body[pos : pos + size], "big")
    hashed = body[pos + size : pos + size + hashed_len]
    pos += size + hashed_len
    unhashed_len = int.from_bytes(body[pos : pos + size], "big")
    unhashed = body[pos + size : pos + size + unhashed_len]
    sig = Signature(version, sig_type, hash_algo, None, None, None, None, None, False)
    for area, trusted in ((hashed, True), (unhashed, False)):
        for kind, value in _subpackets(area):
            if kind == 2 and trusted and len(value) == 4:
                sig.created = datetime.fromtimestamp(int.from_bytes(value, "big"), UTC)
            elif kind == 16 and len(value) == 8:
                sig.issuer_keyid = sig.issuer_keyid or value.hex().upper()
            elif kind == 33 and len(value) in (21, 33):
                sig.issuer_fpr = sig.issuer_fpr or value[1:].hex().upper()
            elif kind == 9 and trusted and len(value) == 4:
                sig.key_expiry = int.from_bytes(value, "big")
            elif kind == 27 and trusted and value:
                sig.key_flags = value[0]
            elif kind == 25 and trusted and value:
                sig.primary_uid = value[0] != 0
    return sig


def _issued_by(sig: Signature, fpr: str, keyid: str) -> bool:
    if sig.issuer_fpr:
        return sig.issuer_fpr == fpr
    return sig.issuer_keyid == keyid


# ---------------------------------------------------------------------------
# Reading an upload


def _limit(value: int, name: str) -> int:
    return int(getattr(settings, name, value))


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


@dataclass
class Candidate:
    """One certificate of an upload, framed and prefiltered but not verified yet."""

    fingerprint: str
    data: bytes


def _prefilter(packets: list[Packet]) -> bytes:
    """Drop third-party signatures and enforce the limits, before Sequoia."""
    _version, fpr, keyid = key_fingerprint(packets[0].body)
    algo, bits, _created = key_algorithm(packets[0].body)
    if algo == "RSA" and bits and bits > MAX_RSA_BITS:
        raise InvalidKey(
            _(
                "RSA keys larger than %(bits)s bits are not supported by this server "
                "(this key has %(size)s bits)."
            )
            % {"bits": MAX_RSA_BITS, "size": bits}
        )
    uids = subkeys = sigs = 0
    kept: list[bytes] = []
    for pkt in packets:
        if pkt.tag == SIG:
            if not _issued_by(parse_signature(pkt.body), fpr, keyid):
                continue  # third-party certification: never stored
            sigs += 1
        elif pkt.tag == UID:
            uids += 1
        elif pkt.tag == PUBSUB:
            subkeys += 1
        kept.append(pkt.raw)
    if uids > _limit(100, "MAX_USER_IDS"):
        raise InvalidKey(
            _("This key has %(n)s user IDs; at most %(max)s are accepted.")
            % {"n": uids, "max": _limit(100, "MAX_USER_IDS")}
        )
    if subkeys > _limit(100, "MAX_SUBKEYS"):
        raise InvalidKey(
            _("This key has %(n)s subkeys; at most %(max)s are accepted.")
            % {"n": subkeys, "max": _limit(100, "MAX_SUBKEYS")}
        )
    if sigs > _limit(1000, "MAX_SIGNATURES"):
        raise InvalidKey(
            _("This key has %(n)s self-signatures; at most %(max)s are accepted.")
            % {"n": sigs, "max": _limit(1000, "MAX_SIGNATURES")}
        )
    return b"".join(kept)


def _verified(data: bytes) -> list[Packet]:
    """The packets of one certificate that Sequoia verified, in its order."""
    try:
        cert = pysequoia.Cert.from_bytes(data + _SENTINEL)
        out = bytes(cert)
    except Exception as exc:  # pysequoia raises plain errors with Rust messages
        raise InvalidKey(_("The key could not be read: %(error)s") % {"error": _short(exc)}) from None
    verified: list[Packet] = []
    for pkt in iter_packets(out):
        if pkt.tag == 63:
            break
        verified.append(pkt)
    return verified


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__


def _newest(sigs: list[tuple[Packet, Signature]], keep: int) -> list[tuple[Packet, Signature]]:
    epoch = datetime.fromtimestamp(0, UTC)
    return sorted(sigs, key=lambda s: s[1].created or epoch, reverse=True)[:keep]


def _uid_text(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")


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
    except Exception:
        return None


def _describe(packets: list[Packet]) -> CertInfo:
    """Read the verified packets of one certificate and assemble its stored form."""
    keep = _limit(8, "KEEP_SIGNATURES_PER_COMPONENT")
    primary = packets[0]
    version, fpr, keyid = key_fingerprint(primary.body)
    algo, bits, created = key_algorithm(primary.body)

    # Components: the primary key, then each user ID and subkey, each with
    # the self-signatures that follow it.
    components: list[tuple[Packet, list[tuple[Packet, Signature]]]] = [(primary, [])]
    for pkt in packets[1:]:
        if pkt.tag == SIG:
            sig = parse_signature(pkt.body)
            if _issued_by(sig, fpr, keyid):
                components[-1][1].append((pkt, sig))
        elif pkt.tag in (UID, PUBSUB):
            components.append((pkt, []))

    def split(sigs: list[tuple[Packet, Signature]], revocation: int) -> tuple[list, list]:
        revs = [s for s in sigs if s[1].type == revocation]
        return [s for s in sigs if s[1].type != revocation], revs

    primary_sigs, key_revs = split(components[0][1], KEY_REVOCATION)
    direct = _newest([s for s in primary_sigs if s[1].type == DIRECT_KEY], keep)
    revoked = bool(key_revs)
    stored: list[bytes] = [primary.raw] + [p.raw for p, _s in _newest(key_revs, keep) + direct]
    kept_components: list[tuple[Packet, list[Packet]]] = [
        (primary, [p for p, _s in _newest(key_revs, keep) + direct])
    ]

    user_ids: list[UserIdInfo] = []
    subkeys: list[SubkeyInfo] = []
    binding_sigs: list[Signature] = [s for _p, s in direct]
    for pkt, sigs in components[1:]:
        if pkt.tag == UID:
            certs, revs = split(
                [s for s in sigs if s[1].type in CERTIFICATIONS | {CERT_REVOCATION}], CERT_REVOCATION
            )
            if not certs:
                continue  # no verified self-signature: not stored
            value = _uid_text(pkt.body)
            strong = [s for s in certs if s[1].hash_algo not in WEAK_HASHES]
            newest = _newest(strong or certs, 1)[0][1]
            is_revoked = any((r[1].created or created) >= (newest.created or created) for r in revs)
            reason = ""
            if not strong:
                reason = _(
                    "Its self-signature uses %(hash)s, which is no longer accepted. "
                    "Re-sign it with a current GnuPG (for example: gpg --quick-set-expire "
                    "FINGERPRINT 2y) and upload again."
                ) % {"hash": WEAK_HASHES[newest.hash_algo]}
            elif is_revoked:
                reason = _("This user ID has been revoked.")
            email = uid_address(value)
            if not reason and email is None:
                reason = _("This user ID has no email address.")
            valid = not reason
            if strong and not is_revoked:
                binding_sigs.append(newest)
            user_ids.append(UserIdInfo(value, email, valid, is_revoked, reason))
            chosen = _newest(revs, keep) + _newest(certs, keep)
        else:
            bind, revs = split(
                [s for s in sigs if s[1].type in (SUBKEY_BINDING, SUBKEY_REVOCATION)], SUBKEY_REVOCATION
            )
            if not bind:
                continue  # no verified binding: not stored
            _sub_version, sub_fpr, sub_keyid = key_fingerprint(pkt.body)
            sub_algo, sub_bits, sub_created = key_algorithm(pkt.body)
            newest = _newest(bind, 1)[0][1]
            expires = sub_created + timedelta(seconds=newest.key_expiry) if newest.key_expiry else None
            subkeys.append(
                SubkeyInfo(
                    sub_fpr, sub_keyid, sub_algo, sub_bits, sub_created, expires, bool(revs), newest.key_flags
                )
            )
            chosen = _newest(revs, keep) + _newest(bind, keep)
        stored.append(pkt.raw)
        stored.extend(p.raw for p, _s in chosen)
        kept_components.append((pkt, [p for p, _s in chosen]))

    # Expiry: the newest valid self-signature on the primary key (a direct-key
    # signature or a valid user ID's binding) says it (RFC 9580, 5.2.3.13).
    expires = None
    if binding_sigs:
        epoch = datetime.fromtimestamp(0, UTC)
        binding = max(binding_sigs, key=lambda s: (s.created or epoch, s.primary_uid))
        if binding.key_expiry:
            expires = created + timedelta(seconds=binding.key_expiry)
    info = CertInfo(
        fingerprint=fpr,
        version=version,
        key_id=keyid,
        algorithm=algo,
        algorithm_id=primary.body[5],
        bits=bits,
        created=created,
        expires=expires,
        revoked=revoked,
        user_ids=user_ids,
        subkeys=subkeys,
        data=b"".join(stored),
    )
    info._components = kept_components
    return info


def _clean(cert_bytes: bytes) -> CertInfo:
    packets = _verified(cert_bytes)
    if not packets or packets[0].tag != PUBKEY:
        raise InvalidKey()
    return _describe(packets)


@dataclass
class Scan:
    """An upload framed and prefiltered: nothing in it verified yet."""

    candidates: list[Candidate]
    revocations: list[Revocation]
    rejected: list[str]  # one reason per certificate refused by the prefilter


def scan(data: bytes) -> Scan:
    """Frame an upload and prefilter each certificate, without Sequoia.

    Cheap: packet headers, the primary key's fingerprint and signature
    issuers only. Raises for input that is not usable at all (garbage,
    secret keys, too large, nothing in it); a bad certificate among several
    is reported in `rejected` instead. `clean` then verifies a candidate.
    """
    if not data or not data.strip():
        raise NoKeyUploaded()
    max_bytes = _limit(1024 * 1024, "MAX_KEY_BYTES")
    if len(data) > max_bytes * 2:
        raise KeyTooLarge()
    binary = dearmor(data) if is_armored(data) else data
    if len(binary) > max_bytes:
        raise KeyTooLarge(_("The key is larger than %(max)s KiB.") % {"max": max_bytes // 1024})
    groups, loose = _split_certs(iter_packets(binary))
    revocations: list[Revocation] = []
    for pkt in loose:
        if pkt.tag != SIG:
            raise InvalidKey(_("A user ID or subkey was found without its key."))
        sig = parse_signature(pkt.body)
        if sig.type != KEY_REVOCATION:
            raise InvalidKey(_("A signature was found without its key."))
        revocations.append(Revocation(sig.issuer_keyid, sig.issuer_fpr, pkt.raw))
    if not groups and not revocations:
        raise NoKeyUploaded()
    if len(groups) > _limit(20, "MAX_KEYS_PER_UPLOAD"):
        raise KeyTooLarge(_("Too many keys in one upload."))
    candidates: list[Candidate] = []
    rejected: list[str] = []
    for group in groups:
        try:
            candidates.append(Candidate(key_fingerprint(group[0].body)[1], _prefilter(group)))
        except InvalidKey as exc:
            if len(groups) == 1:
                raise
            rejected.append(exc.message)
    return Scan(candidates, revocations, rejected)


def clean(candidate: Candidate) -> CertInfo:
    """Verify a candidate with Sequoia and keep only what verified."""
    return _clean(candidate.data)


def parse(data: bytes) -> Upload:
    """Read an upload: armored or binary, one or several certificates.

    Raises for input that is not usable at all (garbage, secret keys, too
    large, nothing in it); a single bad certificate among several is reported
    in `rejected` instead.
    """
    scanned = scan(data)
    certs: list[CertInfo] = []
    rejected = list(scanned.rejected)
    for candidate in scanned.candidates:
        try:
            certs.append(clean(candidate))
        except InvalidKey as exc:
            if len(scanned.candidates) + len(scanned.rejected) == 1:
                raise
            rejected.append(exc.message)
    return Upload(certs, scanned.revocations, rejected)


def load(data: bytes) -> CertInfo:
    """Read a certificate we stored ourselves (trusted, already cleaned)."""
    return _clean(data)


def load_stored(data: bytes) -> CertInfo:
    """Read a stored certificate without verifying it again.

    The stored form holds only packets Sequoia verified, in the order
    `_describe` wrote them, so describing it again gives the same facts as
    `load` at a fraction of the cost.
    """
    packets = list(iter_packets(data))
    if not packets or packets[0].tag != PUBKEY:
        raise InvalidKey()
    return _describe(packets)


def contains(stored: bytes, candidate: Candidate) -> bool:
    """Whether every packet of `candidate` is already in the stored form.

    Then merging it would change nothing (a merge never loses anything), so
    an unchanged re-upload needs no verification and no write. Packets are
    compared by tag and body: old and new packet headers frame the same
    packet.
    """
    have = {(p.tag, p.body) for p in iter_packets(stored)}
    return all((p.tag, p.body) in have for p in iter_packets(candidate.data))


def merge(stored: bytes, new: bytes) -> CertInfo:
    """Merge a new copy of a key into the stored one; nothing is lost.

    Both sides are verified forms of the same primary key. Sequoia's merge
    unions the components; the result is cleaned again.
    """
    try:
        merged = pysequoia.Cert.from_bytes(stored).merge(pysequoia.Cert.from_bytes(new))
        data = bytes(merged)
    except Exception as exc:
        raise InvalidKey(_("The key could not be merged: %(error)s") % {"error": _short(exc)}) from None
    return _clean(data)


def add_revocation(stored: bytes, revocation: Revocation) -> CertInfo:
    """Splice a bare revocation certificate into the stored key.

    Sequoia cannot read a lone signature as a certificate; appended to the
    key, canonicalisation verifies it (a forged one is cut off) and puts it
    in place.
    """
    return _clean(stored + revocation.data)


def publishable(info: CertInfo, emails: Iterable[str]) -> bytes:
    """The key reduced to the user IDs that carry one of `emails`.

    Rule 5 of DESIGN.md: a revoked key keeps its revocation and subkeys but
    no user IDs. Name-only user IDs are never published.
    """
    wanted = set(emails)
    out: list[bytes] = []
    for pkt, sigs in info._components:
        if pkt.tag == UID:
            address = uid_address(_uid_text(pkt.body))
            uid = next((u for u in info.user_ids if u.value == _uid_text(pkt.body)), None)
            if info.revoked or not uid or not uid.valid or address not in wanted:
                continue
        out.append(pkt.raw)
        out.extend(p.raw for p in sigs)
    return b"".join(out)


def encrypt(info: CertInfo, message: bytes) -> str:
    """`message` encrypted to the key's encryption subkeys, armored."""
    try:
        return pysequoia.encrypt(message, [pysequoia.Cert.from_bytes(info.data)]).decode("ascii")
    except Exception as exc:
        raise InvalidKey(_("Cannot encrypt to this key: %(error)s") % {"error": _short(exc)}) from None


def can_encrypt(info: CertInfo, now: datetime | None = None) -> bool:
    """Whether the key has a live subkey usable for encryption."""
    moment = now or datetime.now(UTC)
    return any(
        s.flags is not None and s.flags & 0x0C and not s.revoked and (s.expires is None or s.expires > moment)
        for s in info.subkeys
    )


def iter_certificates(stream: BinaryIO, *, start: int = 0) -> Iterator[tuple[int, int, bytes]]:
    """Split a keyring or an SKS/Hockeypuck dump into certificates, streaming.

    Yields (offset, end offset, raw bytes) per certificate. Only packet
    headers are read to find the boundaries (a certificate starts at each
    primary public or secret key packet), so multi-gigabyte dumps never sit
    in memory. Raises InvalidKey at a malformed packet header.
    """
    stream.seek(start)
    offset = current_start = start
    current = bytearray()
    for tag, raw, _head_length in _read_packets(stream):
        if tag in (PUBKEY, SECKEY) and current:
            yield current_start, offset, bytes(current)
            current = bytearray()
            current_start = offset
        current += raw
        offset += len(raw)
    if current:
        yield current_start, offset, bytes(current)
