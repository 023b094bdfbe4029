"""Web Key Directory lookups (draft-koch-openpgp-webkey-service, section 3.1).

The per-address certificates are precomputed on write (Binding.certificate)
and the hash is indexed, so a WKD hit is one query and no OpenPGP parsing.
Only published bindings are served: never pending, cached (fallback
answers from public keyservers) or removed ones.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import Case, IntegerField, Q, Value, When

from . import clock
from .identifiers import ZBASE32_ALPHABET
from .models import Binding

_ALPHABET = frozenset(ZBASE32_ALPHABET)


def is_served(domain: str) -> bool:
    return domain.lower() in settings.WKD_DOMAINS


def valid_hash(value: str) -> bool:
    return len(value) == 32 and set(value) <= _ALPHABET


def certificates(domain: str, wkd_hash: str) -> bytes:
    """All published keys of the address, binary, concatenated: valid ones
    first, newest created first (section 3.1 allows several)."""
    now = clock.now()
    rows = (
        Binding.objects.filter(
            domain=domain.lower(), wkd_hash=wkd_hash, state=Binding.State.PUBLISHED, key__blocked=False
        )
        .annotate(
            invalid=Case(
                When(Q(key__revoked=True) | Q(key__expires__lte=now), then=Value(1)),
                default=Value(0),
                output_field=IntegerField(),
            )
        )
        .order_by("invalid", "-key__created", "key__fingerprint")
        .values_list("certificate", flat=True)
    )
    return b"".join(bytes(c) for c in rows)
