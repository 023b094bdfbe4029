"""The Attester API as FlowCrypt's clients call it.

Bodies may be text/plain or carry no content type at all: the raw body is
read (keys.views.rest.RawParser); the JSON endpoints read the body as JSON
under any content type. Errors are `{"error": {"code", "message"}}` (keys.views.http); the
`api-version` header is accepted and ignored.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from federation import oidc, serve

from ..errors import InvalidEmail, InvalidKey, KeyserverError, NoKeyUploaded, NotFound, NotPublished
from ..identifiers import Query, normalize_email, parse_hex_id
from ..services import answers, submission
from ..services.welcome import welcome
from . import schemas
from .http import answer, client_ip
from .rest import PlainTextRenderer, ProtocolView, RawParser, json_body, raw_body

TEXT = "text/plain; charset=utf-8"
MAX_LOOKUPS = 50


def _proof(request: Request) -> oidc.TokenProof | None:
    return oidc.proof_from_header(request.META.get("HTTP_AUTHORIZATION", ""), client=client_ip(request))


def _pubkey(data: dict[str, Any]) -> bytes:
    pubkey = data.get("pubkey")
    if not isinstance(pubkey, str) or not pubkey.strip():
        raise NoKeyUploaded(_("pubkey is missing."))
    return pubkey.strip().encode("utf-8", errors="replace")


def _email(data: dict[str, Any]) -> str:
    email = data.get("email")
    if not isinstance(email, str):
        raise KeyserverError(_("email is missing."))
    return normalize_email(email)


def _submitted(request: Request, body: submission.AddressedBody) -> tuple[str, submission.Outcome]:
    return submission.submit_for_address(
        body, client=client_ip(request), proof=_proof(request), locale=get_language() or ""
    )


def _raw_body(request: Request, query: str) -> tuple[str, bytes]:
    address = normalize_email(query)
    body = raw_body(request)
    if not body.strip():
        raise NoKeyUploaded()
    return address, body


def _lookup(text: str, *, client: str) -> list[answers.Served]:
    """GET /pub/<email | long key id | fingerprint>: armored keys, best first."""
    if "@" in text:
        served = serve.for_email(normalize_email(text), client=client, per_address=True)
    else:
        query: Query = parse_hex_id(text)
        found = serve.for_id(query, client=client)
        served = serve.with_user_ids(found)
        if found and not served:
            raise NotPublished()
    if not served:
        raise NotFound()
    return served


PUB_QUERY = schemas.path_parameter("query", "An address, a long key ID or a fingerprint.", "^[^/]+$")
TAGS = ["Attester"]
HEADERS = [schemas.BEARER, schemas.API_VERSION]


class Pub(ProtocolView):
    """GET and POST /pub/<query>."""

    parser_classes = [RawParser]
    renderer_classes = [PlainTextRenderer]

    @extend_schema(
        operation_id="attester_pub_lookup",
        summary="Keys by address, long key ID or fingerprint",
        description="The armored keys published for the address, each reduced to that address, newest "
        "valid first, several blocks concatenated. By key ID or fingerprint: the key with its published "
        "user IDs (a key without a confirmed address is a 404 that says so; a revoked key is served "
        "without user IDs).",
        tags=["Attester"],
        parameters=[PUB_QUERY, schemas.API_VERSION],
        responses={
            **schemas.armored(schemas.TEXT, "Armored key blocks."),
            **schemas.attester_errors(400, 404, 429, 503),
        },
    )
    def get(self, request: Request, query: str) -> HttpResponse:
        served = _lookup(query, client=client_ip(request))
        text = answers.attester_text(served)
        return answer(request, text, TEXT, answers.modified(served), answers.level_header(served))

    @extend_schema(
        operation_id="attester_pub_submit",
        summary="Submit the key of an address",
        description="The armored public key as the raw body (text/plain, or no content type). With a "
        "valid bearer token for the address the key is published at once and replaces the address's other "
        "keys (answer `Saved`); without one a confirmation mail goes out and the answer says so.",
        tags=["Attester"],
        parameters=[PUB_QUERY, schemas.BEARER, schemas.API_VERSION],
        request={schemas.TEXT: {"type": "string"}, "application/pgp-keys": {"type": "string"}},
        examples=[OpenApiExample("armored", value=schemas.ARMORED, request_only=True)],
        responses={
            (200, schemas.TEXT): OpenApiResponse(
                OpenApiTypes.STR, description="`Saved`, or a notice that a confirmation mail was sent."
            ),
            **schemas.attester_errors(400, 401, 403, 413, 429, 503),
        },
    )
    def post(self, request: Request, query: str) -> HttpResponse:
        address, outcome = _submitted(request, lambda: _raw_body(request, query))
        if outcome == submission.Outcome.PUBLISHED:
            return HttpResponse(_("Saved"), content_type=TEXT)
        message = _(
            "A confirmation mail was sent to %(address)s. The key will be published when the link in it "
            "is opened and confirmed."
        ) % {"address": address}
        return HttpResponse(message, content_type=TEXT)


def _welcome_schema(operation_id: str, summary: str) -> Any:
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        description="Sends the address a welcome mail encrypted to the key, only for a valid bearer token "
        "or a key already published for the address; `sent` says whether it did. A key that cannot "
        "encrypt is a 400.",
        request={schemas.JSON: schemas.AttesterKeySubmission},
        responses={(200, schemas.JSON): schemas.WelcomeAnswer, **schemas.attester_errors(400, 401, 429, 503)},
        tags=TAGS,
        parameters=HEADERS,
    )


def _welcome(request: Request) -> Response:
    data = json_body(request)
    sent = welcome(
        _email(data),
        _pubkey(data),
        proof=_proof(request),
        client=client_ip(request),
        locale=get_language() or "",
    )
    return Response({"sent": sent})


class WelcomeMessage(ProtocolView):
    @_welcome_schema("attester_welcome_message", "Send a welcome mail")
    def post(self, request: Request) -> Response:
        return _welcome(request)


class TestWelcome(ProtocolView):
    @_welcome_schema("attester_test_welcome", "Send a welcome mail (legacy name of welcome-message)")
    def post(self, request: Request) -> Response:
        return _welcome(request)


class LegacySubmit(ProtocolView):
    @extend_schema(
        operation_id="attester_legacy_submit",
        summary="Submit a key (legacy)",
        description='As `POST /pub/<email>` with a JSON body; answers `{"saved": true}`.',
        request={schemas.JSON: schemas.LegacySubmission},
        responses={
            (200, schemas.JSON): schemas.SavedAnswer,
            **schemas.attester_errors(400, 401, 403, 413, 429, 503),
        },
        tags=TAGS,
        parameters=HEADERS,
    )
    def post(self, request: Request) -> Response:
        """Legacy `POST /initial/legacy_submit` {email, pubkey} → {"saved": bool}."""

        def body() -> tuple[str, bytes]:
            data = json_body(request)
            return _email(data), _pubkey(data)

        _submitted(request, body)
        return Response({"saved": True})


def _lookup_one(raw: str) -> dict[str, str | None]:
    try:
        address = normalize_email(raw)
    except InvalidEmail:
        return {"email": raw, "pubkey": None, "longid": None, "validation": None}
    best = serve.first_published(address)
    if best is None:
        return {"email": address, "pubkey": None, "longid": None, "validation": None}
    return {
        "email": address,
        "pubkey": best.armored,
        "longid": best.key.key_id,
        "validation": serve.levels_of(best.levels),
    }


class LookupEmail(ProtocolView):
    @extend_schema(
        operation_id="attester_lookup_email",
        summary="Look up addresses (legacy)",
        description=f"The best published key of each address (at most {MAX_LOOKUPS}); `email` may also be "
        "one string.",
        request={schemas.JSON: schemas.EmailLookup},
        responses={(200, schemas.JSON): schemas.EmailLookupAnswer, **schemas.attester_errors(400, 429, 503)},
        tags=TAGS,
        parameters=[schemas.API_VERSION],
    )
    def post(self, request: Request) -> Response:
        """Legacy `POST /lookup/email` {"email": [...]} → {"results": [...]}."""
        return Response({"results": _lookup_emails(json_body(request))})


def _lookup_emails(data: dict[str, Any]) -> list[dict[str, str | None]]:
    emails = data.get("email")
    if isinstance(emails, str):
        emails = [emails]
    if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
        raise KeyserverError(_("email must be a list of addresses."))
    if len(emails) > MAX_LOOKUPS:
        raise InvalidKey(_("At most %(n)d addresses per request.") % {"n": MAX_LOOKUPS})
    return [_lookup_one(e) for e in emails]
