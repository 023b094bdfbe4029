"""Attester's LDAP relay and the organisation's directory check (federation.directory)."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from federation import directory
from federation.serve import LEVEL_HEADER

from ..identifiers import parse_address
from . import schemas
from .http import client_ip, raw_query
from .rest import PlainTextRenderer, ProtocolView


class LdapRelay(ProtocolView):
    renderer_classes = [PlainTextRenderer]

    @extend_schema(
        operation_id="attester_ldap_relay",
        tags=["Attester"],
        summary="Keys of an address from an OpenPGP LDAP server",
        description="Asks an allowed LDAP keyserver (`keys.<domain of the address>`, configured LDAP "
        "sources, LDAP_RELAY_ALLOWED_HOSTS) and relays the keys that verify, reduced to the address; "
        "stores nothing. See docs/federation-ldap.md.",
        parameters=[
            schemas.query_parameter("server", "`host` or `host:port` (389 by default).", schemas.HOST),
            schemas.query_parameter("search", "The address."),
        ],
        responses={
            **schemas.armored(schemas.TEXT, "Armored key blocks."),
            **schemas.attester_errors(400, 403, 404, 429, 503),
        },
    )
    def get(self, request: Request) -> HttpResponse:
        """GET /ldap-relay?server=<host>&search=<email>: armored keys of the address."""
        host, port = directory.parse_server(request.GET.get("server", ""))
        # The address from the raw query: a `+` in it stays a `+`.
        address = parse_address(raw_query(request).get("search", ""))
        armored = directory.relay(host, port, address, client=client_ip(request))
        response = HttpResponse(armored, content_type="text/plain; charset=utf-8")
        response[LEVEL_HEADER] = directory.relay_level(host, port, address)
        return response


class DirectoryCheck(ProtocolView):
    @extend_schema(
        operation_id="directory_check",
        tags=["Attester"],
        summary="Does the organisation's directory hold this key?",
        description="Asks the directory (every source authoritative for the address's domain) afresh: "
        "`fingerprints` are the keys it holds with a valid user ID for the address, `match` whether the "
        "given fingerprint is one of them.",
        parameters=[
            schemas.query_parameter("email", "The address."),
            schemas.query_parameter(
                "fingerprint", "A full 40 or 64 hex digit fingerprint.", schemas.FINGERPRINT
            ),
        ],
        responses={
            (200, schemas.JSON): schemas.DirectoryCheckAnswer,
            **schemas.attester_errors(400, 429, 502, 503),
        },
    )
    def get(self, request: Request) -> Response:
        """GET /api/v1/directory-check?email=&fingerprint= → {"match", "fingerprints"}."""
        address = parse_address(raw_query(request).get("email", ""))
        given = "".join(request.GET.get("fingerprint", "").split()).upper().removeprefix("0X")
        return Response(directory.check(address, given, client=client_ip(request)))
