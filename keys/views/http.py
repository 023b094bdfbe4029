"""What the protocol front-ends share: client addresses, query strings and
key answers, address status words, CORS, and the rendering of
the one error family in each protocol's own format (the middleware).

Views raise KeyserverError; nothing catches bare exceptions. The request
body cap of Django (RequestDataTooBig) becomes a 413 here too.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import Resolver404, resolve
from django.utils import translation
from django.utils.cache import get_conditional_response, patch_vary_headers
from django.utils.http import http_date
from django.utils.translation import gettext as _

from federation.serve import Served, armored, level_header, modified

from .. import degraded
from ..errors import Forbidden, KeyserverError, KeyTooLarge, NotFound, RateLimited, ServerError, Unavailable
from ..models import Binding, Key
from . import pages

PGP_KEYS = "application/pgp-keys"


def answer(
    request: HttpRequest,
    body: bytes | str,
    content_type: str,
    modified: datetime | None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    """A key answer: the same in every language, with the validators the
    front server derives from the published file (Last-Modified is the time
    the answer last changed; the ETag "<seconds hex>-<length hex>" is nginx's
    own form), so clients revalidate alike against either; a matching
    If-None-Match (or a later If-Modified-Since) is a 304."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    response = HttpResponse(data, content_type=content_type)
    for name, value in (headers or {}).items():
        response[name] = value
    response.language_free = True  # type: ignore[attr-defined]
    if modified is None:
        return response
    seconds = int(modified.timestamp())
    response["ETag"] = f'"{seconds:x}-{len(data):x}"'
    response["Last-Modified"] = http_date(seconds)
    conditional = get_conditional_response(
        request, etag=response["ETag"], last_modified=seconds, response=response
    )
    if conditional is None or conditional is response:
        return response
    conditional.language_free = True  # type: ignore[attr-defined]  # 304 Not Modified
    for name, value in (headers or {}).items():
        conditional[name] = value
    return conditional


def key_response(request: HttpRequest, served: list[Served], filename: str | None = None) -> HttpResponse:
    """Armored keys, all in one block (keys.openpgp.org's shape), with the
    Key-Validation header of what they carry."""
    if not served:
        raise NotFound()
    headers = {"Cache-Control": "no-cache", **level_header(served)}
    if filename:
        headers["Content-Disposition"] = f'attachment; filename="{filename}.asc"'
    return answer(request, armored(served), f"{PGP_KEYS}; charset=utf-8", modified(served), headers)


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


# -- address status, as VKS words (and HKP add, the upload pages) --------------

State = Binding.State
# States in which a mail out means "pending" (Binding.awaiting_confirmation).
AWAITING = (State.PENDING, State.CACHED)
STATUS_WORDS = {
    State.PUBLISHED: "published",
    State.PENDING: "pending",
    State.REVOKED: "revoked",
    State.UNPUBLISHED: "unpublished",
    State.CACHED: "unpublished",
}


def address_status(key: Key, states: list[tuple[str, str, bool]] | None = None) -> dict[str, str]:
    """The VKS status of each address of a key (`states`: Binding.objects.states,
    when read already); a revoked key has none (keys.openpgp.org answers
    `status: {}`). Removed addresses are left out."""
    if key.revoked:
        return {}
    return {
        address: "pending" if mailed and state in AWAITING else STATUS_WORDS[State(state)]
        for address, state, mailed in (Binding.objects.states(key) if states is None else states)
        if state in STATUS_WORDS
    }


# -- the client ------------------------------------------------------------------


def client_ip(request: HttpRequest) -> str:
    """The client's address; X-Forwarded-For is believed only from trusted proxies."""
    remote = request.META.get("REMOTE_ADDR", "") or "unknown"
    trusted = settings.TRUSTED_PROXIES
    if not trusted or not in_networks(remote, trusted):
        return remote
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not in_networks(hop, trusted):
            return hop
    return remote


def in_networks(address: str, networks: list[str]) -> bool:
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
    response = _error_body(request, error)
    if isinstance(error, Unavailable | RateLimited) and error.retry_after:
        response["Retry-After"] = str(error.retry_after)
    return response


def _error_body(request: HttpRequest, error: KeyserverError) -> HttpResponse:
    kind = protocol_of(request.path)
    if kind == "vks":
        return JsonResponse({"error": error.message}, status=error.status)
    if kind == "attester":
        return JsonResponse({"error": {"code": error.status, "message": error.message}}, status=error.status)
    if kind == "hkp":
        return HttpResponse(
            error.message + "\n", status=error.status, content_type="text/plain; charset=utf-8"
        )
    return pages.error_page(request, error)


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _form_fits(request: HttpRequest) -> bool:
    """Parse a POST form here, before the CSRF check reads it: a field over
    DATA_UPLOAD_MAX_MEMORY_SIZE raises there, outside any view, and Django
    would answer its bare 400 instead of the 413 every other path gives."""
    if request.method != "POST":
        return True
    try:
        request.POST  # noqa: B018 - parsed once, kept on the request
    except RequestDataTooBig:
        return False
    return True


class KeyserverErrorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "OPTIONS" and request.path.startswith(CORS_PREFIXES):
            response = HttpResponse(status=204)
        elif _declared_length(request) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 64 * 1024:
            # Refuse an oversized body (a file upload included) before reading it.
            response = error_response(request, KeyTooLarge())
        elif not _form_fits(request):
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
        if isinstance(exception, UNAVAILABLE):
            return unavailable(request, exception)
        return None


# A database that does not answer (down, restarting, unreachable): not a bug
# of the request, so a 503 the client may retry, not a 500.
UNAVAILABLE = (OperationalError, InterfaceError)


def unavailable(request: HttpRequest, error: Exception) -> HttpResponse:
    degraded.failed("the database", error, "requests that need it answer 503")
    return error_response(request, Unavailable())


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: an exception no view or middleware handled. A database
    outage is a 503 in the protocol's format; anything else a 500, in the
    protocol's format or, on a page, the site's own."""
    error = sys.exc_info()[1]
    if isinstance(error, UNAVAILABLE):
        return unavailable(request, error)
    if protocol_of(request.path) != "html":
        return error_response(request, ServerError())
    return pages.server_error_page(request)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler404: no such path (or Http404). A page of the site; on the
    protocol paths, their own format."""
    if protocol_of(request.path) != "html":
        return error_response(request, NotFound(_("Not found.")))
    return pages.not_found_page(request)


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler403: a refusal (PermissionDenied) outside the error family. A
    page of the site; on the protocol paths, their own format."""
    if protocol_of(request.path) != "html":
        return error_response(request, Forbidden(_("Forbidden.")))
    return pages.forbidden_page(request)


# The protocol front-ends that ProtocolMiddleware takes through the short way.
PROTOCOL_PREFIXES = ("/pks/", "/vks/v1/", "/pub/", "/.well-known/openpgpkey/")


class ProtocolMiddleware:
    """Protocol requests through only the middleware they need.

    HKP, VKS, WKD and the Attester's /pub use no session, user, message or
    static file, and their POST views are exempt from CSRF (clients, not
    browsers' forms, call them), so for them that middleware is skipped, and
    what the rest of the stack would do to such a request is done here, in
    its order: the Host check (CommonMiddleware), the language of messages
    (LocaleMiddleware: Vary and Content-Language, except on key answers,
    which are the same in every language), the body cap, the error family
    and CORS (KeyserverErrorMiddleware), X-Frame-Options and Content-Length.
    It sits right after SecurityMiddleware; an unsafe method on a view that
    is not CSRF-exempt, a CORS preflight and every other path pass on to the
    whole stack.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.csrf = CsrfViewMiddleware(get_response)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "OPTIONS" or not request.path.startswith(PROTOCOL_PREFIXES):
            return self._whole_stack(request)
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return self._whole_stack(request)
        request.resolver_match = match
        if request.method not in ("GET", "HEAD") and not getattr(match.func, "csrf_exempt", False):
            return self._whole_stack(request)
        try:
            request.get_host()
        except DisallowedHost:
            return self._whole_stack(request)  # which answers it, a 400
        translation.activate(translation.get_language_from_request(request))
        request.LANGUAGE_CODE = translation.get_language()
        response = self._view(request, match)
        if request.META.get("CSRF_COOKIE_NEEDS_UPDATE"):
            # A page (HKP's index for people) rendered a form: its CSRF cookie.
            response = self.csrf.process_response(request, response)  # type: ignore[assignment]
        response["Access-Control-Allow-Origin"] = "*"
        if not getattr(response, "language_free", False):
            patch_vary_headers(response, ("Accept-Language",))
            response.headers.setdefault("Content-Language", request.LANGUAGE_CODE)
        if "X-Frame-Options" not in response:
            response["X-Frame-Options"] = settings.X_FRAME_OPTIONS
        if not response.streaming and "Content-Length" not in response:
            response["Content-Length"] = str(len(response.content))
        return response

    def _whole_stack(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if getattr(response, "language_free", False):
            # LocaleMiddleware marks every answer; a key answer is the same in every language.
            del response["Content-Language"]
            vary = [v.strip() for v in response.get("Vary", "").split(",") if v.strip()]
            kept = [v for v in vary if v.lower() != "accept-language"]
            if kept:
                response["Vary"] = ", ".join(kept)
            else:
                del response["Vary"]
        return response

    @staticmethod
    def _view(request: HttpRequest, match: Any) -> HttpResponse:
        if _declared_length(request) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 64 * 1024:
            return error_response(request, KeyTooLarge())
        try:
            response: HttpResponse = match.func(request, *match.args, **match.kwargs)
            if callable(getattr(response, "render", None)):
                response.render()  # type: ignore[attr-defined]  # a DRF Response, as Django's handler does
        except RequestDataTooBig:
            return error_response(request, KeyTooLarge())
        except KeyserverError as error:
            return error_response(request, error)
        except UNAVAILABLE as error:
            return unavailable(request, error)
        return response
