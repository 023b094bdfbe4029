"""Django REST framework for the JSON protocols (VKS, Attester), in their own shapes.

The base view `ProtocolView` uses no authentication (so no CSRF check: these
APIs are called by clients, not by forms in a browser), ignores `Accept` (an
answer has one format), and adds no headers of its own. Bodies are read with
Django's size cap. `exception_handler` (REST_FRAMEWORK["EXCEPTION_HANDLER"])
renders the one error family, and DRF's own exceptions, in each protocol's
format (keys.views.http.error_response): `{"error": "…"}` on VKS,
`{"error": {"code", "message"}}` on the Attester.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, HttpResponseNotAllowed, QueryDict
from django.utils.translation import gettext as _
from rest_framework import exceptions
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from ..errors import KeyserverError, KeyTooLarge, RateLimited, UnsupportedMediaType
from .http import PGP_KEYS, UNAVAILABLE, error_response, protocol_of, unavailable

JSON = "application/json"


def _body(parser_context: dict[str, Any] | None) -> bytes:
    """The raw body through Django's `request.body`, which enforces
    DATA_UPLOAD_MAX_MEMORY_SIZE (RequestDataTooBig, a 413)."""
    request = (parser_context or {})["request"]
    return bytes(request.body)


def json_object(body: bytes) -> dict[str, Any]:
    """A JSON object, or a 400 with a message."""
    try:
        data = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise KeyserverError(_("The request body is not valid JSON.")) from None
    if not isinstance(data, dict):
        raise KeyserverError(_("The request body must be a JSON object."))
    return data


class JSONObjectParser(BaseParser):
    """application/json whose body is one JSON object."""

    media_type = JSON

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return json_object(_body(parser_context))


class AnyJSONParser(JSONObjectParser):
    """A JSON object under any content type (the Attester reads the body as
    JSON whatever the client declares)."""

    media_type = "*/*"


class RawParser(BaseParser):
    """The raw body as bytes, under any content type or none (text/plain from
    FlowCrypt's clients, or nothing at all)."""

    media_type = "*/*"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return _body(parser_context)


class PlainTextRenderer(BaseRenderer):
    media_type = "text/plain"
    format = "txt"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> Any:
        return data.encode("utf-8") if isinstance(data, str) else data


class PgpKeysRenderer(PlainTextRenderer):
    media_type = PGP_KEYS
    format = "asc"


class ProtocolJSONRenderer(JSONRenderer):
    """The bytes Django's JsonResponse writes: `", "` and `": "`, ASCII escapes."""

    compact = False
    ensure_ascii = True


class FirstRenderer(BaseContentNegotiation):
    """An answer has the one format its protocol gives it: `Accept` is not a
    reason for a 406 (clients send all kinds), as before these were DRF views."""

    def select_parser(self, request: Any, parsers: Any) -> Any:
        return DefaultContentNegotiation().select_parser(request, parsers)

    def select_renderer(self, request: Any, renderers: Any, format_suffix: Any = None) -> Any:
        return renderers[0], renderers[0].media_type


class ProtocolView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []  # the keyserver's own limits (keys.ratelimit) apply
    content_negotiation_class = FirstRenderer
    renderer_classes = [ProtocolJSONRenderer]
    parser_classes = [AnyJSONParser]

    @property
    def default_response_headers(self) -> dict[str, str]:
        return {}  # no Allow or Vary: the answers keep the headers they had


def json_body(request: Request, *, strict: bool = False) -> dict[str, Any]:
    """The JSON object a view was sent. `strict` (VKS): only under
    application/json, as keys.openpgp.org answers."""
    if strict and request.content_type.split(";", 1)[0].strip().lower() != JSON:
        raise KeyserverError(
            _("expected application/json data. see %(url)s/about/api for api docs.")
            % {"url": settings.SITE_URL}
        )
    data = request.data
    if _declared_length(request) == 0 or isinstance(data, QueryDict):
        # No body (DRF reads it as {}), or a form Django has parsed already: not JSON.
        raise KeyserverError(_("The request body is not valid JSON."))
    return data


def raw_body(request: Request) -> bytes:
    data = request.data
    return data if isinstance(data, bytes) else b""


def _declared_length(request: Request) -> int:
    """The body's length as DRF reads it (no Content-Length: none)."""
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _as_keyserver_error(exc: Exception, path: str) -> KeyserverError | None:
    if isinstance(exc, KeyserverError):
        return exc
    if isinstance(exc, RequestDataTooBig):
        return KeyTooLarge()
    if isinstance(exc, exceptions.ParseError):
        return KeyserverError(_("The request body is not valid JSON."))
    if isinstance(exc, exceptions.UnsupportedMediaType):
        if protocol_of(path) == "vks":
            return KeyserverError(
                _("expected application/json data. see %(url)s/about/api for api docs.")
                % {"url": settings.SITE_URL}
            )
        return UnsupportedMediaType()
    if isinstance(exc, exceptions.Throttled):
        return RateLimited()
    if isinstance(exc, exceptions.APIException):
        error = KeyserverError(exc.detail if isinstance(exc.detail, str) else None)
        error.status = exc.status_code
        return error
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse | None:
    """REST_FRAMEWORK["EXCEPTION_HANDLER"]: the protocol's error format."""
    view = context.get("view")
    if not isinstance(view, ProtocolView):
        return drf_exception_handler(exc, context)
    request = context["request"]._request
    if isinstance(exc, exceptions.MethodNotAllowed):
        # As Django's require_POST / require_safe answered: 405, an Allow header, no body.
        allowed = view.allowed_methods
        return HttpResponseNotAllowed([m for m in ("GET", "HEAD", "POST", "PUT", "DELETE") if m in allowed])
    if isinstance(exc, UNAVAILABLE):
        return unavailable(request, exc)
    error = _as_keyserver_error(exc, request.path)
    if error is None:
        return None  # a bug: Django's 500
    response = error_response(request, error)
    wait = getattr(exc, "wait", None)
    if isinstance(exc, exceptions.Throttled) and wait:
        response["Retry-After"] = str(int(wait))
    return response
