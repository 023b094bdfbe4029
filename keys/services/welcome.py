"""The Attester's welcome message: an encrypted mail to a new key's address."""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext as _

from .. import openpgp, ratelimit
from ..errors import InvalidKey, RateLimited
from ..models import Binding, OutboxMail
from . import outbox
from .submission import AddressProof, Body, cert_for, read_body


def welcome(address: str, body: Body, *, proof: AddressProof | None, client: str, locale: str = "") -> bool:
    """Mail an encrypted welcome, but never as an open relay.

    Sent only with a proof for the address, or for a key already published
    for it. A key that cannot encrypt is a 400.
    """
    cert = cert_for(address, read_body(body))
    if not openpgp.can_encrypt(cert):
        raise InvalidKey(
            _("This key has no valid encryption subkey, so no encrypted mail can be sent to it.")
        )
    if proof is not None:
        proof.verify(address)
    elif not Binding.objects.is_published(cert.fingerprint, address):
        return False
    if not ratelimit.allow(f"welcome-ip:{client}", settings.RATE_WELCOME_PER_CLIENT):
        raise RateLimited()
    if outbox.sent_within(address, OutboxMail.Kind.WELCOME, settings.RATE_WELCOME_PER_ADDRESS):
        return False
    armored = openpgp.armor(openpgp.publishable(cert, [address]))
    outbox.enqueue(OutboxMail.Kind.WELCOME, address, armored=armored, locale=locale)
    return True
