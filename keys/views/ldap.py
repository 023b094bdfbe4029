"""Attester's LDAP relay and the organisation's directory check (federation.directory)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe

from federation import directory

from ..identifiers import parse_address
from .http import client_ip, raw_query


@require_safe
def ldap_relay(request: HttpRequest) -> HttpResponse:
    """GET /ldap-relay?server=<host>&search=<email>: armored keys of the address."""
    host, port = directory.parse_server(request.GET.get("server", ""))
    # The address from the raw query: a `+` in it stays a `+`.
    address = parse_address(raw_query(request).get("search", ""))
    armored = directory.relay(host, port, address, client=client_ip(request))
    return HttpResponse(armored, content_type="text/plain; charset=utf-8")


@require_safe
def directory_check(request: HttpRequest) -> HttpResponse:
    """GET /api/v1/directory-check?email=&fingerprint= → {"match", "fingerprints"}."""
    address = parse_address(raw_query(request).get("email", ""))
    given = "".join(request.GET.get("fingerprint", "").split()).upper().removeprefix("0X")
    return JsonResponse(directory.check(address, given, client=client_ip(request)))
