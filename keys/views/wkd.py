"""Web Key Directory (draft-koch-openpgp-webkey-service).

Direct method: https://<domain>/.well-known/openpgpkey/hu/<hash>?l=<local>,
for the domain named by the Host header. Advanced method:
https://openpgpkey.<domain>/.well-known/openpgpkey/<domain>/hu/<hash>, for
Host openpgpkey.<domain> (or any host, with WKD_ADVANCED_ANY_HOST). Keys are
found by the hash alone: gpg lowercases `l=`, sq keeps its case. GET and
HEAD; binary keys (section 3.1); a policy file for every served domain
(section 4.5); no directory listings (there are no routes for them).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from .. import wkd
from ..errors import NotFound

OCTETS = "application/octet-stream"
TEXT = "text/plain; charset=utf-8"


def _host_domain(request: HttpRequest) -> str:
    return request.get_host().rsplit(":", 1)[0].strip("[]").lower()


def _advanced_domain(request: HttpRequest, domain: str) -> str:
    domain = domain.lower()
    if not settings.WKD_ADVANCED_ANY_HOST and _host_domain(request) != f"openpgpkey.{domain}":
        raise NotFound()
    return domain


def _key(domain: str, wkd_hash: str) -> HttpResponse:
    if not wkd.is_served(domain) or not wkd.valid_hash(wkd_hash):
        raise NotFound()
    data = wkd.certificates(domain, wkd_hash)
    if not data:
        raise NotFound()
    response = HttpResponse(data, content_type=OCTETS)
    response["Cache-Control"] = "no-cache"
    return response


def _policy(domain: str) -> HttpResponse:
    if not wkd.is_served(domain):
        raise NotFound()
    # An empty policy: no submission protocol claims, no restrictions.
    return HttpResponse("", content_type=TEXT)


def _submission_address(domain: str) -> HttpResponse:
    if not wkd.is_served(domain) or not settings.WKD_SUBMISSION_ADDRESS:
        raise NotFound()
    return HttpResponse(settings.WKD_SUBMISSION_ADDRESS.replace("{domain}", domain) + "\n", content_type=TEXT)


@require_safe
def direct_key(request: HttpRequest, wkd_hash: str) -> HttpResponse:
    return _key(_host_domain(request), wkd_hash)


@require_safe
def direct_policy(request: HttpRequest) -> HttpResponse:
    return _policy(_host_domain(request))


@require_safe
def direct_submission_address(request: HttpRequest) -> HttpResponse:
    return _submission_address(_host_domain(request))


@require_safe
def advanced_key(request: HttpRequest, domain: str, wkd_hash: str) -> HttpResponse:
    return _key(_advanced_domain(request, domain), wkd_hash)


@require_safe
def advanced_policy(request: HttpRequest, domain: str) -> HttpResponse:
    return _policy(_advanced_domain(request, domain))


@require_safe
def advanced_submission_address(request: HttpRequest, domain: str) -> HttpResponse:
    return _submission_address(_advanced_domain(request, domain))
