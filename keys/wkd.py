"""Web Key Directory lookups (draft-koch-openpgp-webkey-service, section 3.1).

The per-address certificates are precomputed on write (Binding.certificate)
and the hash is indexed (binding_wkd), so a WKD hit is one query and no
OpenPGP parsing. Only published bindings are served: never pending, cached
(fallback answers from public keyservers), unpublished, revoked or removed
ones, and never a key removed by policy.
"""

from __future__ import annotations

from typing import Any

import idna
from django.conf import settings
from django.db.models import QuerySet

from .identifiers import ZBASE32_ALPHABET
from .models import Binding
from .services import best_first

_ALPHABET = frozenset(ZBASE32_ALPHABET)
# SHA-1 is 160 bits: 32 z-base-32 characters of 5 bits each (section 3.1).
HASH_LENGTH = 32


def served_domain(raw: str) -> str | None:
    """The ASCII (IDNA) form of `raw` if it is one of WKD_DOMAINS, else None.

    Bindings store the IDNA ASCII domain. Clients differ in what they send
    for an internationalised domain: sq puts the Unicode name in the
    advanced path and the A-label in Host, gpg the Unicode name in both.
    A trailing dot (an absolute DNS name in Host) names the same domain.
    """
    text = raw.strip().rstrip(".").lower()
    if not text:
        return None
    try:
        domain = idna.encode(text, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        return None
    return domain if domain in settings.WKD_DOMAINS else None


def is_served(domain: str) -> bool:
    return served_domain(domain) is not None


def valid_hash(value: str) -> bool:
    """A well-formed hashed local part: exactly 32 z-base-32 characters.

    The alphabet is lowercase only; gpg and sq both send it that way.
    """
    return len(value) == HASH_LENGTH and set(value) <= _ALPHABET


def published(domain: str, wkd_hash: str) -> QuerySet[Any, bytes | memoryview]:
    """The certificates served for (domain, hash), in serving order.

    Section 3.1 lets the server return several keys "as concatenated key
    blocks" and allows revoked or expired ones, so we keep the product's
    order (publication rule 4): valid keys first, then newest created first.
    One query on binding_wkd (domain, wkd_hash, state), joined to Key for
    the order and the policy block.
    """
    rows = Binding.objects.filter(
        domain=domain, wkd_hash=wkd_hash, state=Binding.State.PUBLISHED, key__blocked=False
    )
    return best_first(rows, "key__").values_list("certificate", flat=True)


def certificates(domain: str, wkd_hash: str) -> bytes:
    """The binary answer: every published key of the address, concatenated."""
    return b"".join(bytes(c) for c in published(domain, wkd_hash))
