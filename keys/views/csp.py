"""The Content-Security-Policy (django-csp), on pages only.

A policy restricts what a browser loads into a document; key blocks, HKP
text and JSON answers are no documents, and the front server answers the
same lookups from files with the application's exact headers
(tests/test_front_server.py), so they carry none.
"""

from __future__ import annotations

from csp.middleware import CSPMiddleware
from django.http import HttpRequest
from django.http.response import HttpResponseBase


class PageCSPMiddleware(CSPMiddleware):
    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if not response.get("Content-Type", "").startswith("text/html"):
            response._csp_exempt = True  # type: ignore[attr-defined]
            response._csp_exempt_ro = True  # type: ignore[attr-defined]
        return super().process_response(request, response)
