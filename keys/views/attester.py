"""The Attester API as FlowCrypt's clients call it.

Bodies may be text/plain or carry no content type at all: the raw body is
read. Errors are `{"error": {"code", "message"}}` (keys.middleware); the
`api-version` header is accepted and ignored.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from .. import attester, oidc, services
from ..errors import InvalidKey, KeyserverError, NoKeyUploaded
from ..identifiers import normalize_email
from ..ratelimit import client_ip
from .common import json_object

TEXT = "text/plain; charset=utf-8"
MAX_LOOKUPS = 50


def _token(request: HttpRequest) -> str | None:
    return oidc.bearer_token(request.META.get("HTTP_AUTHORIZATION", ""))


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


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def pub(request: HttpRequest, query: str) -> HttpResponse:
    if request.method == "POST":
        services.check_upload_rate(client_ip(request))
        address = normalize_email(query)
        body = request.body
        if not body.strip():
            raise NoKeyUploaded()
        message = attester.submit(
            address, body, token=_token(request), client=client_ip(request), locale=get_language() or ""
        )
        return HttpResponse(message, content_type=TEXT)
    return HttpResponse(attester.lookup_or_404(query, client=client_ip(request)), content_type=TEXT)


@csrf_exempt
@require_POST
def welcome_message(request: HttpRequest) -> HttpResponse:
    data = json_object(request)
    sent = attester.welcome(
        _email(data),
        _pubkey(data),
        token=_token(request),
        client=client_ip(request),
        locale=get_language() or "",
    )
    return JsonResponse({"sent": sent})


@csrf_exempt
@require_POST
def legacy_submit(request: HttpRequest) -> HttpResponse:
    """Legacy `POST /initial/legacy_submit` {email, pubkey} → {"saved": bool}."""
    services.check_upload_rate(client_ip(request))
    data = json_object(request)
    attester.submit(
        _email(data),
        _pubkey(data),
        token=_token(request),
        client=client_ip(request),
        locale=get_language() or "",
    )
    return JsonResponse({"saved": True})


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
    return JsonResponse({"results": attester.lookup_many(emails)})
