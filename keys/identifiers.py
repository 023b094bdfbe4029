"""Identifiers parsed once, at the edge: addresses, fingerprints, key ids.

Every search string a client sends is turned into a `Query` here; short key
ids, partial addresses and anything else are refused before any lookup.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

import idna
from django.utils.translation import gettext_lazy as _

from .errors import InvalidEmail, InvalidQuery

_HEX = re.compile(r"^[0-9A-F]+$")
# A deliberately plain address shape: one @, no spaces, controls or brackets.
_LOCAL = re.compile(r"^[^\s@<>()\[\],;:\"\\\x00-\x1f\x7f]+$")
ZBASE32_ALPHABET = _ZB32 = "ybndrfg8ejkmcpqxot1uwisza345h769"


def _lower_ascii(text: str) -> str:
    """Lowercase A-Z only, as the WKD draft (section 3.1) maps the local part."""
    return text.translate({c: c + 32 for c in range(ord("A"), ord("Z") + 1)})


# Plain ASCII host names, which IDNA only lowercases: letters, digits and
# inner hyphens, never two hyphens at the third and fourth place (IDNA
# reserves those, as in "xn--").
_PLAIN_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def _idna(domain: str) -> str:
    """The domain's ASCII form (IDNA, UTS-46), lowercase; InvalidEmail if it has none."""
    lowered = domain.lower()
    labels = lowered.split(".")
    if domain.isascii() and all(_PLAIN_LABEL.match(label) and label[2:4] != "--" for label in labels):
        return lowered  # what idna.encode gives for such a name, without its cost
    try:
        return idna.encode(domain, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        raise InvalidEmail() from None


def normalize_email(raw: str) -> str:
    """Return the normalised address or raise InvalidEmail.

    The local part is lowercased in ASCII only (so the WKD hash and our lookup
    agree); the domain is mapped with IDNA (UTS-46) to its ASCII form.
    """
    text = (raw or "").strip()
    if len(text) > 254 or text.count("@") != 1:
        raise InvalidEmail()
    local, domain = text.split("@")
    if not local or len(local.encode()) > 64 or not _LOCAL.match(local):
        raise InvalidEmail()
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise InvalidEmail()
    ascii_domain = _idna(domain)
    if "." not in ascii_domain.strip(".") or ascii_domain.endswith("."):
        raise InvalidEmail()
    return f"{_lower_ascii(local)}@{ascii_domain}"


def parse_address(raw: str) -> str:
    """An address a client sent in a query (a search, a form field), normalised.

    A space never belongs in an address, but clients turn a `+` into one:
    form encoding reads `+` as a space, and GnuPG's dirmngr sends the `+` of
    `name+tag@domain` as `%20` when it locates a key. So a space inside the
    address is read as the `+` it was.
    """
    return normalize_email((raw or "").strip().replace(" ", "+"))


def zbase32(data: bytes) -> str:
    bits = "".join(f"{b:08b}" for b in data)
    bits += "0" * (-len(bits) % 5)
    return "".join(_ZB32[int(bits[i : i + 5], 2)] for i in range(0, len(bits), 5))


def wkd_hash(address: str) -> str:
    """The WKD hashed local part of a normalised address (WKD draft, 3.1)."""
    local = address.rsplit("@", 1)[0]
    return zbase32(hashlib.sha1(_lower_ascii(local).encode("utf-8")).digest())


def domain_of(address: str) -> str:
    return address.rsplit("@", 1)[1]


@dataclass(frozen=True)
class Query:
    """One exact lookup: an address, a fingerprint or a long key id."""

    kind: Literal["email", "fingerprint", "keyid"]
    value: str

    def __str__(self) -> str:
        return self.value


def parse_hex_id(raw: str) -> Query:
    """A 16-hex key id or a 40/64-hex fingerprint, with or without 0x."""
    text = raw.strip().replace(" ", "").upper()
    if text.startswith("0X"):
        text = text[2:]
    if not _HEX.match(text):
        raise InvalidQuery()
    if len(text) == 16:
        return Query("keyid", text)
    if len(text) in (40, 64):
        return Query("fingerprint", text)
    if len(text) == 8:
        raise InvalidQuery(_("Short key IDs are not supported: search by fingerprint."))
    raise InvalidQuery()


def parse_fingerprint(raw: str) -> str:
    query = parse_hex_id(raw)
    if query.kind != "fingerprint":
        raise InvalidQuery(_("This is not a valid fingerprint."))
    return query.value


def parse_keyid(raw: str) -> str:
    query = parse_hex_id(raw)
    if query.kind != "keyid":
        raise InvalidQuery(_("This is not a valid long key ID."))
    return query.value


def parse_search(raw: str) -> Query:
    """Parse an HKP or web search string.

    Accepted: `addr`, `<addr>`, `Name <addr>` (the address is taken out and
    matched exactly), and 16-, 40- or 64-hex ids with or without 0x.
    """
    text = unquote(raw or "").strip()
    if not text:
        raise InvalidQuery()
    if "@" in text:
        match = re.search(r"<([^<>]*)>\s*$", text)
        candidate = match.group(1) if match else text
        try:
            return Query("email", parse_address(candidate))
        except InvalidEmail:
            raise InvalidQuery() from None
    return parse_hex_id(text)


def group_fingerprint(fpr: str) -> str:
    """FE9E E066 ... in groups of four, as people compare them."""
    return " ".join(fpr[i : i + 4] for i in range(0, len(fpr), 4))


def keyserver_uri(site_url: str) -> str:
    """The server as GnuPG and sq name it: hkp://HOST:PORT for plain HTTP (hkp://
    alone means port 11371; http:// makes gpg fetch the page at /), hkps://HOST for HTTPS."""
    parts = urlsplit(site_url)
    if parts.scheme == "https":
        return f"hkps://{parts.netloc}"
    host = parts.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    return f"hkp://{host}:{parts.port or 80}"
