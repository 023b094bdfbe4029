"""Tokens: random, expiring, stored as sha256 only; verify tokens are single use."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.utils.translation import gettext as _

from .. import clock, replica
from ..errors import InvalidToken
from ..models import Binding, Key, VerificationToken

Purpose = VerificationToken.Purpose
_TTL = {
    Purpose.VERIFY: "VERIFY_TOKEN_TTL",
    Purpose.UPLOAD: "UPLOAD_TOKEN_TTL",
    Purpose.MANAGE: "MANAGE_TOKEN_TTL",
    Purpose.NOTICES: "NOTICE_OPTOUT_TOKEN_TTL",
    Purpose.WKS: "VERIFY_TOKEN_TTL",  # a WKS nonce lives as long as a confirmation link
}


def issue(
    purpose: str, key: Key, address: str = "", *, replace: bool = False, lifetime: timedelta | None = None
) -> str:
    """Create a token and return the plain value (never stored); it lives
    for its purpose's setting unless `lifetime` says otherwise."""
    plain = secrets.token_urlsafe(32)
    moment = clock.now()
    VerificationToken.objects.create(
        digest=VerificationToken.hash(plain),
        purpose=purpose,
        key=key,
        fingerprint=key.fingerprint,
        address=address,
        replace=replace,
        created=moment,
        expires=moment + (lifetime or getattr(settings, _TTL[Purpose(purpose)])),
    )
    return plain


def find(plain: str, purpose: str, *, for_update: bool = False) -> VerificationToken:
    """The live token for `plain`, or InvalidToken (unknown, used, expired)."""
    if not plain or len(plain) > 200:
        raise InvalidToken()
    # A link is followed seconds after its mail was sent: read where it was written.
    with replica.primary():
        token = VerificationToken.objects.live(VerificationToken.hash(plain), purpose, for_update=for_update)
        if token is None or token.key.fingerprint != token.fingerprint:
            raise InvalidToken(_already_confirmed(plain) if purpose == Purpose.VERIFY else None)
    return token


def _already_confirmed(plain: str) -> str | None:
    """For a confirmation link used before: say so when its address is
    published with its key (a second click, a mail scanner that came
    first), instead of asking for a new upload."""
    used = VerificationToken.objects.filter(
        digest=VerificationToken.hash(plain), purpose=Purpose.VERIFY, used_at__isnull=False
    ).first()
    if used is None:
        return None
    published = Binding.objects.filter(
        key_id=used.key_id, address=used.address, state=Binding.State.PUBLISHED
    ).exists()
    if not published:
        return None
    return _("This link was already used: %(address)s is published with this key. Nothing more to do.") % {
        "address": used.address
    }
