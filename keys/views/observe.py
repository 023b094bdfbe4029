"""The outermost middleware: every request gets an id (the client's
X-Request-ID when plausible, else a new one) that its log lines and the
tasks it queues carry and its answer returns; every answer is counted and
timed by route (keys.metrics), and lookups as hits or misses."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

from .. import logs, metrics

# One line per request: method, route name, status, time. Not the path or
# the client: lookups name addresses, and links carry tokens.
access = logging.getLogger("keyserver.access")

# Lookup routes, by the protocol they count under.
LOOKUP_ROUTES = {
    "hkp-lookup": "hkp",
    "vks-by-fingerprint": "vks",
    "vks-by-keyid": "vks",
    "vks-by-email": "vks",
    "wkd-direct": "wkd",
    "wkd-advanced": "wkd",
    "attester-pub": "attester",
    "attester-lookup-email": "attester",
    "search": "web",
}


def route_of(request: HttpRequest) -> str:
    """The URL pattern's name (a small, fixed set of label values)."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return "unmatched"
    return match.url_name or (match.route or "unnamed")[:40]


class RequestMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        rid = logs.new_request_id(request.META.get("HTTP_X_REQUEST_ID", ""))
        token = logs.request_id.set(rid)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            _count(request, response, time.perf_counter() - started)
        finally:
            logs.request_id.reset(token)
        response["X-Request-ID"] = rid
        return response


def _count(request: HttpRequest, response: HttpResponse, seconds: float) -> None:
    route = route_of(request)
    status = response.status_code
    metrics.REQUESTS.labels(route, str(status)).inc()
    metrics.LATENCY.labels(route).observe(seconds)
    if access.isEnabledFor(logging.INFO):
        fields = {
            "method": request.method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
        }
        access.info("%(method)s %(route)s %(status)s %(duration_ms)sms", fields, extra=fields)
    path = LOOKUP_ROUTES.get(route)
    if path and request.method in ("GET", "HEAD") and status in (200, 304, 404):
        metrics.LOOKUPS.labels(path, "miss" if status == 404 else "hit").inc()
