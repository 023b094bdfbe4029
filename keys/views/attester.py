"""The Attester API as FlowCrypt's clients call it.

Bodies may be text/plain or carry no content type at all: the raw body is
read. Errors are `{"error": {"code", "message"}}` (keys.views.http); the
`api-version` header is accepted and ignored.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from federation import oidc, serve

from ..errors import InvalidEmail, InvalidKey, KeyserverError, NoKeyUploaded, NotFound
from ..identifiers import Query, normalize_email, parse_hex_id
from ..services import answers, submission
from ..services.welcome import welcome
from .http import answer, client_ip, json_object

TEXT = "text/plain; charset=utf-8"
MAX_LOOKUPS = 50


def _proof(request: HttpRequest) -> oidc.TokenProof | None:
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


def _submitted(request: HttpRequest, body: submission.AddressedBody) -> tuple[str, submission.Outcome]:
    return submission.submit_for_address(
        body, client=client_ip(request), proof=_proof(request), locale=get_language() or ""
    )


def _raw_body(request: HttpRequest, query: str) -> tuple[str, bytes]:
    address = normalize_email(query)
    if not request.body.strip():
        raise NoKeyUploaded()
    return address, request.body


def _lookup(text: str, *, client: str) -> list[answers.Served]:
    """GET /pub/<email | long key id | fingerprint>: armored keys, best first."""
    if "@" in text:
        served = serve.for_email(normalize_email(text), client=client, per_address=True)
    else:
        query: Query = parse_hex_id(text)
        served = serve.with_user_ids(serve.for_id(query, client=client))
    if not served:
        raise NotFound()
    return served


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def pub(request: HttpRequest, query: str) -> HttpResponse:
    if request.method == "POST":
        address, outcome = _submitted(request, lambda: _raw_body(request, query))
        if outcome == submission.Outcome.PUBLISHED:
            return HttpResponse(_("Saved"), content_type=TEXT)
        message = _(
            "A confirmation mail was sent to %(address)s. The key will be published when the link in it "
            "is opened and confirmed."
        ) % {"address": address}
        return HttpResponse(message, content_type=TEXT)
    served = _lookup(query, client=client_ip(request))
    return answer(request, answers.attester_text(served), TEXT, answers.modified(served))


@csrf_exempt
@require_POST
def welcome_message(request: HttpRequest) -> HttpResponse:
    data = json_object(request)
    sent = welcome(
        _email(data),
        _pubkey(data),
        proof=_proof(request),
        client=client_ip(request),
        locale=get_language() or "",
    )
    return JsonResponse({"sent": sent})


@csrf_exempt
@require_POST
def legacy_submit(request: HttpRequest) -> HttpResponse:
    """Legacy `POST /initial/legacy_submit` {email, pubkey} → {"saved": bool}."""

    def body() -> tuple[str, bytes]:
        data = json_object(request)
        return _email(data), _pubkey(data)

    _submitted(request, body)
    return JsonResponse({"saved": True})


def _lookup_one(raw: str) -> dict[str, str | None]:
    try:
        address = normalize_email(raw)
    except InvalidEmail:
        return {"email": raw, "pubkey": None, "longid": None}
    best = serve.first_published(address)
    if best is None:
        return {"email": address, "pubkey": None, "longid": None}
    return {"email": address, "pubkey": best.armored, "longid": best.key.key_id}


@csrf_exempt
@require_POST
def lookup_email(request: HttpRequest) -> HttpResponse:
    """Legacy `POST /lookup/email` {"email": [...]} → {"results": [...]}."""
    data = json_object(request)
    emails = data.get("email")
    if isinstance(emails, str):
        emails = [emails]
    if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
        raise KeyserverError(_("email must be a list of addresses."))
    if len(emails) > MAX_LOOKUPS:
        raise InvalidKey(_("At most %(n)d addresses per request.") % {"n": MAX_LOOKUPS})
    return JsonResponse({"results": [_lookup_one(e) for e in emails]})
