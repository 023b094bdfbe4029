"""OpenPGP packets: armor, framing and the fields we read ourselves (RFC 9580).

Nothing here verifies anything. The framer reads packet headers only, so an
upload is split, capped and prefiltered before Sequoia spends any work on it;
the field readers take what the keyserver decides on from key and signature
packets (fingerprints, creation times, issuers, expiry, flags).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

import pysequoia
from django.utils.translation import gettext as _

from ..errors import InvalidKey, SecretKeyRefused

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
SENTINEL = bytes([0xC0 | 63, 16]) + b"ks-sentinel-pkt!"

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


def _v3_signature(body: bytes) -> Signature:
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


def _issuer_subpacket(sig: Signature, kind: int, value: bytes) -> None:
    """Issuer key id (16) and issuer fingerprint (33): trusted in either area,
    the signature is checked against the key they name."""
    if kind == 16 and len(value) == 8:
        sig.issuer_keyid = sig.issuer_keyid or value.hex().upper()
    elif kind == 33 and len(value) in (21, 33):
        sig.issuer_fpr = sig.issuer_fpr or value[1:].hex().upper()


def _hashed_subpacket(sig: Signature, kind: int, value: bytes) -> None:
    """Creation time (2), key expiry (9), key flags (27), primary user ID (25):
    only from the hashed area, which the signature covers."""
    if kind == 2 and len(value) == 4:
        sig.created = datetime.fromtimestamp(int.from_bytes(value, "big"), UTC)
    elif kind == 9 and len(value) == 4:
        sig.key_expiry = int.from_bytes(value, "big")
    elif kind == 27 and value:
        sig.key_flags = value[0]
    elif kind == 25 and value:
        sig.primary_uid = value[0] != 0


def parse_signature(body: bytes) -> Signature:
    """The fields of a signature packet we decide on (RFC 9580, 5.2)."""
    if len(body) < 6:
        raise InvalidKey(_("A signature in the key is malformed."))
    version = body[0]
    if version == 3:
        return _v3_signature(body)
    if version not in (4, 6):
        raise InvalidKey(_("A signature in the key has an unsupported version."))
    size = 2 if version == 4 else 4
    pos = 4
    hashed_len = int.from_bytes(body[pos : pos + size], "big")
    hashed = body[pos + size : pos + size + hashed_len]
    pos += size + hashed_len
    unhashed_len = int.from_bytes(body[pos : pos + size], "big")
    unhashed = body[pos + size : pos + size + unhashed_len]
    sig = Signature(version, body[1], body[3], None, None, None, None, None, False)
    for kind, value in _subpackets(hashed):
        _issuer_subpacket(sig, kind, value)
        _hashed_subpacket(sig, kind, value)
    for kind, value in _subpackets(unhashed):
        _issuer_subpacket(sig, kind, value)
    return sig


def issued_by(sig: Signature, fpr: str, keyid: str) -> bool:
    if sig.issuer_fpr:
        return sig.issuer_fpr == fpr
    return sig.issuer_keyid == keyid


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
