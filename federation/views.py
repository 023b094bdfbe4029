"""Attester's LDAP relay and the directory check. Being written (issue 4)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from keys.errors import NotFound


def ldap_relay(request: HttpRequest) -> HttpResponse:
    raise NotFound()


def directory_check(request: HttpRequest) -> HttpResponse:
    raise NotFound()
