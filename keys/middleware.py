"""Render the one error family in each protocol's own format, and add CORS.

Views raise KeyserverError; nothing catches bare exceptions. The request
body cap of Django (RequestDataTooBig) becomes a 413 here too.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from .errors import KeyserverError, KeyTooLarge

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
