"""What the protocol front-ends share: client addresses, query strings and
JSON bodies, key answers, address status words, CORS, and the rendering of
the one error family in each protocol's own format (the middleware).

Views raise KeyserverError; nothing catches bare exceptions. The request
body cap of Django (RequestDataTooBig) becomes a 413 here too.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from federation.serve import Served, armored

from ..errors import KeyserverError, KeyTooLarge, NotFound
from ..models import Binding, Key

PGP_KEYS = "application/pgp-keys"


def key_response(served: list[Served], filename: str | None = None) -> HttpResponse:
    """Armored keys, all in one block (keys.openpgp.org's shape)."""
    if not served:
        raise NotFound()
    response = HttpResponse(armored(served), content_type=f"{PGP_KEYS}; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    if filename:
        response["Content-Disposition"] = f'attachment; filename="{filename}.asc"'
    return response


def raw_query(request: HttpRequest) -> dict[str, str]:
    """The query string's parameters with `+` kept as a `+`.

    Django reads a query string as a form, where `+` means a space. HKP
    clients do not form-encode: GnuPG's dirmngr sends
    `search=name+tag@domain` with the `+` as it is, so an address with a
    `+` would become one with a space. Percent escapes (`%2B`, `%20`) are
    decoded as usual; the last of repeated parameters wins, as with
    `request.GET`.
    """
    # PEP 3333: the WSGI server hands over the raw bytes as latin-1.
    raw = request.META.get("QUERY_STRING", "").encode("iso-8859-1", errors="replace")
    params: dict[str, str] = {}
    for part in raw.split(b"&"):
        if not part:
            continue
        name, _sep, value = part.partition(b"=")
        params[unquote_to_bytes(name).decode("utf-8", errors="replace")] = unquote_to_bytes(value).decode(
            "utf-8", errors="replace"
        )
    return params


def json_object(request: HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 with a message."""
    try:
        data = json.loads(request.body or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise KeyserverError(_("The request body is not valid JSON.")) from None
    if not isinstance(data, dict):
        raise KeyserverError(_("The request body must be a JSON object."))
    return data


# -- address status, as VKS words (and HKP add, the upload pages) --------------

State = Binding.State
STATUS_WORDS = {
    State.PUBLISHED: "published",
    State.PENDING: "pending",
    State.REVOKED: "revoked",
    State.UNPUBLISHED: "unpublished",
    State.CACHED: "unpublished",
}


def address_status(key: Key) -> dict[str, str]:
    """The VKS status of each address of a key; a revoked key has none
    (keys.openpgp.org answers `status: {}`). Removed addresses are left out."""
    if key.revoked:
        return {}
    return {
        b.address: "pending" if b.awaiting_confirmation else STATUS_WORDS[State(b.state)]
        for b in Binding.objects.of_key(key)
        if b.state in STATUS_WORDS
    }


# -- the client ------------------------------------------------------------------


def client_ip(request: HttpRequest) -> str:
    """The client's address; X-Forwarded-For is believed only from trusted proxies."""
    remote = request.META.get("REMOTE_ADDR", "") or "unknown"
    trusted = settings.TRUSTED_PROXIES
    if not trusted or not _in(remote, trusted):
        return remote
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, trusted):
            return hop
    return remote


def _in(address: str, networks: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


# -- errors and CORS ----------------------------------------------------------------

# Paths that any web page may call (keys are public): CORS "*".
CORS_PREFIXES = (
    "/pks/",
    "/vks/",
    "/.well-known/openpgpkey/",
    "/pub/",
    "/welcome-message",
    "/test/welcome",
    "/initial/",
    "/lookup/",
    "/api/",
    "/ldap-relay",
)


ATTESTER_PREFIXES = ("/pub", "/welcome-message", "/initial/", "/test/", "/lookup/", "/api/", "/ldap-relay")


def protocol_of(path: str) -> str:
    if path.startswith("/pks/"):
        return "hkp"
    if path.startswith("/vks/"):
        return "vks"
    if path.startswith(ATTESTER_PREFIXES):
        return "attester"
    if path.startswith("/.well-known/"):
        return "hkp"
    return "html"


def error_response(request: HttpRequest, error: KeyserverError) -> HttpResponse:
    kind = protocol_of(request.path)
    if kind == "vks":
        return JsonResponse({"error": error.message}, status=error.status)
    if kind == "attester":
        return JsonResponse({"error": {"code": error.status, "message": error.message}}, status=error.status)
    if kind == "hkp":
        return HttpResponse(
            error.message + "\n", status=error.status, content_type="text/plain; charset=utf-8"
        )
    return render(
        request, "error.html", {"message": error.message, "status": error.status}, status=error.status
    )


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


class KeyserverErrorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "OPTIONS" and request.path.startswith(CORS_PREFIXES):
            response = HttpResponse(status=204)
        elif _declared_length(request) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 64 * 1024:
            # Refuse an oversized body (a file upload included) before reading it.
            response = error_response(request, KeyTooLarge())
        else:
            response = self.get_response(request)
        if request.path.startswith(CORS_PREFIXES):
            response["Access-Control-Allow-Origin"] = "*"
            if request.method == "OPTIONS":
                response["Access-Control-Allow-Methods"] = "GET, HEAD, POST, OPTIONS"
                response["Access-Control-Allow-Headers"] = "Authorization, api-version, Content-Type"
                response["Access-Control-Max-Age"] = "86400"
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, RequestDataTooBig):
            return error_response(request, KeyTooLarge())
        if isinstance(exception, KeyserverError):
            return error_response(request, exception)
        return None
