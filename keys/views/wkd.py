"""Web Key Directory (draft-koch-openpgp-webkey-service). Being written (issue 3)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from ..errors import NotFound


def direct_key(request: HttpRequest, wkd_hash: str) -> HttpResponse:
    raise NotFound()


def direct_policy(request: HttpRequest) -> HttpResponse:
    raise NotFound()


def direct_submission_address(request: HttpRequest) -> HttpResponse:
    raise NotFound()


def advanced_key(request: HttpRequest, domain: str, wkd_hash: str) -> HttpResponse:
    raise NotFound()


def advanced_policy(request: HttpRequest, domain: str) -> HttpResponse:
    raise NotFound()


def advanced_submission_address(request: HttpRequest, domain: str) -> HttpResponse:
    raise NotFound()
