"""The Attester flows (as FlowCrypt's clients call them), on top of keys.services."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from . import oidc, openpgp, ratelimit, services
from .errors import InvalidKey, NotFound, RateLimited
from .identifiers import Query, parse_hex_id
from .models import Binding, Key


def _cert_for(address: str, data: bytes) -> openpgp.CertInfo:
    """The newest certificate in `data` with a valid user ID for `address`."""
    upload = openpgp.parse(data)
    matching = [c for c in upload.certs if address in c.emails]
    if not matching:
        raise InvalidKey(_("This key has no valid user ID for %(address)s.") % {"address": address})
    return max(matching, key=lambda c: c.created)


def submit(address: str, data: bytes, *, token: str | None, client: str, locale: str = "") -> str:
    """POST /pub/<email>: set or replace the address's key (publication rule 4).

    The caller checked the client's upload limit first.

    1. A bearer token is verified before anything is stored.
    2. The key must carry a valid user ID for the address (400 otherwise).
    3. It is stored through the one import service.
    4. With a token it is published at once (`oidc_verified`) and replaces the
       address's other keys; without, a confirmation mail is sent and the
       replacement happens when it is confirmed.
    """
    if token:
        oidc.verify(token, address)
    cert = _cert_for(address, data)
    result = services.import_keys(cert.data, actor=f"attester {client}")
    key = result.keys[0].key
    if token:
        services.publish(
            key, address, Binding.Validation.OIDC_VERIFIED, actor=f"attester {client}", replace=True
        )
        return _("Saved")
    state = services.request_verification(key, [address], client=client, locale=locale, replace=True)
    if state.get(address) == "published":
        # Confirmed before: this POST only replaces the address's other keys.
        with transaction.atomic():
            services.replace_others(address, keep=key, actor=f"attester {client}")
        return _("Saved")
    if address not in state:
        raise InvalidKey(_("%(address)s cannot be published with this key.") % {"address": address})
    return _(
        "A confirmation mail was sent to %(address)s. The key will be published when the link in it "
        "is opened and confirmed."
    ) % {"address": address}


def lookup(text: str, *, client: str) -> list[str]:
    """GET /pub/<email | long key id | fingerprint>: armored keys, best first."""
    from federation import serve

    from .identifiers import normalize_email

    if "@" in text:
        return [s.armored for s in serve.for_email(normalize_email(text), client=client, per_address=True)]
    query: Query = parse_hex_id(text)
    return [s.armored for s in serve.for_id(query, client=client) if s.user_ids or s.key.revoked]


def lookup_or_404(text: str, *, client: str) -> str:
    blocks = lookup(text, client=client)
    if not blocks:
        raise NotFound()
    return "".join(block if block.endswith("\n") else block + "\n" for block in blocks)


def welcome(address: str, data: bytes, *, token: str | None, client: str, locale: str = "") -> bool:
    """POST /welcome-message: mail an encrypted welcome, but never as an open relay.

    Sent only for a valid token for the address, or a key already published
    for it. A key that cannot encrypt is a 400.
    """
    cert = _cert_for(address, data)
    if not openpgp.can_encrypt(cert):
        raise InvalidKey(
            _("This key has no valid encryption subkey, so no encrypted mail can be sent to it.")
        )
    if token:
        oidc.verify(token, address)
    elif not Binding.objects.filter(
        key__fingerprint=cert.fingerprint, address=address, state=Binding.State.PUBLISHED, key__blocked=False
    ).exists():
        return False
    if not ratelimit.allow(f"welcome-ip:{client}", settings.RATE_WELCOME_PER_CLIENT):
        raise RateLimited()
    if not ratelimit.allow(f"welcome-addr:{address}", settings.RATE_WELCOME_PER_ADDRESS):
        return False
    from .tasks import send_welcome_mail

    armored = openpgp.armor(openpgp.publishable(cert, [address]))
    transaction.on_commit(lambda: send_welcome_mail.delay(address, armored, locale))
    return True


def lookup_many(addresses: list[str]) -> list[dict[str, str | None]]:
    """Legacy POST /lookup/email: one result per address, null when none."""
    from .identifiers import normalize_email

    results: list[dict[str, str | None]] = []
    for raw in addresses:
        try:
            address = normalize_email(raw)
        except Exception:
            results.append({"email": raw, "pubkey": None, "longid": None})
            continue
        bindings = services.published_bindings(address)
        if bindings:
            key: Key = bindings[0].key
            results.append(
                {
                    "email": address,
                    "pubkey": openpgp.armor(bytes(bindings[0].certificate)),
                    "longid": key.key_id,
                }
            )
        else:
            results.append({"email": address, "pubkey": None, "longid": None})
    return results
