"""Web Key Directory (draft-koch-openpgp-webkey-service).

Direct method (section 3.1): https://<domain>/.well-known/openpgpkey/hu/<hash>?l=<local>,
for the domain named by the Host header. Advanced method (section 3.1):
https://openpgpkey.<domain>/.well-known/openpgpkey/<domain>/hu/<hash>?l=<local>,
for Host openpgpkey.<domain>, or any host with WKD_ADVANCED_ANY_HOST (one
server can then answer for many domains behind one name).

Keys are found by the hash alone: `l=` is only a hint for servers that keep
keys in files, gpg lowercases it and sq keeps its case. GET and HEAD only
(section 3.1: the server MUST accept HEAD). A policy file for every served
domain (section 4.5), the submission address only when one is configured
(section 4.1). There are no directory listings: no route serves them.

Everything that is not served is 404 through the error family (text/plain
on /.well-known), including a malformed hash: to a client, a hash we could
never have stored is the same as an address without a key.
"""

from __future__ import annotations

import idna
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port
from django.views.decorators.http import require_safe

from federation import serve

from .. import degraded
from ..errors import NotFound
from ..identifiers import ZBASE32_ALPHABET
from ..services import server_key, wks
from .http import answer

# Section 3.1: "SHOULD use application/octet-stream"; never armor.
OCTETS = "application/octet-stream"
TEXT = "text/plain; charset=utf-8"

_ALPHABET = frozenset(ZBASE32_ALPHABET)
# SHA-1 is 160 bits: 32 z-base-32 characters of 5 bits each (section 3.1).
HASH_LENGTH = 32


def served_domain(raw: str) -> str | None:
    """The ASCII (IDNA) form of `raw` if it is one of WKD_DOMAINS, else None.

    Bindings store the IDNA ASCII domain. Clients differ in what they send
    for an internationalised domain: sq puts the Unicode name in the
    advanced path and the A-label in Host, gpg the Unicode name in both.
    A trailing dot (an absolute DNS name in Host) names the same domain.
    """
    text = raw.strip().rstrip(".").lower()
    if not text:
        return None
    try:
        domain = idna.encode(text, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        return None
    return domain if domain in settings.WKD_DOMAINS else None


def valid_hash(value: str) -> bool:
    """A well-formed hashed local part: exactly 32 z-base-32 characters.

    The alphabet is lowercase only; gpg and sq both send it that way.
    """
    return len(value) == HASH_LENGTH and set(value) <= _ALPHABET


def _host(request: HttpRequest) -> str:
    """The Host header's name: no port, lowercase, no trailing dot."""
    return split_domain_port(request.get_host())[0]


def _direct_domain(request: HttpRequest) -> str:
    domain = served_domain(_host(request))
    if domain is None:
        raise NotFound()
    return domain


def _advanced_domain(request: HttpRequest, raw: str) -> str:
    """The domain of the advanced path, served for its openpgpkey. host.

    With WKD_ADVANCED_ANY_HOST off, only Host openpgpkey.<domain> answers,
    as the draft's URL has it; on, any name pointing here does.
    """
    domain = served_domain(raw)
    if domain is None:
        raise NotFound()
    if not settings.WKD_ADVANCED_ANY_HOST and not _is_openpgpkey_host(_host(request), domain):
        raise NotFound()
    return domain


def _is_openpgpkey_host(host: str, domain: str) -> bool:
    prefix, _, rest = host.partition(".")
    return prefix == "openpgpkey" and served_domain(rest) == domain


def _key(request: HttpRequest, domain: str, wkd_hash: str) -> HttpResponse:
    if not valid_hash(wkd_hash):
        raise NotFound()
    found = serve.wkd(domain, wkd_hash)
    if not found.data:
        raise NotFound()
    # Keys change (new subkeys, revocations): clients must revalidate.
    return answer(request, found.data, OCTETS, found.modified, {"Cache-Control": "no-cache", **found.header})


def _policy(domain: str) -> HttpResponse:
    # Section 4.5: the file must exist for a served domain and may be empty.
    # We claim no flags: gpg-wks-client needs none for the Web Key Service
    # (it reads the submission-address file), and "mailbox-only" would make
    # it add a bare-address user ID to the key it submits.
    return HttpResponse("", content_type=TEXT)


def _submission_address(domain: str) -> HttpResponse:
    # Section 4.1: one line, the address to mail key submissions to. The
    # client looks up that address's key over WKD next: made here on first use.
    address = wks.submission_address(domain)
    if address is None:
        raise NotFound()
    try:
        server_key.for_address(address)
    except DatabaseError as exc:  # a read-only moment: the file is still right
        degraded.failed("the database", exc, "the submission address's key is made on a later request")
    return HttpResponse(address + "\n", content_type=TEXT)


@require_safe
def direct_key(request: HttpRequest, wkd_hash: str) -> HttpResponse:
    return _key(request, _direct_domain(request), wkd_hash)


@require_safe
def direct_policy(request: HttpRequest) -> HttpResponse:
    return _policy(_direct_domain(request))


@require_safe
def direct_submission_address(request: HttpRequest) -> HttpResponse:
    return _submission_address(_direct_domain(request))


@require_safe
def advanced_key(request: HttpRequest, domain: str, wkd_hash: str) -> HttpResponse:
    return _key(request, _advanced_domain(request, domain), wkd_hash)


@require_safe
def advanced_policy(request: HttpRequest, domain: str) -> HttpResponse:
    return _policy(_advanced_domain(request, domain))


@require_safe
def advanced_submission_address(request: HttpRequest, domain: str) -> HttpResponse:
    return _submission_address(_advanced_domain(request, domain))
