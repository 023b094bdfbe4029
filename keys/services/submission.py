"""An upload from a client, end to end: the one path behind HKP add, VKS
upload, the upload page and the Attester's POST /pub.

Each front-end parses its own request shape and renders the result in its
own format; what happens in between is here (STYLE.md, practice 1), in this
order:

1. The client's upload limit, before the body is read, parsed or queried
   (the body is passed as a function for that reason).
2. The one import service (limits, policy blocks, merge).
3. Confirmation mails, as the path asks: for every address neither
   published nor pending (HKP add, which has no second step), or for the
   one address of an Attester submission. VKS and the upload page let the
   person choose first (verification.request_verification).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from .. import metrics, openpgp, ratelimit
from ..errors import InvalidKey, KeyserverError, RateLimited
from ..models import Binding, Key
from . import imports, verification
from .limits import limits

Body = bytes | Callable[[], bytes]
# An Attester body: the address and the key, read once the limit allows.
AddressedBody = Callable[[], tuple[str, bytes]]
State = Binding.State


def check_rate(client: str) -> None:
    """The per-client upload limit, shared by every submission path."""
    if not ratelimit.allow(f"upload-ip:{client}", settings.RATE_UPLOAD_PER_CLIENT):
        raise RateLimited(
            _("Too many uploads from your address. Please try again later."),
            retry_after=ratelimit.seconds_left(settings.RATE_UPLOAD_PER_CLIENT),
        )


def read_body(body: Body) -> bytes:
    return body() if callable(body) else body


def submit(
    body: Body, *, client: str, actor: str, mail_unconfirmed: bool = False, locale: str = ""
) -> imports.ImportResult:
    """Store an upload; with `mail_unconfirmed`, ask every new address to confirm."""
    check_rate(client)
    return store(
        read_body(body), client=client, actor=actor, mail_unconfirmed=mail_unconfirmed, locale=locale
    )


def store(
    data: bytes, *, client: str, actor: str, mail_unconfirmed: bool = False, locale: str = ""
) -> imports.ImportResult:
    """Steps 2 and 3 of `submit`, for a caller that checked the limit and read
    the body itself (the upload page renders their errors differently)."""
    result = counted_import(data, actor=actor)
    if mail_unconfirmed:
        for item in result.keys:
            item.states = Binding.objects.states(item.key)
            addresses = unconfirmed(item.states)
            if addresses:
                item.mails = verification.request_verification(
                    item.key, addresses, client=client, locale=locale, partial=True
                )
                item.states = Binding.objects.states(item.key)
    return result


def counted_import(data: bytes, *, actor: str) -> imports.ImportResult:
    """The one import service, with its outcome counted (keys.metrics)."""
    try:
        result = imports.import_keys(data, actor=actor)
    except KeyserverError as exc:
        _refused(exc)
        raise
    for item in result.keys:
        metrics.UPLOADS.labels(
            "accepted" if item.created else "merged" if item.changed else "unchanged"
        ).inc()
    for _reason in result.rejected:
        metrics.UPLOADS.labels("refused").inc()
        metrics.REFUSED.labels("part of a keyring").inc()
    return result


def _refused(error: KeyserverError) -> None:
    metrics.UPLOADS.labels("refused").inc()
    metrics.REFUSED.labels(type(error).__name__).inc()


def unconfirmed(states: list[tuple[str, str, bool]]) -> list[str]:
    """Addresses neither published nor awaiting confirmation (publication rule 8)."""
    return [
        a
        for a, state, mailed in states
        if state == State.UNPUBLISHED or (state == State.CACHED and not mailed)
    ]


class AddressProof(Protocol):
    """Proof, checked elsewhere, that the client speaks for an address (an
    OIDC id_token on the Attester API): `verify` raises Unauthorized."""

    @property
    def validation(self) -> str:
        """The validation level the address gets (Binding.Validation)."""
        ...

    def verify(self, address: str) -> None: ...


class Outcome(enum.Enum):
    PUBLISHED = "published"  # now, or before: the address's other keys are replaced
    MAIL_SENT = "mail_sent"  # published once the owner confirms


def cert_for(address: str, data: bytes) -> openpgp.CertInfo:
    """The newest certificate in `data` with a valid user ID for `address`."""
    upload = openpgp.parse(data, limits())
    matching = [c for c in upload.certs if address in c.emails]
    if not matching:
        raise InvalidKey(_("This key has no valid user ID for %(address)s.") % {"address": address})
    return max(matching, key=lambda c: c.created)


def submit_for_address(
    body: AddressedBody, *, client: str, proof: AddressProof | None, locale: str = ""
) -> tuple[str, Outcome]:
    """Set or replace an address's key (Attester POST /pub, publication rule 4).

    1. The client's upload limit; then the proof, before anything is stored.
    2. The key must carry a valid user ID for the address (400 otherwise).
    3. It is stored through the one import service.
    4. With a proof it is published at once and replaces the address's other
       keys; without, a confirmation mail is sent and the replacement happens
       when it is confirmed (or now, if the address was confirmed before).

    Returns the (normalised) address and what happened.
    """
    check_rate(client)
    address, data = body()
    if proof is not None:
        proof.verify(address)
    try:
        cert = cert_for(address, data)
    except KeyserverError as exc:
        _refused(exc)
        raise
    actor = f"attester {client}"
    key = counted_import(cert.data, actor=actor).keys[0].key
    if proof is not None:
        verification.publish_proven(key, address, proof.validation, actor=actor, replace=True)
        return address, Outcome.PUBLISHED
    verification.request_verification(key, [address], client=client, locale=locale, replace=True)
    return address, _after_request(key, address, actor=actor)


def _after_request(key: Key, address: str, *, actor: str) -> Outcome:
    key.refresh_from_db(fields=["revoked", "blocked"])
    binding = key.bindings.filter(address=address).first()
    if key.revoked or binding is None or binding.state == State.REMOVED_BY_POLICY:
        raise InvalidKey(_("%(address)s cannot be published with this key.") % {"address": address})
    if binding.state == State.PUBLISHED:
        # Confirmed before: this POST only replaces the address's other keys.
        with transaction.atomic():
            verification.replace_others(address, keep=key, actor=actor)
        return Outcome.PUBLISHED
    return Outcome.MAIL_SENT
