"""OpenID Connect id_token verification for the Attester API.

FlowCrypt's clients send the sign-in id_token as `Authorization: Bearer`.
A token proves an address when: its issuer is configured, its signature
verifies with a key of the issuer's JWKS, it has not expired, its audience is allowed, and the
issuer's email claim equals the address (and `email_verified`, when present,
is true).

The JWKS is fetched through the outbound helper (total deadline, size cap,
SSRF guard) and cached per issuer. A token naming a key id the cached set
lacks (the issuer rotated) may fetch it again, but at most once a minute per
issuer, and a failed fetch is not repeated within that minute either: tokens
made up with random key ids cannot turn the server into a load generator
against the issuer. Verifications are also counted per client
(OIDC_RATE_PER_CLIENT).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings
from django.core.cache import cache
from django.utils.translation import gettext as _

from keys import ratelimit
from keys.errors import InvalidEmail, RateLimited, Unauthorized
from keys.identifiers import normalize_email
from keys.models import Binding

from . import http

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]
JWKS_MAX_BYTES = 256 * 1024
REFETCH_SECONDS = 60


@dataclass(frozen=True)
class Issuer:
    issuer: str
    jwks_url: str
    audiences: tuple[str, ...]
    email_claim: str = "email"


def issuers() -> dict[str, Issuer]:
    return {
        entry["issuer"]: Issuer(
            issuer=entry["issuer"],
            jwks_url=entry["jwks_url"],
            audiences=tuple(entry.get("audiences", [])),
            email_claim=entry.get("email_claim", "email"),
        )
        for entry in settings.OIDC_ISSUERS
    }


def bearer_token(authorization: str) -> str | None:
    scheme, _sep, value = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _fetch_jwks(issuer: Issuer) -> dict[str, Any]:
    """The issuer's JWKS, through the one outbound helper (total deadline,
    size cap, SSRF guard)."""
    try:
        response = http.get(
            issuer.jwks_url,
            timeout=settings.OIDC_JWKS_TIMEOUT,
            max_bytes=JWKS_MAX_BYTES,
            headers={"Accept": "application/json"},
        )
        if response.status != 200:
            raise ValueError(f"status {response.status}")
        data = json.loads(response.body)
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ValueError("no keys")
        return data
    except (http.OutboundError, ValueError) as exc:
        raise Unauthorized(
            _("The identity provider's keys could not be fetched: %(error)s") % {"error": str(exc)[:100]}
        ) from None


def _jwks(issuer: Issuer, *, refetch: bool) -> dict[str, Any] | None:
    """The cached set; a fresh one when there is none (or `refetch`) and the
    issuer was not asked within the last minute; None when it may not be asked."""
    cache_key = f"jwks:{issuer.issuer}"
    jwks = None if refetch else cache.get(cache_key)
    if jwks is not None:
        return jwks
    if not cache.add(f"jwks-fetched:{issuer.issuer}", 1, REFETCH_SECONDS):
        return None if refetch else cache.get(cache_key)
    jwks = _fetch_jwks(issuer)
    cache.set(cache_key, jwks, settings.OIDC_JWKS_CACHE_SECONDS)
    return jwks


def _find(jwks: dict[str, Any] | None, kid: str | None) -> Any:
    if jwks is None:
        return None
    try:
        keys = jwt.PyJWKSet.from_dict(jwks).keys
    except jwt.PyJWTError:
        return None
    return next((key.key for key in keys if kid is None or key.key_id == kid), None)


def _signing_key(issuer: Issuer, kid: str | None) -> Any:
    jwks = _jwks(issuer, refetch=False)
    if jwks is None:
        raise Unauthorized(
            _("The identity provider's keys could not be fetched: %(error)s")
            % {"error": _("the last attempt failed; try again in a minute")}
        )
    key = _find(jwks, kid) or _find(_jwks(issuer, refetch=True), kid)
    if key is None:
        raise Unauthorized(_("The token was signed with a key the identity provider does not publish."))
    return key


def verify(token: str, address: str, *, client: str = "") -> dict[str, Any]:
    """The token's claims, if it proves `address`; Unauthorized otherwise."""
    if client and not ratelimit.allow(f"oidc-ip:{client}", settings.OIDC_RATE_PER_CLIENT):
        raise RateLimited()
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise Unauthorized(_("The token is not a valid JWT.")) from None
    issuer = issuers().get(str(unverified.get("iss", "")))
    if issuer is None:
        raise Unauthorized(_("The token's issuer is not accepted here."))
    if header.get("alg") not in ALGORITHMS:
        raise Unauthorized(_("The token's signature algorithm is not accepted."))
    key = _signing_key(issuer, header.get("kid"))
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[header["alg"]],
            audience=list(issuer.audiences),
            issuer=issuer.issuer,
            options={"require": ["exp", "iss", "aud"]},
            leeway=30,
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized(_("The token has expired.")) from None
    except jwt.InvalidAudienceError:
        raise Unauthorized(_("The token was issued for another application.")) from None
    except jwt.PyJWTError:
        raise Unauthorized(_("The token's signature is not valid.")) from None
    email = claims.get(issuer.email_claim)
    if claims.get("email_verified") is False or not isinstance(email, str):
        raise Unauthorized(_("The token does not carry a verified email address."))
    try:
        matches = normalize_email(email) == address
    except InvalidEmail:
        matches = False
    if not matches:
        raise Unauthorized(_("The token was issued for another email address."))
    return claims


@dataclass(frozen=True)
class TokenProof:
    """An Attester bearer token as proof of an address (keys.services.submission)."""

    token: str
    client: str = ""
    validation: str = Binding.Validation.OIDC_VERIFIED

    def verify(self, address: str) -> None:
        verify(self.token, address, client=self.client)


def proof_from_header(authorization: str, *, client: str = "") -> TokenProof | None:
    token = bearer_token(authorization)
    return TokenProof(token, client) if token else None
